"""The demo's own local stack: fresh state under .noderr/demo, loopback ports picked free."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from noderr_local.process import LocalStack, free_port
from noderr_local.stack import api_spec, dagster_daemon_spec, dagster_webserver_spec
from noderr_core.settings import PROJECT_ROOT, Settings


@dataclass
class DemoEnvironment:
    settings: Settings
    env: dict[str, str]
    state_dir: Path
    dagster_home: Path
    dagster_port: int
    extra: dict = field(default_factory=dict)
    admin: object = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.api_port}"

    @property
    def dagster_url(self) -> str:
        return f"http://127.0.0.1:{self.dagster_port}"


def prepare_environment(state_dir: Path | None = None) -> DemoEnvironment:
    state_dir = state_dir or Path(os.environ.get("NODERR_DEMO_DIR") or PROJECT_ROOT / ".noderr" / "demo")
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    dagster_home = state_dir / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")
    api_port, smtp_port, s3_port, chain_port, dagster_port = (free_port() for _ in range(5))
    env = {
        "NODERR_ENV": "local",
        "NODERR_STATE_DIR": str(state_dir),
        "NODERR_DATABASE_URL": f"sqlite:///{state_dir / 'noderr.db'}",
        "NODERR_API_PORT": str(api_port),
        "NODERR_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
        "NODERR_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
        "NODERR_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "NODERR_CHAIN_RPC_URL": f"http://127.0.0.1:{chain_port}",
        "NODERR_NODE_IMAGE_REGISTRY": f"127.0.0.1:{free_port()}",  # noderr_demo/container_node.py
        "DAGSTER_HOME": str(dagster_home),
    }
    os.environ.update(env)  # this process reads the same settings as its children
    from noderr_core.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    return DemoEnvironment(settings, env, state_dir, dagster_home, dagster_port)


def start_platform(stack: LocalStack, demo: DemoEnvironment) -> None:
    """Mailbox, S3, chain (+ contracts), API, Dagster webserver and daemon."""
    from noderr_local import devchain, mailbox, seaweed

    settings = demo.settings
    for spec in (
        mailbox.service_spec(settings),
        seaweed.service_spec(settings),
        devchain.service_spec(settings),
    ):
        spec.env = {**demo.env, **spec.env}
        stack.start(spec)
    for spec in (
        api_spec(settings, env=demo.env),
        dagster_webserver_spec(demo.dagster_port, env=demo.env),
        dagster_daemon_spec(env=demo.env),
    ):
        stack.start(spec)
