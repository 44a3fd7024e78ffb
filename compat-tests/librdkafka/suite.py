"""Runs librdkafka's own integration suite (`tests/0xxx`) against Lightstream.

Every test number that needs a broker runs in its own `test-runner` process,
with a timeout, against a fresh broker on a free loopback port and a
`test.conf` written here. Several run at once (`--jobs`), each with its own
broker. Two passes: as the suite runs by default, and with
`enable.idempotence=true` in `test.conf` — the producer default of every
Kafka client since 3.0.

The broker is configured the way the suite's own Kafka fixture (trivup, with
the scenarios in `tests/scenarios/*.json`) configures Kafka where the tests
depend on it:

- `num.partitions=4`: auto-created topics have four partitions, and many
  tests assume more than one;
- `auto.create.topics.enable=true`, except for the tests of the
  `noautocreate` scenario, which get a broker with it off;
- replication factor 3 (trivup runs three brokers): the suite asks for it
  in CreateTopics, which Lightstream accepts whatever its broker count
  (durability is the object store's; see docs/compatibility.md);
- everything else at Kafka's defaults, as trivup leaves it
  (`group.initial.rebalance.delay.ms=3000` included).

`test.conf` carries what trivup's own `test.conf` does
(`broker.address.family=v4`, `test.timeout.multiplier=2`) plus the bootstrap
address. The tests run in full mode: quick mode (`-Q`) skips every sub-test
not marked quick and still reports the test PASSED, which would hide most
of what the suite checks. `TEST_KAFKA_VERSION` is the Kafka release whose
API versions Lightstream advertises, so version-gated tests run.

A test is skipped only when it is on `SKIP` below, whose every entry names
its reason; the suite's own skips (a known librdkafka issue, a broker
version) are reported with the suite's reason. Anything else that does not
pass fails the run.

Prints one row per test and, per pass, the closing line
`PASS: N passed, N failed, N skipped`. With `--doc`, writes the results to
docs/compatibility.md between its generated-table markers.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.process import die_with_parent, free_port, port_accepts, stop_gracefully  # noqa: E402

# The Kafka release whose API versions the broker advertises: the
# kafka-protocol crate's schemas, Kafka 4.1 (Produce 13, Fetch 18).
KAFKA_VERSION = "4.1.0"

# How long one test number may run, broker start included, before it is
# killed and counted as failed (tests in EXPECTED_SECONDS get more).
TEST_TIMEOUT_S = 420.0
# Seconds the slowest test numbers take here (full mode, 8 at once): they
# start first, and their timeout is twice this when that exceeds the default.
EXPECTED_SECONDS = {
    "0113": 600,  # cooperative rebalancing, 30-odd sub-tests of rebalances
    "0089": 105,
    "0076": 80,
    "0033": 70,
    "0091": 70,
    "0026": 65,
    "0094": 65,
    "0102": 60,
}
# How long a broker may take from exec to accepting connections.
BROKER_READY_TIMEOUT_S = 30.0

# Reasons a test may be skipped, each naming what it needs. Only these
# kinds of reason are allowed: Kafka's own command-line tools or ZooKeeper,
# a multi-broker fixture, SSL/SASL set up by trivup, or a named feature that
# is not built yet. (The SSL, SASL and rack-aware tests skip themselves when
# trivup has not set them up, so none is listed here.)
NEEDS_KAFKA_CLI = "needs Kafka's command-line tools (KAFKA_PATH)"
NEEDS_TRANSACTIONS = "needs transactions (not built yet: InitProducerId with a transactional id, AddPartitionsToTxn, EndTxn)"

# Test numbers that talk only to librdkafka's built-in mock cluster
# (`test_mock_cluster_new`), never to the broker under test, although
# test.c does not flag them TEST_F_LOCAL. Like the local tests they are
# not run here: they test the client alone, and 0150 asserts request
# spacing to the millisecond, which a shared 2-core machine running eight
# tests at once missed once (500 ms where under 500 was required).
MOCK_CLUSTER_ONLY = {"0139", "0150"}

# Tests whose assertions race between their own consumers, so that a
# starved client thread on this shared machine fails them although the
# broker answered as Kafka does. A failure of one of these runs it once more,
# alone, after the pool; the table notes the first failure either way.
RETRY_ONCE_ALONE: dict[str, str] = {
    # b_subscribe_with_cb_test counts rebalance callbacks: when the second
    # consumer's gen-2 SyncGroup arrives after the first consumer has
    # already rejoined, it is answered REBALANCE_IN_PROGRESS (as Kafka's
    # GroupCoordinator does) and that consumer never sees its empty gen-2
    # assignment, so the count loop waits until the test's 100 s timeout.
    "0113": "b_subscribe_with_cb_test races its consumers' SyncGroups against a rejoin",
}

# Keyed by test number, or "number/scenario" for one scenario's tests only.
SKIP: dict[str, str] = {
    "0045/noautocreate": NEEDS_KAFKA_CLI + ": kafka-topics.sh deletes and grows its topics",
    "0052": NEEDS_KAFKA_CLI + ": kafka-topics.sh creates its topics with message.timestamp.type",
    "0055": NEEDS_TRANSACTIONS + ": its 'transactions' latency sub-test",
    "0061": NEEDS_TRANSACTIONS + ": its 'consumer lag with transactions' sub-test",
    "0077": NEEDS_KAFKA_CLI + ", and log compaction (not built yet): kafka-topics.sh creates a compacted topic",
    "0081": "needs features not built yet, each used by some of its sub-tests: ACLs (CreateAcls, "
    "DescribeAcls, DeleteAcls, and ACL-restricted authorized operations), "
    "dynamic broker configs (AlterConfigs of a BROKER resource), group configs (DescribeConfigs of a GROUP)",
    "0098": NEEDS_TRANSACTIONS + ": a consumer of transactional messages",
    "0103": NEEDS_TRANSACTIONS,
    "0109": NEEDS_KAFKA_CLI + ", and ACLs (not built yet): kafka-acls.sh denies a topic",
    "0115": NEEDS_KAFKA_CLI + ", and ACLs (not built yet): kafka-acls.sh denies a topic",
    "0119": NEEDS_KAFKA_CLI + ", and ACLs (not built yet): kafka-acls.sh denies a group and a topic",
    "0129": NEEDS_TRANSACTIONS + ": aborted transactional messages",
    "0137": NEEDS_TRANSACTIONS + ": its control-message sub-test",
}

# The suite's summary row: "| 0001_multiobj    |     PASSED |   1.234s | reason"
_ROW = re.compile(r"^\|\s*(\d{4}_\S+)\s*\|\s*(\w+)\s*\|\s*([\d.]+)s\s*\|\s*(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A failure report: '### Test "0011_produce_batch (sub:629)" failed at f.c:718:fn() at DATE: ###'
# followed by the message on the next lines.
_FAILURE = re.compile(r'^### Test "(\d{4}_\w+)[^"]*" failed at (\S+)')


@dataclasses.dataclass(frozen=True)
class SuiteTest:
    """One `_TEST(...)` entry of the suite's tests/test.c."""

    name: str
    flags: str
    scenario: str

    @property
    def number(self) -> str:
        return self.name[:4]

    @property
    def needs_broker(self) -> bool:
        if self.number in MOCK_CLUSTER_ONLY:
            return False
        return "TEST_F_LOCAL" not in self.flags and "TEST_F_MANUAL" not in self.flags


