"""The local stack: every service of the platform as a plain process on loopback.

Used by `noderr dev up` (foreground, Ctrl-C stops all), by `noderr demo`, and by the end-to-end
tests. Providers (one module per part, each with `service_spec(settings) -> ServiceSpec`):
  noderr_local.mailbox    local SMTP server that keeps a readable mailbox (aiosmtpd)
  noderr_local.seaweed    SeaweedFS `weed mini` (S3 API)
  noderr_local.devchain   Ganache JSON-RPC dev chain
  noderr_local.registry   OCI registry (Debian docker-registry) for the node image

One stack per state directory: `exclusive_stack` refuses a second one (and busy ports) before
anything is started or any file of the running stack is touched.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from noderr_core.settings import Settings
from noderr_local.process import LocalStack, ServiceSpec, http_ok, port_open


class StackAlreadyRunning(RuntimeError):
    """Another local stack holds this state directory or the stack's ports."""

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
    from noderr_local import devchain, mailbox, registry, seaweed

    return [
        mailbox.service_spec(settings),
        seaweed.service_spec(settings),
        registry.service_spec(settings),
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
    """Migrate the database (and anything else a fresh checkout needs) before services start.

    The state directory is the stack's own: it is created here (an explicit NODERR_DATABASE_URL
    elsewhere must point into an existing directory).
    """
    from noderr_core.migrations import upgrade_database

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.resolved_database_url)


def stack_ports(settings: Settings) -> dict[str, tuple[str, int]]:
    """Where each service of the local stack listens."""
    from noderr_local.mailbox import smtp_host_port

    def of(url: str, default: int) -> tuple[str, int]:
        parts = urlsplit(url)
        return parts.hostname or "127.0.0.1", parts.port or default

    return {
        "api": (settings.api_host, settings.api_port),
        "dagster-webserver": ("127.0.0.1", settings.dagster_port),
        "mailbox": smtp_host_port(settings.smtp_url),
        "s3": of(settings.s3_endpoint_url, 80),
        "chain": of(settings.chain_rpc_url, 8545),
    }


@contextmanager
def exclusive_stack(settings: Settings) -> Iterator[Path]:
    """Hold the state directory's stack lock, or refuse (before anything is started or touched).

    The lock is an flock on ``<state_dir>/dev-stack.lock`` (released by the kernel if the holder
    dies, so a crashed stack never blocks the next one); the file names the holder. The stack's
    ports must be free too: a stack of another state directory on the same ports is refused.
    """
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    lock_path = settings.state_dir / "dev-stack.lock"
    handle = lock_path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise StackAlreadyRunning(
                f"a local stack is already running for {settings.state_dir} ({holder}): "
                "stop it (Ctrl-C in its terminal) before starting another"
            ) from None
        busy = [f"{name} {host}:{port}" for name, (host, port) in stack_ports(settings).items()
                if port_open(host, port)]
        if busy:
            raise StackAlreadyRunning(
                f"port(s) already in use: {', '.join(busy)}. Another stack or program is running: "
                "stop it, or point the NODERR_*_PORT / *_URL settings elsewhere"
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, API http://{settings.api_host}:{settings.api_port}/admin\n")
        handle.flush()
        yield lock_path
    finally:
        handle.close()  # releases the lock


def _interrupt_on_sigterm(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_dev_stack_forever(settings: Settings) -> None:
    with exclusive_stack(settings):
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)  # stop children on SIGTERM as on Ctrl-C
        prepare_local_state(settings)
        _run_until_stopped(settings)


def _run_until_stopped(settings: Settings) -> None:
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
