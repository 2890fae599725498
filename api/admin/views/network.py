"""The network pages: overview (nodes, tasks, models, rewards, alerts) and the node list and page.

Each page is composed here from the domains' own reads (noderr_core.network, .tasks.stats,
.rewards.history, the model registry) plus the chart series of `series`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from api.admin.views.paging import Page, like_pattern
from api.admin.views.series import TimeSeries, choose_bucket, heartbeat_series, throughput_series
from noderr_core.modelstore.rollout import assigned_version
from noderr_core.network import latest_heartbeats, node_status_counts, open_alert_count, recent_alerts
from noderr_core.rewards.history import EpochLeaderboard, latest_epoch_leaderboard
from noderr_core.tables import (
    AuditLogEntry,
    Heartbeat,
    Node,
    NodeStatus,
    Operator,
    OperatorApplication,
    OutboxKind,
    OutboxMessage,
)
from noderr_core.tables.model_registry import ModelVersion, ModelVersionStatus
from noderr_core.tables.network import Alert
from noderr_core.tables.rewards import NodeReward, RewardEpoch
from noderr_core.tables.tasks import NodeReliability, TaskAssignment
from noderr_core.tasks.stats import TaskStats, task_stats
from noderr_core.timeutil import utcnow
from noderr_protocol.base import MAX_MODELS_PER_NODE


@dataclass
class ModelRollout:
    name: str
    versions: list[ModelVersion]
    # Versions the nodes actually run (from their latest heartbeat): version → node count.
    running: dict[str, int] = field(default_factory=dict)

    @property
    def active(self) -> ModelVersion | None:
        return next((v for v in self.versions if v.status == ModelVersionStatus.ACTIVE), None)

    @property
    def canary(self) -> ModelVersion | None:
        return next((v for v in self.versions if v.status == ModelVersionStatus.CANARY), None)


def model_rollouts(session: Session) -> list[ModelRollout]:
    versions = session.scalars(
        select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version.desc())
    ).all()
    by_name: dict[str, ModelRollout] = {}
    for v in versions:
        by_name.setdefault(v.name, ModelRollout(v.name, [])).versions.append(v)
    live_ids = list(session.scalars(
        select(Node.id).where(Node.status.in_([NodeStatus.ONLINE, NodeStatus.OFFLINE]))))
    running: dict[str, Counter] = {}
    for beat in latest_heartbeats(session, live_ids).values():
        # Only models of the catalog are counted, and at most MAX_MODELS_PER_NODE per node: a
        # node's telemetry (stored before the protocol bounded it, or not) cannot grow the page.
        reported = beat.model_versions if isinstance(beat.model_versions, dict) else {}
        for name, version in islice(reported.items(), MAX_MODELS_PER_NODE):
            if name in by_name:
                running.setdefault(name, Counter())[str(version)[:12]] += 1
    for name, counter in running.items():
        by_name[name].running = dict(sorted(counter.items()))
    return list(by_name.values())


@dataclass
class NetworkOverview:
    node_counts: dict[str, int]
    open_alerts: int
    tasks_per_minute: float
    stats: TaskStats
    window_minutes: int
    heartbeat: dict[str, TimeSeries]
    throughput: dict[str, TimeSeries]
    rollouts: list[ModelRollout]
    epoch: EpochLeaderboard | None
    alerts: list[Alert]
    start: datetime
    end: datetime


def network_overview(session: Session, *, window: timedelta = timedelta(hours=6),
                     now: datetime | None = None) -> NetworkOverview:
    end = now or utcnow()
    start = end - window
    bucket = choose_bucket(window)
    recent = timedelta(minutes=10)
    stats_recent = task_stats(session, since=end - recent)
    return NetworkOverview(
        node_counts=node_status_counts(session),
        open_alerts=open_alert_count(session),
        tasks_per_minute=stats_recent.decided / (recent.total_seconds() / 60),
        stats=task_stats(session, since=start),
        window_minutes=int(window.total_seconds() // 60),
        heartbeat=heartbeat_series(session, start=start, end=end, bucket_seconds=bucket),
        throughput=throughput_series(session, start=start, end=end, bucket_seconds=bucket),
        rollouts=model_rollouts(session),
        epoch=latest_epoch_leaderboard(session),
        alerts=recent_alerts(session),
        start=start,
        end=end,
    )


@dataclass
class NodeRow:
    node: Node
    operator: Operator
    reliability: NodeReliability | None


def list_nodes(session: Session, *, status: str | None = None, search: str | None = None,
               page: int = 1, per_page: int = 50) -> Page[NodeRow]:
    stmt = (
        select(Node, Operator, NodeReliability)
        .join(Operator, Operator.id == Node.operator_id)
        .outerjoin(NodeReliability, NodeReliability.node_id == Node.id)
    )
    if status:
        stmt = stmt.where(Node.status == status)
    if search and search.strip():
        pattern = like_pattern(search.strip())
        stmt = stmt.where(or_(func.lower(Node.id).like(pattern, escape="\\"),
                              func.lower(Operator.email).like(pattern, escape="\\"),
                              func.lower(Operator.wallet_address).like(pattern, escape="\\")))
    stmt = stmt.order_by(Node.last_heartbeat_at.desc().nulls_last(), Node.id)
    per_page = max(1, min(per_page, 200))
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.execute(stmt.limit(per_page).offset((max(1, page) - 1) * per_page)).all()
    return Page([NodeRow(n, o, r) for n, o, r in rows], total, max(1, page), per_page)


@dataclass
class NodeDetail:
    node: Node
    operator: Operator
    application: OperatorApplication | None
    latest: Heartbeat | None
    recent_heartbeats: list[Heartbeat]
    heartbeat: dict[str, TimeSeries]
    throughput: dict[str, TimeSeries]
    outcomes: dict[str, int]
    reliability: NodeReliability | None
    earnings: list[tuple[RewardEpoch, NodeReward]]
    alerts: list[Alert]
    audit: list[AuditLogEntry]
    chain_messages: list[OutboxMessage]
    assigned_models: dict[str, int]
    start: datetime
    end: datetime

    @property
    def total_earned(self) -> int:
        return sum(r.amount for _, r in self.earnings)


def node_detail(session: Session, node_id: str, *, window: timedelta = timedelta(hours=6),
                now: datetime | None = None) -> NodeDetail | None:
    node = session.get(Node, node_id)
    if node is None:
        return None
    end = now or utcnow()
    start = end - window
    bucket = choose_bucket(window)
    outcomes = {str(k): int(v) for k, v in session.execute(
        select(TaskAssignment.outcome, func.count()).where(TaskAssignment.node_id == node_id)
        .group_by(TaskAssignment.outcome))}
    earnings = session.execute(
        select(RewardEpoch, NodeReward).join(NodeReward, NodeReward.epoch_id == RewardEpoch.id)
        .where(NodeReward.node_id == node_id).order_by(RewardEpoch.epoch_date.desc()).limit(60)
    ).all()
    recent = list(session.scalars(
        select(Heartbeat).where(Heartbeat.node_id == node_id)
        .order_by(Heartbeat.received_at.desc()).limit(20)))
    return NodeDetail(
        node=node,
        operator=session.get(Operator, node.operator_id),
        application=session.get(OperatorApplication, node.application_id) if node.application_id else None,
        latest=recent[0] if recent else None,
        recent_heartbeats=recent,
        heartbeat=heartbeat_series(session, start=start, end=end, bucket_seconds=bucket, node_id=node_id),
        throughput=throughput_series(session, start=start, end=end, bucket_seconds=bucket, node_id=node_id),
        outcomes=outcomes,
        reliability=session.get(NodeReliability, node_id),
        earnings=[(e, r) for e, r in earnings],
        alerts=recent_alerts(session, limit=20, node_id=node_id),
        audit=list(session.scalars(
            select(AuditLogEntry).where(AuditLogEntry.subject_type == "node",
                                        AuditLogEntry.subject_id == node_id)
            .order_by(AuditLogEntry.at.desc()).limit(50))),
        chain_messages=list(session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == OutboxKind.CHAIN,
                                        OutboxMessage.subject_type == "node",
                                        OutboxMessage.subject_id == node_id)
            .order_by(OutboxMessage.created_at.desc()))),
        assigned_models=_assigned_models(session, node_id),
        start=start,
        end=end,
    )


def _assigned_models(session: Session, node_id: str) -> dict[str, int]:
    """Which version the beacon gives this node for each model (stable canary assignment)."""
    versions = session.scalars(select(ModelVersion).where(
        ModelVersion.status.in_([ModelVersionStatus.ACTIVE, ModelVersionStatus.CANARY]))).all()
    by_name: dict[str, list[ModelVersion]] = {}
    for v in versions:
        by_name.setdefault(v.name, []).append(v)
    out = {}
    for name, vs in sorted(by_name.items()):
        chosen = assigned_version(node_id, vs)
        if chosen is not None:
            out[name] = chosen.version
    return out