@dataclasses.dataclass(frozen=True)
class Unit:
    """One test-runner process: a test number in one scenario."""

    number: str
    scenario: str

    @property
    def label(self) -> str:
        return self.number if self.scenario == "default" else f"{self.number} ({self.scenario})"


@dataclasses.dataclass
class Outcome:
    test: str
    scenario: str
    state: str  # PASSED, FAILED, SKIPPED
    seconds: float
    reason: str


def parse_tests(test_c: Path) -> list[SuiteTest]:
    """The entries of `struct test tests[]` in tests/test.c, in order."""
    text = test_c.read_text(errors="replace")
    start = text.index("struct test tests[] = {")
    text = text[start : text.index("\n};", start)]
    tests = []
    for m in re.finditer(r"_TEST\(\s*(\w+)\s*,", text):
        # The entry runs to its matching parenthesis.
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        body = re.sub(r"/\*.*?\*/", "", text[m.end() : i - 1], flags=re.S)
        flags = body.split(",", 1)[0].strip()
        scenario = re.search(r'\.scenario\s*=\s*"([^"]*)"', body)
        tests.append(SuiteTest(m.group(1), flags, scenario.group(1) if scenario else "default"))
    return tests


def units_of(tests: list[SuiteTest]) -> list[Unit]:
    """Test numbers that need a broker, once per scenario their tests need.

    A scenario such as "default,ak23" includes the default one.
    """
    units: list[Unit] = []
    for t in tests:
        if not t.needs_broker:
            continue
        scenario = "default" if "default" in t.scenario.split(",") else t.scenario.split(",")[0]
        unit = Unit(t.number, scenario)
        if unit not in units:
            units.append(unit)
    return units


