"""Admin actions on a node: suspend, resume, remove, rotate its API key.

Each action checks the node's state, changes it, writes the audit entry and — for the on-chain
registry — queues a chain outbox message in the same transaction (the rewards area's relay sends
it, checking on-chain state first). Idempotency keys follow the cross-area contract:
``chain:deregister_node:<node_id>:<n>`` and, when a suspended node is resumed,
``chain:register_node:<node_id>:<n>`` (the first registration at provisioning used the bare
``chain:register_node:<node_id>``, so re-registrations count from 2).
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.outbox import enqueue
from noderr_core.tables import DownloadToken, Node, NodeStatus, Operator, OutboxKind, OutboxMessage
from noderr_core.settings import Settings
from noderr_core.timeutil import utcnow

MAX_REASON_LENGTH = 1000


class NodeActionError(ValueError):
    """An admin action that cannot be applied to the node; the message is shown as is."""


def get_node_for_update(session: Session, node_id: str) -> Node:
    stmt = select(Node).where(Node.id == node_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    node = session.scalar(stmt.execution_options(populate_existing=True))
    if node is None:
        raise NodeActionError(f"node {node_id} does not exist")
    return node


def _clean_reason(reason: str | None, *, required: bool, action: str) -> str | None:
    reason = (reason or "").strip() or None
    if required and not reason:
        raise NodeActionError(f"a reason is required to {action} a node: the operator sees it")
    if reason and len(reason) > MAX_REASON_LENGTH:
        raise NodeActionError(f"the reason is too long ({len(reason)} characters, at most {MAX_REASON_LENGTH})")
    return reason


def _next_sequence(session: Session, key_prefix: str, first: int) -> int:
    existing = session.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.idempotency_key.startswith(key_prefix, autoescape=True))
    )
    return first + int(existing or 0)


def _enqueue_chain(session: Session, *, idempotency_key: str, payload: dict, node_id: str) -> None:
    enqueue(
        session,
        kind=OutboxKind.CHAIN,
        idempotency_key=idempotency_key,
        payload=payload,
        subject_type="node",
        subject_id=node_id,
    )


def _queue_deregistration(session: Session, node: Node) -> str:
    n = _next_sequence(session, f"chain:deregister_node:{node.id}:", 1)
    key = f"chain:deregister_node:{node.id}:{n}"
    _enqueue_chain(
        session,
        idempotency_key=key,
        payload={"action": "deregister_node", "node_id": node.id},
        node_id=node.id,
    )
    return key


def suspend_node(session: Session, *, node_id: str, actor: Actor, reason: str | None) -> Node:
    """Stop a node: it gets no work and no rewards, and is deregistered on-chain."""
    reason = _clean_reason(reason, required=True, action="suspend")
    node = get_node_for_update(session, node_id)
    if node.status in (NodeStatus.SUSPENDED, NodeStatus.REMOVED):
        raise NodeActionError(f"node {node.id} is already {node.status}")
    previous = node.status
    node.status = NodeStatus.SUSPENDED
    node.status_reason = reason
    key = _queue_deregistration(session, node)
    audit(session, actor, "node.suspended", "node", node.id, reason=reason,
          previous_status=previous, chain_message=key)
    session.flush()
    return node


def resume_node(session: Session, *, node_id: str, actor: Actor) -> Node:
    """Let a suspended node work again; it is registered on-chain again.

    It comes back as offline (or provisioned if it never reported): its next heartbeat makes it
    online, so the dashboard never shows a node online that is not actually reporting.
    """
    node = get_node_for_update(session, node_id)
    if node.status != NodeStatus.SUSPENDED:
        raise NodeActionError(f"node {node.id} is {node.status}, not suspended: nothing to resume")
    node.status = NodeStatus.OFFLINE if node.last_heartbeat_at else NodeStatus.PROVISIONED
    node.status_reason = None
    operator = session.get(Operator, node.operator_id)
    n = _next_sequence(session, f"chain:register_node:{node.id}:", 2)
    key = f"chain:register_node:{node.id}:{n}"
    _enqueue_chain(
        session,
        idempotency_key=key,
        payload={"action": "register_node", "node_id": node.id,
                 "operator_wallet": operator.wallet_address if operator else None},
        node_id=node.id,
    )
    audit(session, actor, "node.resumed", "node", node.id, new_status=node.status, chain_message=key)
    session.flush()
    return node


def remove_node(session: Session, *, node_id: str, actor: Actor, reason: str | None) -> Node:
    """Retire a node for good: its key stops working, open download links are revoked."""
    reason = _clean_reason(reason, required=True, action="remove")
    node = get_node_for_update(session, node_id)
    if node.status == NodeStatus.REMOVED:
        raise NodeActionError(f"node {node.id} is already removed")
    previous = node.status
    node.status = NodeStatus.REMOVED
    node.status_reason = reason
    now = utcnow()
    session.execute(
        update(DownloadToken)
        .where(DownloadToken.node_id == node.id, DownloadToken.used_at.is_(None),
               DownloadToken.revoked_at.is_(None))
        .values(revoked_at=now, sealed_api_key=None)
    )
    key = None
    if previous != NodeStatus.SUSPENDED:  # a suspended node was already deregistered
        key = _queue_deregistration(session, node)
    audit(session, actor, "node.removed", "node", node.id, reason=reason,
          previous_status=previous, chain_message=key)
    session.flush()
    return node


def rotate_node_key(session: Session, *, node_id: str, settings: Settings, actor: Actor) -> Node:
    """Replace the node's API key and send the operator a fresh single-use download link.

    A key nobody can deliver is useless, so rotation *is* re-issuing the download link: the
    onboarding area's `reissue_download_link` rotates the key, revokes older links, creates the
    new token and queues the e-mail, all in this transaction.
    """
    from noderr_core.onboarding.provisioning import reissue_download_link

    node = get_node_for_update(session, node_id)
    if node.status == NodeStatus.REMOVED:
        raise NodeActionError(f"node {node.id} is removed: its key cannot be rotated")
    reissue_download_link(session, node_id=node.id, settings=settings, actor=actor)
    session.flush()
    return node
