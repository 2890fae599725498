"""Helpers for services the tests start themselves: free ports, waiting, stopping by PID."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

# The local stack's helpers, shared rather than rewritten here.
from noderr_core.devstack import free_port, port_open, stop_process_group

__all__ = ["free_port", "port_open", "stop_process", "wait_for"]


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


def stop_process(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL (the same helper the local stack uses)."""
    stop_process_group(proc, grace)