class Broker:
    """A lightstream process for one test number, on its own port and data dir."""

    def __init__(self, binary: Path, workdir: Path, auto_create: bool):
        self.port = free_port()
        self.log_path = workdir / "lightstream.log"
        argv = [
            str(binary),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
            str(workdir / "data"),
            "--num-partitions",
            "4",
            "--auto-create-topics",
            "true" if auto_create else "false",
        ]
        env = dict(os.environ, NO_COLOR="1")
        env.setdefault("LIGHTSTREAM_LOG", "info")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + BROKER_READY_TIMEOUT_S
        while not port_accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"broker did not start (log: {self.log_path})")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_gracefully(self.proc)


def belongs_to(test: SuiteTest | None, unit: Unit) -> bool:
    """Whether the runner's summary row for `test` is this unit's to report:
    tests of other scenarios and local ones (-L) are reported elsewhere or
    are out of scope, though the runner lists them."""
    if test is None:
        return True
    return test.needs_broker and unit.scenario in test.scenario.split(",")


def suite_reason(test: SuiteTest | None, reason: str) -> str:
    """The suite's own skip reasons, said plainly."""
    if test is not None and "TEST_F_KNOWN_ISSUE" in test.flags and "negative test flags" in reason:
        return "the suite's own known-issue list (test-runner skips it unless -k)"
    return reason


