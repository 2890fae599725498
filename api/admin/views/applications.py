"""The onboarding pages: the application list, an application's page (timeline, provisioning
progress per node, emails) and the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from api.admin.views.paging import Page, like_pattern, paginate
from noderr_core.tables import (
    AdminUser,
    AuditLogEntry,
    BundleDownload,
    DownloadToken,
    Node,
    Operator,
    OperatorApplication,
    OutboxKind,
    OutboxMessage,
)


def list_applications(
    session: Session, *, status: str | None = None, search: str | None = None,
    page: int = 1, per_page: int = 25,
) -> Page[OperatorApplication]:
    """Newest first; `search` matches name, e-mail or wallet (case-insensitive, substring)."""
    stmt = select(OperatorApplication)
    if status:
        stmt = stmt.where(OperatorApplication.status == status)
    if search and search.strip():
        pattern = like_pattern(search.strip())
        stmt = stmt.where(
            or_(
                func.lower(OperatorApplication.full_name).like(pattern, escape="\\"),
                func.lower(OperatorApplication.email).like(pattern, escape="\\"),
                func.lower(OperatorApplication.wallet_address).like(pattern, escape="\\"),
            )
        )
    stmt = stmt.order_by(OperatorApplication.received_at.desc(), OperatorApplication.id.desc())
    return paginate(session, stmt, page, per_page)


@dataclass
class TimelineEvent:
    at: datetime
    title: str
    actor: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class NodeProvisioning:
    node: Node
    tokens: list[DownloadToken]
    downloads: list[BundleDownload]
    chain_messages: list[OutboxMessage]


@dataclass
class ApplicationDetail:
    application: OperatorApplication
    decided_by: AdminUser | None
    operator: Operator | None
    timeline: list[TimelineEvent]
    nodes: list[NodeProvisioning]
    emails: list[OutboxMessage]

    @property
    def emails_sent(self) -> int:
        return sum(1 for m in self.emails if m.status == "sent")


def _actor_label(entry: AuditLogEntry) -> str:
    return entry.actor_label or entry.actor_type


def application_detail(session: Session, application_id: int) -> ApplicationDetail | None:
    app = session.get(OperatorApplication, application_id)
    if app is None:
        return None
    entries = session.scalars(
        select(AuditLogEntry)
        .where(AuditLogEntry.subject_type == "application",
               AuditLogEntry.subject_id == str(app.id))
        .order_by(AuditLogEntry.at, AuditLogEntry.id)
    ).all()
    timeline = [TimelineEvent(app.received_at, "application.received", "webhook")]
    timeline += [TimelineEvent(e.at, e.action, _actor_label(e), e.details or {}) for e in entries]

    nodes = session.scalars(
        select(Node).where(Node.application_id == app.id).order_by(Node.created_at)
    ).all()
    node_ids = [n.id for n in nodes]
    provisioning: list[NodeProvisioning] = []
    tokens_by_node: dict[str, list[DownloadToken]] = {nid: [] for nid in node_ids}
    downloads_by_node: dict[str, list[BundleDownload]] = {nid: [] for nid in node_ids}
    chain_by_node: dict[str, list[OutboxMessage]] = {nid: [] for nid in node_ids}
    node_emails: list[OutboxMessage] = []
    if node_ids:
        for t in session.scalars(select(DownloadToken).where(DownloadToken.node_id.in_(node_ids))
                                 .order_by(DownloadToken.created_at)):
            tokens_by_node[t.node_id].append(t)
        for d in session.scalars(select(BundleDownload).where(BundleDownload.node_id.in_(node_ids))
                                 .order_by(BundleDownload.downloaded_at)):
            downloads_by_node[d.node_id].append(d)
        for m in session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.subject_type == "node", OutboxMessage.subject_id.in_(node_ids))
            .order_by(OutboxMessage.created_at, OutboxMessage.id)
        ):
            (chain_by_node[m.subject_id] if m.kind == OutboxKind.CHAIN else node_emails).append(m)
        node_entries = session.scalars(
            select(AuditLogEntry)
            .where(AuditLogEntry.subject_type == "node", AuditLogEntry.subject_id.in_(node_ids))
            .order_by(AuditLogEntry.at, AuditLogEntry.id)
        ).all()
        timeline += [TimelineEvent(e.at, e.action, _actor_label(e), {"node": e.subject_id, **(e.details or {})})
                     for e in node_entries]
    for n in nodes:
        provisioning.append(NodeProvisioning(n, tokens_by_node[n.id], downloads_by_node[n.id],
                                             chain_by_node[n.id]))
    app_messages = session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.subject_type == "application",
               OutboxMessage.subject_id == str(app.id))
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    ).all()
    emails = [m for m in app_messages if m.kind == OutboxKind.EMAIL] + node_emails
    for m in app_messages:
        if m.kind == OutboxKind.CHAIN:
            for p in provisioning:
                if m.payload.get("node_id") == p.node.id:
                    p.chain_messages.append(m)
    timeline.sort(key=lambda e: e.at)
    return ApplicationDetail(
        application=app,
        decided_by=session.get(AdminUser, app.decided_by_id) if app.decided_by_id else None,
        operator=session.get(Operator, app.operator_id) if app.operator_id else None,
        timeline=timeline,
        nodes=provisioning,
        emails=emails,
    )


def list_audit_log(
    session: Session, *, action: str | None = None, actor: str | None = None,
    subject_type: str | None = None, subject_id: str | None = None,
    page: int = 1, per_page: int = 50,
) -> Page[AuditLogEntry]:
    stmt = select(AuditLogEntry)
    if action:
        # A prefix, so "node." lists every node action and a full name lists just that one.
        stmt = stmt.where(AuditLogEntry.action.startswith(action.strip(), autoescape=True))
    if actor and actor.strip():
        stmt = stmt.where(func.lower(AuditLogEntry.actor_label).like(like_pattern(actor.strip()), escape="\\"))
    if subject_type:
        stmt = stmt.where(AuditLogEntry.subject_type == subject_type)
    if subject_id:
        stmt = stmt.where(AuditLogEntry.subject_id == subject_id.strip())
    stmt = stmt.order_by(AuditLogEntry.at.desc(), AuditLogEntry.id.desc())
    return paginate(session, stmt, page, per_page)
