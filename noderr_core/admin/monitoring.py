"""Read models for the monitoring pages: network overview, node, operator, nodes and operators lists.

Time series are bucketed in SQL (one GROUP BY per chart, on the indexed timestamp) with a
dialect-specific epoch expression, so a chart costs one query whatever the heartbeat volume.
Tables of other areas (tasks, rewards, model registry, alerts) are read through their ORM classes.
"""

from __future__ import annotations

from collections import Counter
from itertools import islice
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, case, cast, distinct, func, or_, select
from sqlalchemy.orm import Session

from noderr_core.admin.queries import Page, _like, paginate
from noderr_core.tables import (
    AuditLogEntry,
    BundleDownload,
    DownloadToken,
    Heartbeat,
    Node,
    NodeStatus,
    Operator,
    OperatorApplication,
    OutboxMessage,
)
from noderr_core.tables.model_registry import ModelVersion, ModelVersionStatus
from noderr_core.tables.network import Alert
from noderr_core.tables.rewards import NodeReward, OperatorReward, RewardEpoch
from noderr_core.tables.tasks import NodeReliability, Task, TaskAssignment, TaskStatus
from noderr_core.timeutil import utcnow
from noderr_protocol.base import MAX_MODELS_PER_NODE



@dataclass
class SeriesPoint:
    at: datetime
    value: float | None


@dataclass
class TimeSeries:
    name: str
    points: list[SeriesPoint]
    unit: str = ""

    @property
    def last(self) -> float | None:
        for p in reversed(self.points):
            if p.value is not None:
                return p.value
        return None


