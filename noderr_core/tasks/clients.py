"""Clients of the task API and their keys (`ck_<id>_<secret>`, only the sha256 stored, revocable)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.tables.tasks import Client, ClientApiKey, Task
from noderr_core.security import CLIENT_KEY_PREFIX, api_key_matches, issue_api_key, parse_api_key
from noderr_core.timeutil import utcnow


class ClientError(ValueError):
    """A client-management request that cannot be carried out (message is user-facing)."""


def _normalize_name(name: str) -> str:
    cleaned = " ".join((name or "").split())
    if not cleaned:
        raise ClientError("a client needs a name")
    if len(cleaned) > 200:
        raise ClientError("client names are at most 200 characters")
    return cleaned


def create_client(session: Session, *, name: str, actor: Actor) -> tuple[Client, str]:
    """Create a client with its first API key; the plaintext key is returned once, never stored."""
    name = _normalize_name(name)
    if session.scalar(select(Client.id).where(Client.name == name)) is not None:
        raise ClientError(f"a client named {name!r} already exists")
    client = Client(name=name, created_by=actor.label)
    session.add(client)
    session.flush()
    _key, plaintext = _add_key(session, client)
    audit(session, actor, "client.created", "client", client.id, name=name)
    return client, plaintext


def _add_key(session: Session, client: Client) -> tuple[ClientApiKey, str]:
    issued = issue_api_key(CLIENT_KEY_PREFIX)
    key = ClientApiKey(client_id=client.id, key_id=issued.key_id, key_hash=issued.key_hash)
    session.add(key)
    session.flush()
    return key, issued.plaintext


def issue_client_key(session: Session, *, client_id: int, actor: Actor) -> tuple[ClientApiKey, str]:
    """An additional key for an existing client (for rotation: issue, switch, revoke the old)."""
    client = session.get(Client, client_id)
    if client is None:
        raise ClientError(f"no client with id {client_id}")
    if client.disabled_at is not None:
        raise ClientError(f"client {client.name!r} is disabled")
    key, plaintext = _add_key(session, client)
    audit(session, actor, "client.key_issued", "client", client.id, key_id=key.key_id)
    return key, plaintext


def revoke_client_key(session: Session, *, key_id: str, actor: Actor) -> ClientApiKey:
    """Revoke a key by its public id (the part after `ck_`); requests with it get 401 at once."""
    key = session.scalar(select(ClientApiKey).where(ClientApiKey.key_id == key_id))
    if key is None:
        raise ClientError(f"no client API key with id {key_id!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        audit(session, actor, "client.key_revoked", "client", key.client_id, key_id=key_id)
    return key


def disable_client(session: Session, *, client_id: int, actor: Actor) -> Client:
    """Disable a client: all its keys stop working; its tasks already queued still run."""
    client = session.get(Client, client_id)
    if client is None:
        raise ClientError(f"no client with id {client_id}")
    if client.disabled_at is None:
        client.disabled_at = utcnow()
        audit(session, actor, "client.disabled", "client", client.id)
    return client


def authenticate_client(session: Session, plaintext: str) -> Client | None:
    """The active client behind a `ck_...` key, or None (unknown, revoked, disabled, malformed)."""
    key_id = parse_api_key(plaintext, CLIENT_KEY_PREFIX)
    if key_id is None:
        return None
    key = session.scalar(select(ClientApiKey).where(ClientApiKey.key_id == key_id))
    if key is None or key.revoked_at is not None or not api_key_matches(plaintext, key.key_hash):
        return None
    client = session.get(Client, key.client_id)
    if client is None or client.disabled_at is not None:
        return None
    now = utcnow()
    # Touch at most once a minute: a write per request would cost more than the request.
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
        key.last_used_at = now
    return client


@dataclass(frozen=True)
class ClientSummary:
    id: int
    name: str
    created_at: object
    disabled_at: object
    active_keys: list[str]
    revoked_keys: list[str]
    tasks_total: int


def list_clients(session: Session) -> list[ClientSummary]:
    """Every client with its key ids and task count (for the admin pages and the CLI)."""
    clients = session.scalars(select(Client).order_by(Client.name)).all()
    keys = session.scalars(select(ClientApiKey).order_by(ClientApiKey.created_at)).all()
    counts = dict(session.execute(select(Task.client_id, func.count()).group_by(Task.client_id)).all())
    out = []
    for c in clients:
        mine = [k for k in keys if k.client_id == c.id]
        out.append(
            ClientSummary(
                id=c.id,
                name=c.name,
                created_at=c.created_at,
                disabled_at=c.disabled_at,
                active_keys=[k.key_id for k in mine if k.revoked_at is None],
                revoked_keys=[k.key_id for k in mine if k.revoked_at is not None],
                tasks_total=int(counts.get(c.id, 0)),
            )
        )
    return out
