"""Helpers for services the tests start themselves: free ports, waiting, stopping by PID."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

from noderr_core.devstack import stop_process_group


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # the service is not up yet
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"{what} did not become ready within {timeout}s (last error: {last_exc})")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL (the same helper the local stack uses)."""
    stop_process_group(proc, grace)