def bucket_index(session: Session, column, bucket_seconds: int):
    """floor(unix_time(column) / bucket_seconds) as an integer SQL expression."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", column) / bucket_seconds), Integer)
    # SQLite stores UTCDateTime as 'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC); integer division floors.
    return cast(func.strftime("%s", column), Integer) / bucket_seconds


def _bucket_start(index: int, bucket_seconds: int) -> datetime:
    from datetime import UTC

    return datetime.fromtimestamp(index * bucket_seconds, UTC)


def _series_from_rows(rows, start: datetime, end: datetime, bucket_seconds: int,
                      names: list[str], units: list[str], fill: float | None = None) -> list[TimeSeries]:
    """Rows (bucket, v1, v2, ...) → one dense series per value (missing buckets = `fill`)."""
    first = int(start.timestamp()) // bucket_seconds
    last = int(end.timestamp()) // bucket_seconds
    by_bucket = {int(r[0]): r[1:] for r in rows}
    out = []
    for i, (name, unit) in enumerate(zip(names, units, strict=True)):
        points = []
        for b in range(first, last + 1):
            values = by_bucket.get(b)
            v = values[i] if values is not None else fill
            points.append(SeriesPoint(_bucket_start(b, bucket_seconds),
                                      None if v is None else float(v)))
        out.append(TimeSeries(name, points, unit))
    return out


def heartbeat_series(session: Session, *, start: datetime, end: datetime, bucket_seconds: int,
                     node_id: str | None = None) -> dict[str, TimeSeries]:
    """Per bucket: nodes reporting, heartbeats, mean p50 and p95 latency (ms)."""
    b = bucket_index(session, Heartbeat.received_at, bucket_seconds).label("b")
    stmt = (
        select(b, func.count(distinct(Heartbeat.node_id)), func.count(),
               func.avg(Heartbeat.latency_p50_ms), func.avg(Heartbeat.latency_p95_ms))
        .where(Heartbeat.received_at >= start, Heartbeat.received_at <= end)
        .group_by(b)
    )
    if node_id is not None:
        stmt = stmt.where(Heartbeat.node_id == node_id)
    rows = session.execute(stmt).all()
    online, beats = _series_from_rows(
        [(r[0], r[1], r[2]) for r in rows], start, end, bucket_seconds,
        ["nodes reporting", "heartbeats"], ["nodes", "beats"], fill=0)
    p50, p95 = _series_from_rows(
        [(r[0], r[3], r[4]) for r in rows], start, end, bucket_seconds,
        ["latency p50", "latency p95"], ["ms", "ms"], fill=None)
    return {"online": online, "heartbeats": beats, "p50": p50, "p95": p95}


def throughput_series(session: Session, *, start: datetime, end: datetime, bucket_seconds: int,
                      node_id: str | None = None) -> dict[str, TimeSeries]:
    """Per bucket, per minute: results submitted by nodes, and tasks validated / failed."""
    per_minute = 60.0 / bucket_seconds
    b = bucket_index(session, TaskAssignment.submitted_at, bucket_seconds).label("b")
    stmt = (
        select(b, func.count() * per_minute)
        .where(TaskAssignment.submitted_at >= start, TaskAssignment.submitted_at <= end)
        .group_by(b)
    )
    if node_id is not None:
        stmt = stmt.where(TaskAssignment.node_id == node_id)
    (results,) = _series_from_rows(session.execute(stmt).all(), start, end, bucket_seconds,
                                   ["results / min"], ["/min"], fill=0)
    series = {"results": results}
    if node_id is None:
        tb = bucket_index(session, Task.decided_at, bucket_seconds).label("b")
        rows = session.execute(
            select(tb,
                   func.sum(case((Task.status == TaskStatus.VALIDATED, 1), else_=0)) * per_minute,
                   func.sum(case((Task.status == TaskStatus.FAILED, 1), else_=0)) * per_minute)
            .where(Task.decided_at >= start, Task.decided_at <= end)
            .group_by(tb)
        ).all()
        validated, failed = _series_from_rows(rows, start, end, bucket_seconds,
                                              ["tasks validated / min", "tasks failed / min"],
                                              ["/min", "/min"], fill=0)
        series.update(validated=validated, failed=failed)
    return series


def node_status_counts(session: Session) -> dict[str, int]:
    counts = {s.value: 0 for s in NodeStatus}
    for status, n in session.execute(select(Node.status, func.count()).group_by(Node.status)):
        counts[str(status)] = n
    return counts


def latest_heartbeats(session: Session, node_ids: list[str] | None = None) -> dict[str, Heartbeat]:
    """Each node's most recent heartbeat (one query: join on the per-node max received_at)."""
    latest = select(Heartbeat.node_id, func.max(Heartbeat.received_at).label("at")).group_by(
        Heartbeat.node_id)
    if node_ids is not None:
        if not node_ids:
            return {}
        latest = latest.where(Heartbeat.node_id.in_(node_ids))
    latest = latest.subquery()
    rows = session.scalars(
        select(Heartbeat).join(latest, and_(Heartbeat.node_id == latest.c.node_id,
                                            Heartbeat.received_at == latest.c.at))
    ).all()
    return {h.node_id: h for h in rows}


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
class TaskStats:
    decided: int
    validated: int
    failed: int
    results: int
    valid_results: int
    invalid_results: int
    error_results: int
    queued: int

    @property
    def validation_rate(self) -> float | None:
        return self.validated / self.decided if self.decided else None

    @property
    def result_valid_rate(self) -> float | None:
        judged = self.valid_results + self.invalid_results + self.error_results
        return self.valid_results / judged if judged else None


def task_stats(session: Session, *, since: datetime) -> TaskStats:
    t = session.execute(
        select(func.count(),
               func.sum(case((Task.status == TaskStatus.VALIDATED, 1), else_=0)),
               func.sum(case((Task.status == TaskStatus.FAILED, 1), else_=0)))
        .where(Task.decided_at >= since)
    ).one()
    a = session.execute(
        select(func.count(),
               func.sum(case((TaskAssignment.outcome == "valid", 1), else_=0)),
               func.sum(case((TaskAssignment.outcome == "invalid", 1), else_=0)),
               func.sum(case((TaskAssignment.outcome == "error", 1), else_=0)))
        .where(TaskAssignment.submitted_at >= since)
    ).one()
    queued = session.scalar(select(func.count()).select_from(Task).where(
        Task.status.in_([TaskStatus.QUEUED, TaskStatus.IN_PROGRESS]))) or 0
    return TaskStats(int(t[0] or 0), int(t[1] or 0), int(t[2] or 0), int(a[0] or 0),
                     int(a[1] or 0), int(a[2] or 0), int(a[3] or 0), int(queued))


