"""The `noderr` command: database, local stack, chain and demo."""

from __future__ import annotations

import click

from noderr_cli.errors import NoderrGroup
from noderr_core.settings import get_settings


@click.group(cls=NoderrGroup)
def main() -> None:
    """Noderr control-plane tools."""


@main.group()
def db() -> None:
    """Database schema (Alembic migrations are the only schema source)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations to NODERR_DATABASE_URL (default: SQLite under .noderr/)."""
    from noderr_core.db import engine_for_settings, redacted_url
    from noderr_core.migrations import upgrade_database

    settings = get_settings()
    engine_for_settings(settings)  # the default SQLite file's state directory is created here
    upgrade_database(settings.resolved_database_url, revision)
    click.echo(f"database at {redacted_url(settings.resolved_database_url)} is at revision {revision}")


@main.group()
def dev() -> None:
    """The local stack."""


@dev.command("up")
def dev_up() -> None:
    """Start API, Dagster webserver + daemon, SMTP mailbox, S3 and dev chain on loopback.

    Runs in the foreground, prints the URLs, and stops everything on Ctrl-C. Refuses to start
    while another stack runs for the same state directory or holds the stack's ports.
    """
    from noderr_local.stack import run_dev_stack_forever

    run_dev_stack_forever(get_settings())


from noderr_cli.chain import chain as _chain_commands  # noqa: E402
from noderr_cli.clients import clients as _clients_commands  # noqa: E402
from noderr_cli.images import images as _images_commands  # noqa: E402
from noderr_cli.mailbox import mailbox as _mailbox_commands  # noqa: E402
from noderr_cli.models import models as _models_commands  # noqa: E402

for _group in (_chain_commands, _mailbox_commands, _clients_commands, _models_commands,
               _images_commands):
    main.add_command(_group)


@main.command("demo")
def demo() -> None:
    """Run all four journeys end to end on a fresh local stack (what `make demo` runs)."""
    from noderr_demo.run import main as run_demo_main

    run_demo_main()


if __name__ == "__main__":  # pragma: no cover
    main()
