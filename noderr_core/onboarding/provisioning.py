"""Carrying out an admin's decision, and re-issuing a node's download link.

Approval → in ONE transaction: the operator (reused when the same email + wallet already operate a
node), the node, its API key (only the sha256 stored; the plaintext sealed in the download token
until the single download), a single-use expiring download token (only its sha256 stored), the
approval email with the portal link, and the chain outbox row that registers the node on-chain.
Rejection → the rejection email. The application row is locked and its status checked first, and
every outbox row has an idempotency key, so a re-run never makes a second key or email.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.email import enqueue_email
from noderr_core.tables import (
    ApplicationStatus,
    DownloadToken,
    Node,
    NodeStatus,
    Operator,
    OperatorApplication,
    OutboxKind,
)
from noderr_core.onboarding.applications import get_application_for_update, set_application_status
from noderr_core.onboarding.screening import email_is_valid
from noderr_core.outbox import enqueue
from noderr_core.security import NODE_KEY_PREFIX, issue_api_key, new_token, seal, sha256_hex
from noderr_core.settings import Settings
from noderr_core.timeutil import utcnow


class ProvisioningError(RuntimeError):
    pass


@dataclass(frozen=True)
class DecisionOutcome:
    application_id: int
    action: str  # provisioned | rejection_queued | rejected_without_email | nothing_to_do
    node_id: str | None = None
    operator_id: int | None = None


def portal_url(settings: Settings, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/portal/download/{token}"


def operator_pages_url(settings: Settings) -> str:
    """The operator's own pages (wallet sign-in): every operator e-mail and the bundle link them."""
    return f"{settings.public_base_url.rstrip('/')}/operator"


def _issue_download_token(session: Session, settings: Settings, node: Node, api_key_plaintext: str) -> tuple[str, DownloadToken]:
    token = new_token()
    row = DownloadToken(
        token_hash=sha256_hex(token),
        node_id=node.id,
        created_at=utcnow(),
        expires_at=utcnow() + timedelta(hours=settings.download_token_ttl_hours),
        sealed_api_key=seal(api_key_plaintext, settings.secret_key.get_secret_value()),
    )
    session.add(row)
    session.flush()
    return token, row


def carry_out_decision(session: Session, *, application_id: int, settings: Settings,
                       actor: Actor) -> DecisionOutcome:
    app = get_application_for_update(session, application_id)
    if app is None:
        raise LookupError(f"application {application_id} does not exist")
    if app.status == ApplicationStatus.APPROVED:
        return _provision(session, app, settings, actor)
    if app.status == ApplicationStatus.REJECTED and app.processed_at is None:
        return _queue_rejection(session, app, actor)
    return DecisionOutcome(app.id, "nothing_to_do", operator_id=app.operator_id)


