"""The local stack: every service of the platform as a plain process on loopback.

Used by `noderr dev up` (foreground, Ctrl-C stops all), by `noderr demo`, and by the end-to-end
tests. Providers (one module per part, each with `service_spec(settings) -> ServiceSpec`):
  noderr_local.mailbox    local SMTP server that keeps a readable mailbox (aiosmtpd)
  noderr_local.seaweed    SeaweedFS `weed mini` (S3 API)
  noderr_local.devchain   Ganache JSON-RPC dev chain
  noderr_local.registry   OCI registry (Debian docker-registry) for the node image
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from noderr_core.settings import Settings
from noderr_local.process import LocalStack, ServiceSpec, http_ok

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
