"""The figures of the operations issue, on this machine, in one run:

1. Produce throughput with /metrics scraped every second against not
   scraped: lightstream-load produces to one release broker, runs with and
   without a scraper interleaved (A B A B …) so that the machine's noise
   falls on both; each run prints MB/s and the broker's CPU seconds per GB.
2. The time from SIGTERM to exit for a broker leading 100 partitions with
   data in them (and the time until /readyz answers 503), repeated.

Prints every figure; asserts nothing. Needs the release builds:
    cargo build --release -p broker -p compat-tests
Usage: compat-tests/.venv/bin/python compat-tests/bench/operations.py [--records N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.process import free_port, port_accepts  # noqa: E402

REPO = Path(__file__).resolve().parent.parent.parent
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start_broker(work: Path, *extra: str) -> tuple[subprocess.Popen, int, int]:
    port, admin = free_port(), free_port()
    log = open(work / "broker.log", "ab")
    proc = subprocess.Popen(
        [str(RELEASE / "lightstream"), "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}",
         "--data-dir", str(work / "data"), "--log", "warn", *extra],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not port_accepts(port):
        assert proc.poll() is None and time.monotonic() < deadline, "broker did not start"
        time.sleep(0.05)
    return proc, port, admin


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def load(port: int, topic: str, records: int, partitions: int = 4) -> float:
    out = subprocess.run(
        [str(RELEASE / "lightstream-load"), "--bootstrap", f"127.0.0.1:{port}", "--topic", topic,
         "--records", str(records), "--size", "1024", "--partitions", str(partitions), "--no-consume"],
        capture_output=True, text=True, timeout=900, check=True,
    )
    return float(re.search(r"mb_per_s=([0-9.]+)", out.stdout).group(1))


def scrape_overhead(records: int, rounds: int) -> None:
    print(f"== produce throughput, /metrics scraped every 1 s vs not ({records} x 1 KiB records per run, "
          f"{rounds} rounds, interleaved)")
    with tempfile.TemporaryDirectory() as d:
        proc, port, admin = start_broker(Path(d))
        figures: dict[str, list[tuple[float, float]]] = {"not scraped": [], "scraped": []}
        try:
            for r in range(rounds):
                for mode in ("not scraped", "scraped"):
                    stop = threading.Event()
                    scrapes = [0]

                    def scraper():
                        while not stop.wait(1.0):
                            if get(f"http://127.0.0.1:{admin}/metrics") == 200:
                                scrapes[0] += 1

                    t = threading.Thread(target=scraper, daemon=True)
                    if mode == "scraped":
                        t.start()
                    cpu = cpu_seconds(proc.pid)
                    mb_s = load(port, f"ops-{r}-{mode.replace(' ', '-')}", records)
                    cpu_per_gb = (cpu_seconds(proc.pid) - cpu) / (records * 1024 / 1e9)
                    stop.set()
                    if mode == "scraped":
                        t.join()
                    figures[mode].append((mb_s, cpu_per_gb))
                    print(f"round {r + 1} {mode:>11}: {mb_s:7.1f} MB/s, broker {cpu_per_gb:5.2f} CPU s/GB"
                          + (f", {scrapes[0]} scrapes" if mode == "scraped" else ""))
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    med = {m: (statistics.median(x for x, _ in v), statistics.median(c for _, c in v)) for m, v in figures.items()}
    a, b = med["not scraped"], med["scraped"]
    print(f"median not scraped: {a[0]:.1f} MB/s, {a[1]:.2f} CPU s/GB; scraped: {b[0]:.1f} MB/s, "
          f"{b[1]:.2f} CPU s/GB; throughput {100 * (b[0] - a[0]) / a[0]:+.1f} %, CPU/GB {100 * (b[1] - a[1]) / a[1]:+.1f} %")


def shutdown_time(rounds: int, partitions: int = 100) -> None:
    print(f"== SIGTERM to exit, a broker leading {partitions} partitions with data ({rounds} rounds)")
    for r in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            proc, port, admin = start_broker(Path(d))
            load(port, "ops-shutdown", 20_000, partitions=partitions)
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            not_ready = None
            while proc.poll() is None:
                if not_ready is None and get(f"http://127.0.0.1:{admin}/readyz") == 503:
                    not_ready = time.monotonic() - sent
                time.sleep(0.005)
            took = time.monotonic() - sent
            ready_ms = f"{not_ready * 1000:.0f} ms" if not_ready is not None else "not seen"
            print(f"round {r + 1}: exit {proc.returncode} after {took * 1000:.0f} ms; /readyz 503 after {ready_ms}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"== machine: {os.cpu_count()} cores; git {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, cwd=REPO).stdout.strip()}")
    scrape_overhead(args.records, args.rounds)
    shutdown_time(args.rounds)


if __name__ == "__main__":
    main()