@dataclass
class EpochSummary:
    epoch: RewardEpoch
    top_nodes: list[NodeReward]


def current_epoch(session: Session, top: int = 5) -> EpochSummary | None:
    epoch = session.scalar(select(RewardEpoch).order_by(RewardEpoch.epoch_date.desc()).limit(1))
    if epoch is None:
        return None
    top_nodes = session.scalars(
        select(NodeReward).where(NodeReward.epoch_id == epoch.id)
        .order_by(NodeReward.score.desc()).limit(top)
    ).all()
    return EpochSummary(epoch, list(top_nodes))


def recent_alerts(session: Session, limit: int = 10, node_id: str | None = None) -> list[Alert]:
    stmt = select(Alert).order_by(Alert.opened_at.desc()).limit(limit)
    if node_id is not None:
        stmt = stmt.where(Alert.node_id == node_id)
    return list(session.scalars(stmt))


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
    epoch: EpochSummary | None
    alerts: list[Alert]
    start: datetime
    end: datetime


def choose_bucket(window: timedelta) -> int:
    """About 30 points per chart, in whole minutes (nodes beat every <= 30 s, so a bucket of
    two minutes or more never shows a healthy node as missing)."""
    return max(120, int(window.total_seconds() // 30 // 60) * 60)


def network_overview(session: Session, *, window: timedelta = timedelta(hours=6),
                     now: datetime | None = None) -> NetworkOverview:
    end = now or utcnow()
    start = end - window
    bucket = choose_bucket(window)
    recent = timedelta(minutes=10)
    stats_recent = task_stats(session, since=end - recent)
    return NetworkOverview(
        node_counts=node_status_counts(session),
        open_alerts=session.scalar(select(func.count()).select_from(Alert)
                                   .where(Alert.closed_at.is_(None))) or 0,
        tasks_per_minute=stats_recent.decided / (recent.total_seconds() / 60),
        stats=task_stats(session, since=start),
        window_minutes=int(window.total_seconds() // 60),
        heartbeat=heartbeat_series(session, start=start, end=end, bucket_seconds=bucket),
        throughput=throughput_series(session, start=start, end=end, bucket_seconds=bucket),
        rollouts=model_rollouts(session),
        epoch=current_epoch(session),
        alerts=recent_alerts(session),
        start=start,
        end=end,
    )


# ---- nodes -------------------------------------------------------------------------------------

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
        pattern = _like(search.strip())
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
            select(OutboxMessage).where(OutboxMessage.kind == "chain",
                                        OutboxMessage.subject_type == "node",
                                        OutboxMessage.subject_id == node_id)
            .order_by(OutboxMessage.created_at.desc()))),
        assigned_models=_assigned_models(session, node_id),
        start=start,
        end=end,
    )


def _assigned_models(session: Session, node_id: str) -> dict[str, int]:
    """Which version the beacon gives this node for each model (stable canary assignment)."""
    from noderr_core.modelstore.rollout import assigned_version

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


# ---- operators ---------------------------------------------------------------------------------

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
        pattern = _like(search.strip())
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
            select(OutboxMessage).where(OutboxMessage.kind == "email", or_(*subject_filters))
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


def reward_epochs(session: Session, limit: int = 60) -> list[RewardEpoch]:
    return list(session.scalars(select(RewardEpoch).order_by(RewardEpoch.epoch_date.desc()).limit(limit)))


