"""Node heartbeats: recording them cheaply, rolling them up per 5-minute slot, pruning raw rows.

Rules:
- Heartbeats are written set-based: `record_heartbeats` stores a batch (the API's group commit,
  api/heartbeat_writer.py, passes every heartbeat that arrived while the previous batch was being
  written) with one multi-row INSERT and one `UPDATE nodes … RETURNING status`. No ORM object is
  loaded. Only a node coming back (provisioned/offline → online) takes the slow path,
  with its audit entry, once per node however many of its heartbeats the batch holds.
- `rollup_heartbeats` folds raw rows into `heartbeat_slots` (one row per node per 5-minute slot),
  delete-then-insert per slot range, so repeating it, or running it over a range again after late
  rows arrived, gives the same table.
- `prune_heartbeats` deletes raw rows older than the retention window, but never rows of a slot
  that has not been rolled up yet (so nothing is lost if the rollup job was down for a while).
- Readers of history (rewards' proven slots, dashboards) read `heartbeat_slots` through
  `proven_slots` / `node_slots`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Integer, cast, delete, func, insert, select, update
from sqlalchemy.orm import Session

from noderr_core.audit import record_audit
from noderr_core.tables import ApplicationStatus, Heartbeat, HeartbeatSlot, Node, NodeStatus, OperatorApplication
from noderr_core.timeutil import utcnow
from noderr_protocol.work import HeartbeatIn

SLOT_SECONDS = 300
H = Heartbeat.__table__
S = HeartbeatSlot.__table__
N = Node.__table__

_COMING_BACK = (NodeStatus.PROVISIONED.value, NodeStatus.OFFLINE.value)


@dataclass(frozen=True)
class HeartbeatReceipt:
    received_at: datetime
    node_status: str


def record_heartbeat(session: Session, node: str | Node, body: HeartbeatIn,
                     now: datetime | None = None) -> HeartbeatReceipt:
    """Store one heartbeat and mark the node as heard from; returns the node's status after it.

    `node` is the node's id (the API passes that), or a loaded row, which is then expired so its
    attributes show the new status and heartbeat time on the next read.
    """
    node_id = node if isinstance(node, str) else node.id
    [receipt] = record_heartbeats(session, [(node_id, body)], now)
    if not isinstance(node, str):
        session.expire(node)
    return receipt


def record_heartbeats(session: Session, beats: list[tuple[str, HeartbeatIn]],
                      now: datetime | None = None) -> list[HeartbeatReceipt]:
    """Store a batch of heartbeats (a node may appear more than once); one receipt per beat, in order.

    Every beat is received at `now`; each node's `last_heartbeat_at` is set once. A node coming
    back online is switched and audited once. Raises LookupError for a node id with no row.
    """
    now = now or utcnow()
    rows = [{"node_id": node_id, "received_at": now, **body.model_dump()} for node_id, body in beats]
    node_ids = sorted({node_id for node_id, _ in beats})  # sorted: row locks taken in one order
    touch = (update(N).where(N.c.id.in_(node_ids)).values(last_heartbeat_at=now)
             .returning(N.c.id, N.c.status))
    # executemany (SQLAlchemy sends it as multi-row INSERTs): one cached statement whatever the
    # batch size, where `insert().values(rows)` would be compiled anew for every batch.
    session.execute(insert(H), rows)
    statuses = dict(session.execute(touch).all())
    for node_id in node_ids:
        if node_id not in statuses:
            raise LookupError(f"no node {node_id!r}")
        if statuses[node_id] in _COMING_BACK:
            statuses[node_id] = _come_online(session, node_id, statuses[node_id], now)
    return [HeartbeatReceipt(now, str(statuses[node_id])) for node_id, _ in beats]


def _come_online(session: Session, node_id: str, previous: str, now: datetime) -> str:
    """provisioned/offline → online, audited once (a racing heartbeat changes nothing twice)."""
    changed = session.execute(
        update(N).where(N.c.id == node_id, N.c.status == previous)
        .values(status=NodeStatus.ONLINE.value, status_reason=None)
        .returning(N.c.application_id)
    ).first()
    if changed is None:
        return session.scalar(select(N.c.status).where(N.c.id == node_id))
    record_audit(
        session, actor_type="system", actor_id=None, action="node.online", subject_type="node",
        subject_id=node_id, details={"previous_status": previous},
    )
    if previous == NodeStatus.PROVISIONED.value and changed.application_id is not None:
        # The operator's first node is up: the application's journey is complete.
        session.execute(
            update(OperatorApplication)
            .where(
                OperatorApplication.id == changed.application_id,
                OperatorApplication.status == ApplicationStatus.PROVISIONED,
            )
            .values(
                status=ApplicationStatus.ACTIVE,
                status_version=OperatorApplication.status_version + 1,
                updated_at=now,
            )
        )
    return NodeStatus.ONLINE.value


def latest_heartbeat(session: Session, node_id: str) -> Heartbeat | None:
    return session.scalar(
        select(Heartbeat)
        .where(Heartbeat.node_id == node_id)
        .order_by(Heartbeat.received_at.desc())
        .limit(1)
    )


# ---- rollups and retention -----------------------------------------------------------------------


def slot_start(moment: datetime) -> datetime:
    """The start of the 5-minute slot holding `moment` (UTC)."""
    ts = int(moment.timestamp())
    return datetime.fromtimestamp(ts - ts % SLOT_SECONDS, UTC)


def _slot_index(session: Session, column):
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", column) / SLOT_SECONDS), Integer)
    # SQLite stores UTCDateTime as 'YYYY-MM-DD HH:MM:SS[.ffffff]' (UTC); integer division floors.
    return cast(func.strftime("%s", column), Integer) // SLOT_SECONDS


@dataclass(frozen=True)
class RollupReport:
    start: datetime
    end: datetime
    slots_written: int
    raw_rows: int


def rollup_heartbeats(session: Session, *, start: datetime, end: datetime) -> RollupReport:
    """(Re)compute `heartbeat_slots` for every slot in [slot_start(start), slot_start(end)).

    Only whole slots before `end` are written (the current slot is still filling). Idempotent.
    """
    first, last = slot_start(start), slot_start(end)
    if last <= first:
        return RollupReport(first, last, 0, 0)
    idx = _slot_index(session, H.c.received_at).label("slot")
    rows = session.execute(
        select(
            H.c.node_id, idx, func.count(), func.min(H.c.received_at), func.max(H.c.received_at),
            func.max(H.c.uptime_seconds), func.max(H.c.inference_count), func.max(H.c.tasks_done),
            func.max(H.c.errors), func.avg(H.c.latency_p50_ms), func.max(H.c.latency_p95_ms),
            func.avg(H.c.cpu_percent), func.max(H.c.memory_mb),
        )
        .where(H.c.received_at >= first, H.c.received_at < last)
        .group_by(H.c.node_id, idx)
    ).all()
    session.execute(delete(S).where(S.c.slot_start >= first, S.c.slot_start < last))
    values = [
        {
            "node_id": r[0], "slot_start": datetime.fromtimestamp(int(r[1]) * SLOT_SECONDS, UTC),
            "beats": r[2], "first_at": r[3], "last_at": r[4], "uptime_seconds": r[5] or 0.0,
            "inference_count": r[6] or 0, "tasks_done": r[7] or 0, "errors": r[8] or 0,
            "latency_p50_ms": r[9], "latency_p95_ms": r[10], "cpu_percent": r[11], "memory_mb": r[12],
        }
        for r in rows
    ]
    for i in range(0, len(values), 5000):
        session.execute(insert(S), values[i:i + 5000])
    return RollupReport(first, last, len(values), sum(v["beats"] for v in values))


def rollup_watermark(session: Session) -> datetime | None:
    """The end of the newest rolled-up slot (None before the first rollup)."""
    newest = session.scalar(select(func.max(S.c.slot_start)))
    return newest + timedelta(seconds=SLOT_SECONDS) if newest is not None else None


def prune_heartbeats(session: Session, *, retention: timedelta, now: datetime | None = None,
                     batch: int = 50_000) -> int:
    """Delete raw heartbeats older than `retention` whose slot is rolled up; returns rows deleted."""
    now = now or utcnow()
    watermark = rollup_watermark(session)
    if watermark is None:
        return 0
    cutoff = min(now - retention, watermark)
    deleted = 0
    while True:
        ids = select(H.c.id).where(H.c.received_at < cutoff).limit(batch).scalar_subquery()
        n = session.execute(delete(H).where(H.c.id.in_(ids))).rowcount or 0
        deleted += n
        if n < batch:
            return deleted


def proven_slots(session: Session, *, start: datetime, end: datetime, min_beats: int = 1,
                 node_ids: list[str] | None = None) -> dict[str, int]:
    """Per node, how many 5-minute slots in [start, end) hold at least `min_beats` heartbeats.

    The read the rewards' "proven service" scoring uses (issue 13): a slot counts once, however
    many heartbeats it holds.
    """
    stmt = (
        select(S.c.node_id, func.count())
        .where(S.c.slot_start >= start, S.c.slot_start < end, S.c.beats >= min_beats)
        .group_by(S.c.node_id)
    )
    if node_ids is not None:
        stmt = stmt.where(S.c.node_id.in_(node_ids))
    return {node_id: n for node_id, n in session.execute(stmt)}


def node_slots(session: Session, node_id: str, *, start: datetime, end: datetime) -> list[HeartbeatSlot]:
    """One node's rolled-up slots in [start, end), oldest first (dashboards)."""
    return list(session.scalars(
        select(HeartbeatSlot)
        .where(HeartbeatSlot.node_id == node_id, HeartbeatSlot.slot_start >= start,
               HeartbeatSlot.slot_start < end)
        .order_by(HeartbeatSlot.slot_start)
    ))
