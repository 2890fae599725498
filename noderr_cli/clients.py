"""`noderr clients …`: create task-API clients, issue and revoke their keys, list them."""

from __future__ import annotations

import click

from noderr_core.settings import get_settings


def _session_factory():
    from noderr_core.db import engine_for_settings, make_session_factory

    return make_session_factory(engine_for_settings(get_settings()))


def _actor():
    import getpass

    from noderr_core.audit import Actor

    return Actor.system(f"cli:{getpass.getuser()}")


@click.group("clients")
def clients() -> None:
    """Clients of the task API (keys are shown once, only their hash is stored)."""


@clients.command("create")
@click.argument("name")
def clients_create(name: str) -> None:
    """Create a client and print its API key (once)."""
    from noderr_core.tasks import ClientError, create_client

    with _session_factory()() as s:
        try:
            client, key = create_client(s, name=name, actor=_actor())
        except ClientError as exc:
            raise click.ClickException(str(exc)) from None
        s.commit()
    click.echo(f"client {client.id} {client.name!r} created. API key (shown once, store it now):")
    click.echo(key)


@clients.command("issue-key")
@click.argument("client_id", type=int)
def clients_issue_key(client_id: int) -> None:
    """Issue an additional key for a client (rotate: issue, switch, then revoke the old one)."""
    from noderr_core.tasks import ClientError, issue_client_key

    with _session_factory()() as s:
        try:
            _key, plaintext = issue_client_key(s, client_id=client_id, actor=_actor())
        except ClientError as exc:
            raise click.ClickException(str(exc)) from None
        s.commit()
    click.echo(plaintext)


@clients.command("revoke")
@click.argument("key_id")
def clients_revoke(key_id: str) -> None:
    """Revoke a key by its id (the part after `ck_`) or by the full key."""
    from noderr_core.security import CLIENT_KEY_PREFIX, parse_api_key
    from noderr_core.tasks import ClientError, revoke_client_key

    key_id = parse_api_key(key_id, CLIENT_KEY_PREFIX) or key_id
    with _session_factory()() as s:
        try:
            revoke_client_key(s, key_id=key_id, actor=_actor())
        except ClientError as exc:
            raise click.ClickException(str(exc)) from None
        s.commit()
    click.echo(f"key {key_id} revoked")


@clients.command("list")
def clients_list() -> None:
    """List clients, their active and revoked key ids, and task counts."""
    from noderr_core.tasks import list_clients

    with _session_factory()() as s:
        rows = list_clients(s)
    if not rows:
        click.echo("no clients yet: `noderr clients create NAME`")
    for c in rows:
        state = "disabled" if c.disabled_at else "active"
        click.echo(
            f"{c.id:>4}  {c.name:<30} {state:<8} tasks={c.tasks_total:<8} "
            f"keys={','.join(c.active_keys) or '-'} revoked={','.join(c.revoked_keys) or '-'}"
        )
