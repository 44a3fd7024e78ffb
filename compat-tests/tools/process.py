"""Process and port helpers shared by the pytest fixtures (conftest.py) and
librdkafka's suite runner (librdkafka/suite.py). No pytest here: the suite
runner runs under any python3.
"""

from __future__ import annotations

import signal
import socket
import subprocess

# prctl(2), resolved here in the parent: the child between fork and exec must
# not import anything (another thread may hold the import lock at fork).
try:
    import ctypes

    _PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except (ImportError, OSError):  # not glibc Linux
    _PRCTL = None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A `preexec_fn`: the child is SIGKILLed when the process that started it dies.

    Covers the exits that skip teardown and atexit (pytest-timeout's thread
    method, os._exit, a SIGKILL of the runner). Linux only; elsewhere a no-op.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def stop_gracefully(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within `timeout_s`."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