def run_unit(unit: Unit, args: argparse.Namespace, idempotent: bool, workroot: Path) -> list[Outcome]:
    """Runs one test number; returns its rows (the runner's output is kept
    in the work directory)."""
    workdir = workroot / f"{unit.number}-{unit.scenario}"
    workdir.mkdir(parents=True)
    started = time.monotonic()
    try:
        broker = Broker(args.broker, workdir, auto_create=unit.scenario != "noautocreate")
    except RuntimeError as e:
        return [Outcome(unit.number, unit.scenario, "FAILED", 0.0, str(e))]
    conf = workdir / "test.conf"
    conf.write_text(
        "\n".join(
            [
                f"bootstrap.servers=127.0.0.1:{broker.port}",
                "broker.address.family=v4",
                "test.timeout.multiplier=2",
                *(["enable.idempotence=true"] if idempotent else []),
                "",
            ]
        )
    )
    env = dict(
        os.environ,
        RDKAFKA_TEST_CONF=str(conf),
        TEST_KAFKA_VERSION=KAFKA_VERSION,
        LD_LIBRARY_PATH=f"{args.tests_dir.parent / 'src'}:{args.tests_dir.parent / 'src-cpp'}",
    )
    # The suite lengthens its timeouts when CI is set at all; without it a
    # run here and a run in CI behave the same (test.conf's multiplier).
    env.pop("CI", None)
    argv = [str(args.tests_dir / "test-runner"), *(["-Q"] if args.quick else []), "-L", "-p1"]
    argv += ["-s", unit.scenario, unit.number]
    timed_out = False
    timeout_s = args.timeout * max(1.0, EXPECTED_SECONDS.get(unit.number, 0) * 2 / TEST_TIMEOUT_S)
    try:
        run = subprocess.run(
            argv,
            cwd=args.tests_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        output, code = run.stdout.decode(errors="replace"), run.returncode
    except subprocess.TimeoutExpired as e:
        timed_out = True
        output, code = (e.stdout or b"").decode(errors="replace"), -1
    finally:
        broker.stop()
    (workdir / "test-runner.log").write_text(output)
    lines = [_ANSI.sub("", ln) for ln in output.splitlines()]
    rows = []
    for line in lines:
        m = _ROW.match(line)
        if m and m.group(2) in ("PASSED", "FAILED", "SKIPPED"):
            test = args.tests_by_name.get(m.group(1))
            if belongs_to(test, unit):
                reason = suite_reason(test, m.group(4).strip())
                rows.append(Outcome(m.group(1), unit.scenario, m.group(2), float(m.group(3)), reason))
    took = time.monotonic() - started
    # The runner aborts on some failures before it prints its summary; its
    # failure reports still say which test failed and why.
    failures: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = _FAILURE.match(line)
        if m and m.group(1) not in failures:
            detail = next((ln.strip() for ln in lines[i + 1 : i + 4] if ln.strip()), "")
            failures[m.group(1)] = f"{m.group(2)}: {detail}"[:300]
    for r in rows:
        if r.state == "FAILED" and r.test in failures:
            r.reason = failures.pop(r.test)
    if not rows:
        rows = [Outcome(test, unit.scenario, "FAILED", took, why) for test, why in failures.items()]
    if timed_out:
        rows = [Outcome(unit.number, unit.scenario, "FAILED", took, f"timed out after {timeout_s:.0f}s")]
    elif not rows or (code != 0 and all(r.state != "FAILED" for r in rows)):
        # A crash or an exit before the summary: the process's code decides.
        last = next((ln for ln in reversed(lines) if ln.strip()), "no output")
        rows.append(Outcome(unit.number, unit.scenario, "FAILED", took, f"exit code {code}: {last[:200]}"))
    return rows


def skip_reason(unit: Unit) -> str | None:
    return SKIP.get(f"{unit.number}/{unit.scenario}") or SKIP.get(unit.number)


def run_passes(passes: list[str], units: list[Unit], args: argparse.Namespace) -> dict[str, list[Outcome]]:
    """Runs every pass's units in one pool, the longest first, so the slow
    tests of both passes overlap and the pool stays full to the end."""
    results: dict[str, list[Outcome]] = {name: [] for name in passes}
    work = []
    for name in passes:
        for unit in units:
            why = None if args.ignore_skip_list else skip_reason(unit)
            if why:
                results[name].append(Outcome(unit.number, unit.scenario, "SKIPPED", 0.0, f"skip list: {why}"))
                print(f"  [{name}] {unit.label:<22} SKIPPED  skip list: {why}", flush=True)
            else:
                work.append((name, unit))
    work.sort(key=lambda w: -EXPECTED_SECONDS.get(w[1].number, 0))
    print(f"\n=== librdkafka {args.version_label} suite: passes {', '.join(passes)}; {len(work)} runs, {args.jobs} at once")
    workroot = Path(tempfile.mkdtemp(prefix="rdkafka-suite-", dir=args.workdir))
    failed_logs = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            pool.submit(run_unit, unit, args, name == "idempotent", workroot / name): (name, unit)
            for name, unit in work
        }
        for fut in concurrent.futures.as_completed(futures):
            name, unit = futures[fut]
            rows = fut.result()
            results[name].extend(rows)
            for r in rows:
                print(f"  [{name}] {r.test:<40} {r.state:<8} {r.seconds:7.1f}s  {r.reason}".rstrip(), flush=True)
            if any(r.state == "FAILED" for r in rows):
                failed_logs.append((name, unit, workroot / name / f"{unit.number}-{unit.scenario}"))
    for name, unit, workdir in list(failed_logs):
        if unit.number not in RETRY_ONCE_ALONE:
            continue
        first = [r for r in results[name] if r.state == "FAILED" and r.test.startswith(unit.number)]
        why = "; ".join(r.reason for r in first)[:200]
        print(f"  [{name}] {unit.label} failed ({why}); known race ({RETRY_ONCE_ALONE[unit.number]}): "
              "running it once more, alone", flush=True)
        rows = run_unit(unit, args, name == "idempotent", workroot / name / "again")
        if all(r.state != "FAILED" for r in rows):
            failed_logs.remove((name, unit, workdir))
            for r in rows:
                r.reason = f"passed when run again alone; the first run failed: {why}"
        results[name] = [r for r in results[name] if not (r.test.startswith(unit.number) and r.scenario == unit.scenario)]
        results[name].extend(rows)
        for r in rows:
            print(f"  [{name}] {r.test:<40} {r.state:<8} {r.seconds:7.1f}s  {r.reason}".rstrip(), flush=True)
    for name, unit, workdir in failed_logs:
        print(f"\n--- [{name}] {unit.label} failed: last lines of {workdir}/test-runner.log")
        lines = (workdir / "test-runner.log").read_text(errors="replace").splitlines()
        print("\n".join(_ANSI.sub("", ln) for ln in lines[-40:]))
    if not failed_logs and not args.keep:
        shutil.rmtree(workroot, ignore_errors=True)
    for outcomes in results.values():
        outcomes.sort(key=lambda o: (o.test, o.scenario))
    return results


def counts(outcomes: list[Outcome]) -> tuple[int, int, int]:
    states = [o.state for o in outcomes]
    return states.count("PASSED"), states.count("FAILED"), states.count("SKIPPED")


