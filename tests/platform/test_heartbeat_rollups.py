"""Heartbeat rollups per 5-minute slot and raw retention (core functions and the Dagster job).
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from noderr_core.tables import Heartbeat, HeartbeatSlot
from noderr_core.telemetry import (
    node_slots,
    proven_slots,
    prune_heartbeats,
    record_heartbeat,
    rollup_heartbeats,
    slot_start,
)
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.network.telemetry_jobs import heartbeat_rollup_job
from noderr_pipelines.resources import DatabaseResource
from noderr_protocol.work import HeartbeatIn
from tests.support.factories import make_node

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _beats(session_factory, node_id, times, **fields):
    with session_factory() as s:
        for i, at in enumerate(times):
            record_heartbeat(s, node_id, HeartbeatIn(uptime_seconds=i, tasks_done=i, **fields), now=at)
        s.commit()


def test_rollup_counts_slots_once_is_idempotent_and_pruning_keeps_history(session_factory):
    with session_factory() as s:
        a, _ = make_node(s)
        b, _ = make_node(s)
        s.commit()
    # a: every 30 s for 12 minutes (slots 12:00, 12:05 full, 12:10 partial); b: one beat at 12:07.
    _beats(session_factory, a.id, [T0 + timedelta(seconds=30 * i) for i in range(24)], latency_p95_ms=40.0)
    _beats(session_factory, b.id, [T0 + timedelta(minutes=7)])
    with session_factory() as s:
        report = rollup_heartbeats(s, start=T0, end=T0 + timedelta(minutes=12))
        s.commit()
    assert (report.slots_written, report.raw_rows) == (3, 21)  # 12:10 still filling: not written
    with session_factory() as s:
        slots = node_slots(s, a.id, start=T0, end=T0 + timedelta(hours=1))
        assert [(x.slot_start, x.beats, x.tasks_done) for x in slots] == [
            (T0, 10, 9), (T0 + timedelta(minutes=5), 10, 19)]
        assert slots[0].latency_p95_ms == 40.0
        assert proven_slots(s, start=T0, end=T0 + timedelta(hours=1)) == {a.id: 2, b.id: 1}
        assert proven_slots(s, start=T0, end=T0 + timedelta(hours=1), min_beats=5) == {a.id: 2}

    # Again, and over an overlapping range: the same table.
    with session_factory() as s:
        rollup_heartbeats(s, start=T0 + timedelta(minutes=3), end=T0 + timedelta(minutes=12))
        rollup_heartbeats(s, start=T0, end=T0 + timedelta(minutes=12))
        s.commit()
        assert s.scalar(select(func.count()).select_from(HeartbeatSlot)) == 3

    # Retention: raw rows past the window go, but only those already rolled up (12:10 is not).
    with session_factory() as s:
        deleted = prune_heartbeats(s, retention=timedelta(hours=1), now=T0 + timedelta(days=1))
        s.commit()
        assert deleted == 21
        assert s.scalar(select(func.count()).select_from(Heartbeat)) == 4
        assert proven_slots(s, start=T0, end=T0 + timedelta(hours=1)) == {a.id: 2, b.id: 1}
    assert slot_start(T0 + timedelta(minutes=9, seconds=59)) == T0 + timedelta(minutes=5)


def test_rollup_job_rolls_up_recent_heartbeats_and_reruns_cleanly(db_url, session_factory):
    with session_factory() as s:
        node, _ = make_node(s)
        s.commit()
    now = utcnow()
    last_slot = slot_start(now) - timedelta(minutes=5)
    _beats(session_factory, node.id, [last_slot + timedelta(seconds=10 * i) for i in range(5)])
    resources = {"database": DatabaseResource(database_url=db_url)}
    first = heartbeat_rollup_job.execute_in_process(resources=resources)
    assert first.success
    assert first.output_for_node("roll_up_and_prune_heartbeats")["slots_written"] >= 1
    assert heartbeat_rollup_job.execute_in_process(resources=resources).success
    with session_factory() as s:
        assert proven_slots(s, start=last_slot, end=last_slot + timedelta(minutes=5)) == {node.id: 1}
        assert s.scalar(select(func.count()).select_from(Heartbeat)) == 5  # inside the window
