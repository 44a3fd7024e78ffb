"""pytest fixtures that run a real `lightstream` broker for each test.

Owns the broker process life cycle: pick a free loopback port, start
`$LIGHTSTREAM_BIN --listen 127.0.0.1:PORT --data-dir DIR` with its stderr in
a log file, wait (bounded) until the port accepts connections, and stop it
with SIGTERM (graceful, exit code 0 expected) or SIGKILL (crash). A stopped
broker can be started again on the same port and data dir, which is how the
restart tests simulate a process restart.

Only processes this file started are ever signalled, always by PID. Every
broker is torn down after its test, and the tail of its log is attached to
the report of any failing test.

It knows one thing about Kafka: a broker is ready when it answers
ApiVersions (it binds its port before it has joined the cluster). Tests talk
to `broker.bootstrap` with real clients or raw sockets.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tools.kafka_wire import answers_api_versions
from tools.process import die_with_parent, free_port, port_accepts

BIN_ENV = "LIGHTSTREAM_BIN"
# How long a broker may take from exec to accepting TCP connections.
READY_TIMEOUT_S = 30.0
# How long a graceful (SIGTERM) shutdown may take before the test fails.
STOP_TIMEOUT_S = 30.0
# How many log lines to attach to a failing test's report.
LOG_TAIL_LINES = 80
# Wall-clock budget for the whole session. A broker that accepts connections
# but never answers would make every test run into its client timeouts;
# once the budget is spent, the remaining tests fail at once instead, so CI
# ends in bounded time with a clear message. Override with COMPAT_BUDGET_S.
SESSION_BUDGET_S = float(os.environ.get("COMPAT_BUDGET_S", "1500"))
_SESSION_START = time.monotonic()

# Every broker process started in this pytest run, so an interpreter exit
# without teardown (e.g. a second Ctrl-C) still kills them, by PID.
_LIVE: set["Broker"] = set()


def _kill_leftovers() -> None:
    for b in list(_LIVE):
        b.kill()


atexit.register(_kill_leftovers)


class Broker:
    """One lightstream broker process on a fixed port and data dir.

    `start()` and `stop()`/`kill()` may alternate any number of times; the
    port and data dir stay the same, so data written before a stop must be
    readable after the next start.
    """

    def __init__(self, binary: Path, workdir: Path, extra_args: list[str], env: dict[str, str] | None = None,
                 data_dir: Path | None = None):
        self.binary = binary
        self.port = free_port()
        self.admin_port = free_port()
        # Brokers of one cluster on one machine share a data dir: the
        # metadata file and the objects directory.
        self.data_dir = data_dir or workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "lightstream.log"
        self.extra_args = list(extra_args)
        # When set, the broker runs with `--config settings_file` alone; the
        # file must then name this object's port, admin port and data dir.
        self.settings_file: Path | None = None
        self.env = dict(os.environ)
        self.env.setdefault("LIGHTSTREAM_LOG", "info")
        self.env.setdefault("NO_COLOR", "1")  # plain text in the log file
        # A broker restarted after SIGKILL waits for its previous process's
        # lease to lapse (Kafka's broker.session.timeout.ms, 9 s by default);
        # tests that kill and restart keep that wait short.
        self.env.setdefault("LIGHTSTREAM_BROKER_SESSION_TIMEOUT_MS", "3000")
        self.env.setdefault("LIGHTSTREAM_BROKER_HEARTBEAT_INTERVAL_MS", "500")
        if env:
            self.env.update(env)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """The admin HTTP listener: /metrics, /healthz, /readyz."""
        return f"http://127.0.0.1:{self.admin_port}"

    @property
    def argv(self) -> list[str]:
        if self.settings_file is not None:
            # Everything from the file (test_chart.py): no flag overrides it.
            return [str(self.binary), "--config", str(self.settings_file)]
        return [
            str(self.binary),
            "--listen",
            self.bootstrap,
            "--admin-listen",
            f"127.0.0.1:{self.admin_port}",
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "Broker":
        assert not self.running, "broker already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== compat-tests: start #{self.starts}: {' '.join(self.argv)}\n".encode())
            # The child gets its own descriptor for the log; ours closes here.
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.env,
                # Own session: a Ctrl-C at the terminal reaches pytest only,
                # and teardown decides what the broker gets.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        _LIVE.add(self)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                _LIVE.discard(self)
                pytest.fail(
                    f"lightstream exited with code {code} before accepting connections on {self.bootstrap} "
                    f"(log: {self.log_path}, tail below)",
                    pytrace=False,
                )
            if port_accepts(self.port) and answers_api_versions(self.bootstrap):
                return self
            time.sleep(0.05)
        self.kill()
        pytest.fail(
            f"lightstream did not accept connections on {self.bootstrap} within {READY_TIMEOUT_S}s "
            f"(log: {self.log_path}, tail below)",
            pytrace=False,
        )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Graceful shutdown: SIGTERM, then require exit code 0 within the bound."""
        assert self.proc is not None, "broker was never started"
        early = self.proc.poll()
        if early is not None:
            _LIVE.discard(self)
            pytest.fail(f"lightstream had already exited (code {early}) before SIGTERM", pytrace=False)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"lightstream did not exit within {timeout_s}s of SIGTERM", pytrace=False)
        _LIVE.discard(self)
        code = self.proc.returncode
        assert code == 0, f"lightstream exited with code {code} after SIGTERM (expected 0)"

    def kill(self) -> None:
        """Crash: SIGKILL and reap. A no-op if the process already exited."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        _LIVE.discard(self)

    def teardown(self) -> None:
        """End-of-test cleanup: try a graceful stop, fall back to SIGKILL; never fails the test."""
        if self.proc is None or self.proc.poll() is not None:
            _LIVE.discard(self)
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        _LIVE.discard(self)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return "(no log file)"
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def lightstream_bin() -> Path:
    raw = os.environ.get(BIN_ENV)
    if not raw:
        pytest.fail(
            f"{BIN_ENV} is not set: point it at a built broker, e.g. "
            f"{BIN_ENV}=$PWD/target/release/lightstream (bash .ci/test-all.sh does this)",
            pytrace=False,
        )
    path = Path(raw)
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{BIN_ENV}={raw} is not an executable file; build it with `cargo build --release -p broker`",
                    pytrace=False)
    return path


@pytest.fixture
def broker_factory(request, lightstream_bin: Path, tmp_path: Path):
    """Start brokers with custom arguments: `broker_factory("--auto-create-topics", "false")`.

    Each call gets its own port and data dir under the test's tmp_path. Pass
    `start=False` to get a configured but stopped Broker.
    """
    brokers: list[Broker] = []
    request.node._lightstream_brokers = brokers

    def make(*extra_args: str, start: bool = True, env: dict[str, str] | None = None,
             data_dir: Path | None = None) -> Broker:
        b = Broker(lightstream_bin, tmp_path / f"broker{len(brokers)}", list(extra_args), env, data_dir)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make
    for b in brokers:
        b.teardown()


S3_ACCESS_KEY = "lightstream-compat"
S3_SECRET_KEY = "lightstream-compat-secret"
S3_BUCKET = "lightstream"


class S3Server:
    """An s3s-fs process (a real S3 server: SigV4, checksums, conditional
    writes) over a directory, on a free loopback port, stopped by PID."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None):
        self.dir = workdir / "s3"
        (self.dir / S3_BUCKET).mkdir(parents=True)  # s3s-fs: a bucket is a directory
        self.env = {**os.environ, **(env or {})}
        self.port = free_port()
        self.log_path = workdir / "s3s-fs.log"
        self.start()

    def start(self) -> None:
        """Starts (or restarts, on the same port and directory) the server."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["s3s-fs", "--host", "127.0.0.1", "--port", str(self.port),
                 "--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY, str(self.dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
                start_new_session=True, preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not port_accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"s3s-fs did not start on {self.port} (log: {self.log_path})", pytrace=False)
            time.sleep(0.05)

    def broker_env(self, prefix: str) -> dict[str, str]:
        """Settings that put a broker's objects under `prefix` in the bucket."""
        return {
            "LIGHTSTREAM_STORAGE_URL": f"s3://{S3_BUCKET}/{prefix}",
            "LIGHTSTREAM_S3_ENDPOINT": f"http://127.0.0.1:{self.port}",
            "LIGHTSTREAM_S3_PATH_STYLE": "true",
            "LIGHTSTREAM_S3_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "LIGHTSTREAM_S3_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "LIGHTSTREAM_S3_STATS_INTERVAL_MS": "500",
        }

    def objects(self, prefix: str) -> list[Path]:
        return [p for p in (self.dir / S3_BUCKET / prefix).rglob("*.obj") if p.is_file()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One s3s-fs for the session; each S3-mode broker gets its own prefix."""
    import shutil

    if shutil.which("s3s-fs") is None:
        from tools.needs import missing

        missing("s3s-fs is not installed: `cargo install s3s-fs@0.14.1 --features binary --locked` "
                "(bash .ci/test-all.sh installs it)")
    server = S3Server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


def pytest_generate_tests(metafunc):
    """Tests marked `also_s3` run twice: objects in the local directory, and
    in S3 (s3s-fs); only in S3 when COMPAT_S3_ONLY is set (the test
    command's second pass, with object compaction forced on)."""
    if "broker" in metafunc.fixturenames and metafunc.definition.get_closest_marker("also_s3"):
        modes = ["s3"] if os.environ.get("COMPAT_S3_ONLY") else ["local", "s3"]
        metafunc.parametrize("broker", modes, indirect=True)


@pytest.fixture
def broker(request, broker_factory) -> Broker:
    """A running broker with default settings (topic auto-creation on); for
    `also_s3` tests, once with local objects and once with objects in S3."""
    if getattr(request, "param", "local") == "s3":
        s3 = request.getfixturevalue("s3_server")
        prefix = f"b{uuid.uuid4().hex[:12]}"
        b = broker_factory(env=s3.broker_env(prefix))
        b.s3_prefix = prefix
        b.s3 = s3
        return b
    return broker_factory()


def pytest_runtest_setup(item):
    spent = time.monotonic() - _SESSION_START
    if spent > SESSION_BUDGET_S:
        pytest.fail(
            f"compat-tests session budget of {SESSION_BUDGET_S:.0f}s spent ({spent:.0f}s so far); "
            "not starting another broker (set COMPAT_BUDGET_S to change)",
            pytrace=False,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach each broker's log tail to the report of a failing test phase."""
    report = yield
    if report.failed:
        for i, b in enumerate(getattr(item, "_lightstream_brokers", [])):
            report.sections.append((f"lightstream broker{i} log tail ({b.log_path})", b.log_tail()))
    return report
