"""The hot path's set-based writes (`bulk.write_batches`) store exactly what they are given.

On PostgreSQL each write's rows travel as one JSON document (`json_to_recordset`): nested JSON
stays JSON (not a string holding it), integers beyond 64 bits survive, NULL stays NULL, quotes and
non-ASCII text are kept, datetimes come back as the same UTC instant; a number JSON cannot carry
(NaN) is refused, and nothing of the statement is written.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from noderr_core.tables.tasks import Task, TaskAssignment
from noderr_core.tasks.bulk import BulkUpdate, BulkUpsert, write_batches
from tests.support.task_flow import submit

T = Task.__table__
A = TaskAssignment.__table__

TRICKY_OUTPUTS = {"label": [1, 2**70, -3.5e-7], "text": 'a "quoted" \\ path — ünïcode ✓', "nested": {"x": None}}


def test_writes_store_exactly_what_they_are_given(session_factory, task_world):
    node, _ = task_world.node()
    ids = submit(session_factory, task_world.client_id, 2)
    decided = datetime(2026, 12, 1, 5, 0, 0, 123456, tzinfo=UTC)
    with session_factory() as s:
        write_batches(
            s,
            BulkUpsert(A, conflict=("task_id", "node_id"), update_columns=("status",), rows=[
                {"task_id": tid, "node_id": node.id, "operator_id": node.operator_id, "status": "submitted",
                 "unreplicated": tid == ids[0], "leased_at": decided, "lease_expires_at": decided,
                 "outcome": "pending", "result": TRICKY_OUTPUTS if tid == ids[0] else None,
                 "duration_ms": 0.25}
                for tid in ids
            ]),
            BulkUpdate(T, keys=("id",), columns=("status", "result", "agreeing_node_ids", "fail_reason",
                                                 "decided_at", "leasable_at", "tolerance"), rows=[
                {"id": ids[0], "status": "validated", "result": TRICKY_OUTPUTS, "agreeing_node_ids": [node.id],
                 "fail_reason": None, "decided_at": decided, "leasable_at": None, "tolerance": 1e-9},
                {"id": ids[1], "status": "failed", "result": None, "agreeing_node_ids": None,
                 "fail_reason": "it's \"odd\"\n— ✓", "decided_at": decided, "leasable_at": None, "tolerance": 0.5},
            ]),
        )
        s.commit()
    with session_factory() as s:
        first, second = (s.get(Task, tid) for tid in ids)
        assert first.result == TRICKY_OUTPUTS and first.agreeing_node_ids == [node.id]
        assert first.decided_at == decided and first.leasable_at is None and first.tolerance == 1e-9
        assert second.result is None and second.fail_reason == "it's \"odd\"\n— ✓"
        rows = {a.task_id: a for a in s.query(TaskAssignment).filter(TaskAssignment.node_id == node.id)}
        assert rows[ids[0]].result == TRICKY_OUTPUTS and rows[ids[1]].result is None
        assert rows[ids[0]].unreplicated and not rows[ids[1]].unreplicated
        assert rows[ids[0]].lease_expires_at == decided and rows[ids[1]].duration_ms == 0.25


def test_a_number_json_cannot_carry_is_refused_and_nothing_is_written(db_url, session_factory, task_world):
    if not db_url.startswith("postgresql"):
        pytest.skip("the JSON transport is PostgreSQL's")
    first, second = submit(session_factory, task_world.client_id, 2)
    with session_factory() as s:
        with pytest.raises(ValueError, match="non-finite"):
            write_batches(
                s,
                BulkUpdate(T, keys=("id",), columns=("fail_reason",), rows=[{"id": first, "fail_reason": "x"}]),
                BulkUpdate(T, keys=("id",), columns=("tolerance",), rows=[{"id": second, "tolerance": math.nan}]),
            )
        s.rollback()
    with session_factory() as s:
        assert s.get(Task, first).fail_reason is None and not math.isnan(s.get(Task, second).tolerance)
