"""`noderr mailbox`: read the local SMTP mailbox (messages the platform sent in the local stack)."""

from __future__ import annotations

from pathlib import Path

import click

from noderr_local.mailbox import format_listing, mailbox_dir, read_mailbox


@click.group("mailbox")
def mailbox() -> None:
    """The local SMTP mailbox (messages the platform sent in the local stack)."""


@mailbox.command("list")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="mailbox directory (default: <NODERR_STATE_DIR>/mailbox)")
def list_messages(directory: Path | None) -> None:
    """Print each message's date, recipient, subject and links."""
    from noderr_core.settings import get_settings

    root = directory or mailbox_dir(get_settings().state_dir)
    click.echo(format_listing(read_mailbox(root)))
