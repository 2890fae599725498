"""Chart data of the dashboard: time series bucketed in SQL, densified into chart points.

One GROUP BY per chart on the indexed timestamp, with a dialect-specific epoch expression, so a
chart costs one query whatever the heartbeat volume. About 30 points per chart (`choose_bucket`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Integer, case, cast, distinct, func, select
from sqlalchemy.orm import Session

from noderr_core.tables import Heartbeat
from noderr_core.tables.tasks import Task, TaskAssignment, TaskStatus


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


def choose_bucket(window: timedelta) -> int:
    """About 30 points per chart, in whole minutes (nodes beat every <= 30 s, so a bucket of
    two minutes or more never shows a healthy node as missing)."""
    return max(120, int(window.total_seconds() // 30 // 60) * 60)
