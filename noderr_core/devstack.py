"""The local stack: every service of the platform as a plain process on loopback.

Used by `noderr dev up` (foreground, Ctrl-C stops all), by `noderr demo`, and by the end-to-end
tests. Each service is a `ServiceSpec`; processes run in their own process group and are stopped
by PID (SIGTERM, wait, SIGKILL).

Providers (one module per part, each with `service_spec(settings) -> ServiceSpec`):
  noderr_core.mailbox       local SMTP server that keeps a readable mailbox (aiosmtpd)
  noderr_core.storage.seaweed  SeaweedFS `weed mini` (S3 API)
  noderr_core.chain.devchain   Ganache JSON-RPC dev chain
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def api_spec(settings: Settings, env: dict[str, str] | None = None) -> ServiceSpec:
    return ServiceSpec(
        name="api",
        argv=[sys.executable, "-m", "uvicorn", "api.main:app", "--host", settings.api_host,
              "--port", str(settings.api_port), "--no-access-log"],
        url=f"http://{settings.api_host}:{settings.api_port}/admin",
        ready=lambda: http_ok(f"http://{settings.api_host}:{settings.api_port}/healthz"),
        env=env or {},
    )


def dagster_webserver_spec(port: int = 3000, env: dict[str, str] | None = None) -> ServiceSpec:
    return ServiceSpec(
        name="dagster-webserver",
        argv=[str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
              "-h", "127.0.0.1", "-p", str(port)],
        url=f"http://127.0.0.1:{port}",
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/server_info"),
        ready_timeout=180,
        env=env or {},
    )


def dagster_daemon_spec(env: dict[str, str] | None = None) -> ServiceSpec:
    return ServiceSpec(
        name="dagster-daemon",
        argv=[str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        url="(background: sensors, schedules, run queue)",
        ready=lambda: True,
        env=env or {},
        stop_grace=20,
    )


def platform_specs(settings: Settings, dagster_port: int | None = None) -> list[ServiceSpec]:
    """Every service of the local platform, in start order."""
    from noderr_core import mailbox
    from noderr_core.chain import devchain
    from noderr_core.storage import seaweed

    return [
        mailbox.service_spec(settings),
        seaweed.service_spec(settings),
        devchain.service_spec(settings),
        api_spec(settings),
        dagster_webserver_spec(dagster_port or settings.dagster_port),
        dagster_daemon_spec(),
    ]


@contextmanager
def local_stack(settings: Settings, specs: list[ServiceSpec]) -> Iterator[LocalStack]:
    stack = LocalStack(settings)
    try:
        for spec in specs:
            stack.start(spec)
        yield stack
    finally:
        stack.stop()


def prepare_local_state(settings: Settings) -> None:
    """Migrate the database (and anything else a fresh checkout needs) before services start."""
    from noderr_core.migrations import upgrade_database

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.resolved_database_url)


def _interrupt_on_sigterm(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_dev_stack_forever(settings: Settings) -> None:
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)  # stop children on SIGTERM as on Ctrl-C
    prepare_local_state(settings)
    specs = platform_specs(settings)
    with local_stack(settings, specs) as stack:
        from noderr_core.chain.deploy import ensure_deployed

        outcome = ensure_deployed(settings)
        print(f"contracts on the dev chain: {outcome.addresses.to_json()}")
        print("Noderr local stack is up (Ctrl-C stops everything):")
        for running in stack.running:
            print(f"  {running.spec.name:<18} {running.spec.url}   log: {running.log_path}")
        try:
            while True:
                for running in stack.running:
                    if running.proc.poll() is not None:
                        print(f"{running.spec.name} exited ({running.proc.returncode}); stopping")
                        return
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping…")
