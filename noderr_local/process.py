"""Process supervision for the local stack: free ports, readiness, starting and stopping by PID.

The bottom of `noderr_local`: every service (PostgreSQL, the SMTP mailbox, SeaweedFS, the dev
chain, the OCI registry, the API, Dagster) is a `ServiceSpec` started in its own process group and
stopped by PID (SIGTERM, wait, SIGKILL). Imports nothing from the project but the core settings.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from noderr_core.settings import PROJECT_ROOT, Settings

@dataclass
class ServiceSpec:
    name: str
    argv: list[str]
    url: str  # where a person looks
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = PROJECT_ROOT
    ready_timeout: float = 60.0
    stop_grace: float = 15.0
    before_start: Callable[[], None] | None = None
    after_ready: Callable[[], None] | None = None


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
            return resp.status < 500
    except Exception:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningService:
    spec: ServiceSpec
    proc: subprocess.Popen
    log_path: Path


class LocalStack:
    """Starts services in order, waits for each to be ready, stops them in reverse order."""

    def __init__(self, settings: Settings, log_dir: Path | None = None):
        self.settings = settings
        self.log_dir = log_dir or settings.state_dir / "logs"
        self.running: list[RunningService] = []

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / "dagster_home"))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, spec: ServiceSpec) -> RunningService:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        if spec.before_start:
            spec.before_start()
        env = self.base_env() | spec.env
        log = log_path.open("ab")
        proc = subprocess.Popen(
            spec.argv, cwd=spec.cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        running = RunningService(spec, proc, log_path)
        self.running.append(running)
        deadline = time.monotonic() + spec.ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{spec.name} exited with {proc.returncode}; log {log_path}:\n{tail}")
            if spec.ready():
                if spec.after_ready:
                    spec.after_ready()
                return running
            time.sleep(0.2)
        raise TimeoutError(f"{spec.name} not ready after {spec.ready_timeout}s; see {log_path}")

    def stop(self) -> None:
        for running in reversed(self.running):
            stop_process_group(running.proc, running.spec.stop_grace)
        self.running.clear()


def stop_process_group(proc: subprocess.Popen, grace: float) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)



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