def write_doc(doc: Path, results: dict[str, list[Outcome]], args: argparse.Namespace) -> None:
    """Replaces the generated part of docs/compatibility.md."""
    begin, end = "<!-- librdkafka-suite:begin -->", "<!-- librdkafka-suite:end -->"
    passes = list(results)
    lines = [
        begin,
        f"librdkafka {args.version_label}, `test-runner -L{' -Q' if args.quick else ''}`, `TEST_KAFKA_VERSION={KAFKA_VERSION}`; "
        "generated by `compat-tests/librdkafka/suite.py --doc`.",
        "",
    ]
    for p in passes:
        ok, bad, skipped = counts(results[p])
        lines.append(f"- pass `{p}`: {ok} passed, {bad} failed, {skipped} skipped")
    lines += ["", "| test | scenario | " + " | ".join(passes) + " | note |", "|---|---|" + "---|" * len(passes) + "---|"]
    keys = sorted({(o.test, o.scenario) for p in passes for o in results[p]})
    for key in keys:
        cells, notes = [], []
        for p in passes:
            o = next((o for o in results[p] if (o.test, o.scenario) == key), None)
            cells.append(o.state.lower() if o else "—")
            noted = o and o.reason and (o.state != "PASSED" or o.reason.startswith("passed when run again"))
            if noted and o.reason not in notes:
                notes.append(o.reason)
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " | " + "; ".join(notes).replace("|", "/") + " |")
    lines.append(end)
    text = doc.read_text() if doc.exists() else f"{begin}\n{end}\n"
    if begin not in text or end not in text:
        raise SystemExit(f"{doc} has no {begin} ... {end} markers")
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    doc.write_text(head + "\n".join(lines) + tail)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests-dir", type=Path, required=True, help="librdkafka's built tests/ directory")
    parser.add_argument("--broker", type=Path, required=True, help="the lightstream binary")
    # 8 at once keeps two cores busy without starving any test: measured here,
    # both passes take ~600 s at 8 and ~1,080 s at 4, with the same results.
    parser.add_argument("--jobs", type=int, default=8, help="test numbers run at once")
    parser.add_argument("--timeout", type=float, default=TEST_TIMEOUT_S, help="seconds per test number")
    parser.add_argument("--passes", default="plain,idempotent", help="plain, idempotent or both (comma-separated)")
    parser.add_argument("--only", default="", help="comma-separated test numbers to run (default: all)")
    parser.add_argument("--workdir", type=Path, default=None, help="where brokers and logs go (default: a temp dir)")
    parser.add_argument(
        "--ignore-skip-list",
        action="store_true",
        help="run the skipped tests too (to see whether an entry is still needed; SUBTESTS=... narrows a test)",
    )
    parser.add_argument("--quick", action="store_true", help="the suite's quick mode (-Q): most sub-tests skipped")
    parser.add_argument("--keep", action="store_true", help="keep work directories of passing runs")
    parser.add_argument("--doc", type=Path, default=None, help="write the results into this markdown file")
    parser.add_argument(
        "--summary",
        type=Path,
        default=None,
        help="write each pass's counts and every failed test with its reason into this file (for CI's summary)",
    )
    args = parser.parse_args()
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    args.version_label = args.tests_dir.parent.name.rsplit("+", 1)[-1]

    tests = parse_tests(args.tests_dir / "test.c")
    args.tests_by_name = {t.name: t for t in tests}
    units = units_of(tests)
    if args.only:
        wanted = set(args.only.split(","))
        units = [u for u in units if u.number in wanted]
    passes = args.passes.split(",")
    for name in passes:
        if name not in ("plain", "idempotent"):
            parser.error(f"unknown pass {name!r}")
    started = time.monotonic()
    results = run_passes(passes, units, args)
    print(f"\nlibrdkafka suite took {time.monotonic() - started:.0f}s")
    if args.doc:
        write_doc(args.doc, results, args)
    failed = False
    summary = []
    for name, outcomes in results.items():
        ok, bad, skipped = counts(outcomes)
        failed |= bad > 0
        print(f"{name}: {ok} passed, {bad} failed, {skipped} skipped")
        summary.append(f"librdkafka {name}: {ok} passed, {bad} failed, {skipped} skipped")
        summary += [f"  FAILED {o.test} ({o.scenario}): {o.reason[:200]}" for o in outcomes if o.state == "FAILED"]
    if args.summary:
        args.summary.write_text("\n".join(summary) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