def _provision(session: Session, app: OperatorApplication, settings: Settings, actor: Actor) -> DecisionOutcome:
    if not app.email or not app.wallet_address:
        raise ProvisioningError(f"application {app.id} has no email or wallet; it cannot be provisioned")
    operator = session.scalar(select(Operator).where(func.lower(Operator.email) == app.email.lower()))
    if operator is None:
        operator = Operator(email=app.email.lower(), full_name=app.full_name,
                            wallet_address=app.wallet_address, created_at=utcnow())
        session.add(operator)
        session.flush()
    elif operator.wallet_address.lower() != app.wallet_address.lower():
        raise ProvisioningError(
            f"{app.email} is operator #{operator.id} with wallet {operator.wallet_address}, "
            f"not {app.wallet_address}: reject this application or fix the operator record"
        )
    key = issue_api_key(NODE_KEY_PREFIX)
    node = Node(
        id=f"node_{secrets.token_hex(8)}",
        operator_id=operator.id,
        application_id=app.id,
        status=NodeStatus.PROVISIONED,
        tier=app.node_tier,
        region=app.region,
        api_key_id=key.key_id,
        api_key_hash=key.key_hash,
        api_key_version=1,
        api_key_rotated_at=utcnow(),
        created_at=utcnow(),
    )
    session.add(node)
    session.flush()
    token, token_row = _issue_download_token(session, settings, node, key.plaintext)
    enqueue_email(
        session,
        template="approval",
        to=operator.email,
        context={"full_name": app.full_name, "node_id": node.id,
                 "expires_at": token_row.expires_at.strftime("%Y-%m-%d %H:%M"),
                 "operator_pages_url": operator_pages_url(settings)},
        secret_context={"portal_url": portal_url(settings, token)},
        secret_key=settings.secret_key.get_secret_value(),
        idempotency_key=f"email:approval:{app.id}",
        subject_type="application",
        subject_id=app.id,
    )
    enqueue(
        session,
        kind=OutboxKind.CHAIN,
        idempotency_key=f"chain:register_node:{node.id}",
        payload={"action": "register_node", "node_id": node.id,
                 "operator_wallet": operator.wallet_address},
        subject_type="node",
        subject_id=node.id,
    )
    set_application_status(app, ApplicationStatus.PROVISIONED)
    app.operator_id = operator.id
    app.processed_at = utcnow()
    audit(session, actor, "application.provisioned", "application", app.id,
          node_id=node.id, operator_id=operator.id)
    session.flush()
    return DecisionOutcome(app.id, "provisioned", node_id=node.id, operator_id=operator.id)


def _queue_rejection(session: Session, app: OperatorApplication, actor: Actor) -> DecisionOutcome:
    app.processed_at = utcnow()
    if not app.email or not email_is_valid(app.email):
        audit(session, actor, "application.rejection_not_sent", "application", app.id,
              reason="no valid email address to notify")
        session.flush()
        return DecisionOutcome(app.id, "rejected_without_email")
    enqueue_email(
        session,
        template="rejection",
        to=app.email,
        context={"full_name": app.full_name, "reason": app.decision_reason or "not specified"},
        idempotency_key=f"email:rejection:{app.id}",
        subject_type="application",
        subject_id=app.id,
    )
    audit(session, actor, "application.rejection_queued", "application", app.id)
    session.flush()
    return DecisionOutcome(app.id, "rejection_queued")


def reissue_download_link(session: Session, *, node_id: str, settings: Settings, actor: Actor) -> None:
    """Rotate the node's API key, revoke its open links, and email a new single-use link."""
    stmt = select(Node).where(Node.id == node_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    node = session.scalar(stmt)
    if node is None:
        raise LookupError(f"node {node_id} does not exist")
    if node.status == NodeStatus.REMOVED:
        raise ValueError(f"node {node_id} was removed; a removed node gets no new credentials")
    operator = session.get(Operator, node.operator_id)
    now = utcnow()
    session.execute(
        update(DownloadToken)
        .where(DownloadToken.node_id == node.id, DownloadToken.used_at.is_(None),
               DownloadToken.revoked_at.is_(None))
        .values(revoked_at=now, sealed_api_key=None)
    )
    key = issue_api_key(NODE_KEY_PREFIX)
    node.api_key_id = key.key_id
    node.api_key_hash = key.key_hash
    node.api_key_version = (node.api_key_version or 1) + 1
    node.api_key_rotated_at = now
    session.flush()
    token, token_row = _issue_download_token(session, settings, node, key.plaintext)
    application = session.get(OperatorApplication, node.application_id) if node.application_id else None
    enqueue_email(
        session,
        template="download_link",
        to=operator.email,
        context={"full_name": operator.full_name or (application.full_name if application else None),
                 "node_id": node.id, "expires_at": token_row.expires_at.strftime("%Y-%m-%d %H:%M"),
                 "operator_pages_url": operator_pages_url(settings)},
        secret_context={"portal_url": portal_url(settings, token)},
        secret_key=settings.secret_key.get_secret_value(),
        idempotency_key=f"email:download_link:{node.id}:{node.api_key_version}",
        subject_type="node",
        subject_id=node.id,
    )
    audit(session, actor, "node.download_link_reissued", "node", node.id,
          api_key_version=node.api_key_version)
    session.flush()
