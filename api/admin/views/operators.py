"""The operator pages: the operator list and an operator's page (nodes, applications, emails, earnings)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from api.admin.views.paging import Page, like_pattern
from noderr_core.tables import (
    BundleDownload,
    DownloadToken,
    Node,
    NodeStatus,
    Operator,
    OperatorApplication,
    OutboxKind,
    OutboxMessage,
)
from noderr_core.tables.rewards import OperatorReward, RewardEpoch


@dataclass
class OperatorRow:
    operator: Operator
    node_count: int
    online: int


def list_operators(session: Session, *, search: str | None = None, page: int = 1,
                   per_page: int = 50) -> Page[OperatorRow]:
    counts = (
        select(Node.operator_id.label("oid"), func.count().label("n"),
               func.sum(case((Node.status == NodeStatus.ONLINE, 1), else_=0)).label("online"))
        .group_by(Node.operator_id).subquery()
    )
    stmt = select(Operator, counts.c.n, counts.c.online).outerjoin(counts, counts.c.oid == Operator.id)
    if search and search.strip():
        pattern = like_pattern(search.strip())
        stmt = stmt.where(or_(func.lower(Operator.email).like(pattern, escape="\\"),
                              func.lower(Operator.full_name).like(pattern, escape="\\"),
                              func.lower(Operator.wallet_address).like(pattern, escape="\\")))
    stmt = stmt.order_by(Operator.created_at.desc(), Operator.id.desc())
    per_page = max(1, min(per_page, 200))
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.execute(stmt.limit(per_page).offset((max(1, page) - 1) * per_page)).all()
    return Page([OperatorRow(o, int(n or 0), int(on or 0)) for o, n, on in rows], total,
                max(1, page), per_page)


@dataclass
class OperatorDetail:
    operator: Operator
    nodes: list[Node]
    applications: list[OperatorApplication]
    emails: list[OutboxMessage]
    downloads: list[BundleDownload]
    tokens: list[DownloadToken]
    earnings: list[tuple[RewardEpoch, OperatorReward]]

    @property
    def total_earned(self) -> int:
        return sum(r.amount for _, r in self.earnings)


def operator_detail(session: Session, operator_id: int) -> OperatorDetail | None:
    op = session.get(Operator, operator_id)
    if op is None:
        return None
    nodes = list(session.scalars(select(Node).where(Node.operator_id == op.id).order_by(Node.created_at)))
    node_ids = [n.id for n in nodes]
    apps = list(session.scalars(
        select(OperatorApplication)
        .where(or_(OperatorApplication.operator_id == op.id,
                   func.lower(OperatorApplication.email) == op.email.lower()))
        .order_by(OperatorApplication.received_at.desc())))
    app_ids = [str(a.id) for a in apps]
    subject_filters = []
    if node_ids:
        subject_filters.append(and_(OutboxMessage.subject_type == "node",
                                    OutboxMessage.subject_id.in_(node_ids)))
    if app_ids:
        subject_filters.append(and_(OutboxMessage.subject_type == "application",
                                    OutboxMessage.subject_id.in_(app_ids)))
    emails: list[OutboxMessage] = []
    if subject_filters:
        emails = list(session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.EMAIL, or_(*subject_filters))
            .order_by(OutboxMessage.created_at.desc())))
    downloads = list(session.scalars(
        select(BundleDownload).where(BundleDownload.node_id.in_(node_ids))
        .order_by(BundleDownload.downloaded_at.desc()))) if node_ids else []
    tokens = list(session.scalars(
        select(DownloadToken).where(DownloadToken.node_id.in_(node_ids))
        .order_by(DownloadToken.created_at.desc()))) if node_ids else []
    earnings = session.execute(
        select(RewardEpoch, OperatorReward).join(OperatorReward, OperatorReward.epoch_id == RewardEpoch.id)
        .where(func.lower(OperatorReward.wallet) == op.wallet_address.lower())
        .order_by(RewardEpoch.epoch_date.desc()).limit(60)
    ).all()
    return OperatorDetail(op, nodes, apps, emails, downloads, tokens, [(e, r) for e, r in earnings])
