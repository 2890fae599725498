"""Result submission and validation by quorum, in one transaction per batch.

Acceptance rules for a result from node N on task T (see docs/tasks.md):
- duplicate: N already submitted for T (the first submission counts, later ones never do);
- refused: T unknown, N never leased T, N released it, or T has failed;
- refused (late): N's lease expired *and* T's replica was since given to another node, or T was
  decided after N's lease expired;
- accepted otherwise, including a late result whose replica nobody took over yet.
A result accepted for a task that is already validated is judged against the validated result.

Validation: the largest group of results agreeing with one pivot result (numbers within the
policy's tolerance, labels equal) validates the task when it reaches the quorum; results outside
it are invalid. Without a quorum once every wanted replica has reported, the task asks for more
replicas up to max_replicas, then fails with a reason.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from noderr_core.db import json_text
from noderr_core.tables.tasks import AssignmentStatus, ResultOutcome, TaskStatus
from noderr_core.tasks.bulk import BulkUpdate, dialect_name, driver_rows, per_dialect, write_batches
from noderr_core.tasks.challenges import judge_challenge
from noderr_core.tasks.comparison import QuorumDecision, identical_outputs, largest_agreeing_group, outputs_agree
from noderr_core.tasks.leasing import (
    DEADLINE_PASSED,
    A,
    T,
    fail_past_deadline,
    lock_tasks_for_results,
)
from noderr_core.tasks.reliability import (
    NodeEvents,
    apply_events,
    lock_reliability_records,
    reliability_records_write,
)
from noderr_core.tasks.rules import DEFAULT_RULES, ReliabilityRules
from noderr_core.timeutil import utcnow
from noderr_protocol.work import TaskResultIn

LEASED = AssignmentStatus.LEASED.value
SUBMITTED = AssignmentStatus.SUBMITTED.value
PENDING = ResultOutcome.PENDING.value
VALID = ResultOutcome.VALID.value
INVALID = ResultOutcome.INVALID.value
ERROR = ResultOutcome.ERROR.value
INCONCLUSIVE = ResultOutcome.INCONCLUSIVE.value
RELEASED = AssignmentStatus.RELEASED.value
EXPIRED = AssignmentStatus.EXPIRED.value
IN_PROGRESS = TaskStatus.IN_PROGRESS.value
VALIDATED = TaskStatus.VALIDATED.value
FAILED = TaskStatus.FAILED.value
UNDECIDED = (TaskStatus.QUEUED.value, IN_PROGRESS)


@dataclass(frozen=True)
class ResultAckView:
    task_id: str
    status: str  # accepted | duplicate | refused
    reason: str | None = None


def _replicas_query(which):
    return (
        select(
            A.c.task_id, A.c.node_id, A.c.status, A.c.outcome, A.c.lease_expires_at, A.c.leased_at,
            A.c.unreplicated, cast(A.c.result, Text).label("result_json"), A.c.error, A.c.submitted_at,
            A.c.model_version,
        )
        .where(which)
        .order_by(A.c.task_id, A.c.id)
    )


_REPLICAS = per_dialect(_replicas_query, A.c.task_id)


# What `_evaluate` may change on a still-undecided task (the other columns it returns are NULL).
_TASK_STATE = ("status", "leasable_at", "replicas_needed", "result", "fail_reason")


def _ms(delta) -> float:
    return delta.total_seconds() * 1000.0


def submit_results(
    session: Session,
    *,
    node_id: str,
    results: list[TaskResultIn],
    now: datetime | None = None,
    rules: ReliabilityRules = DEFAULT_RULES,
) -> list[ResultAckView]:
    now = now or utcnow()
    tasks = lock_tasks_for_results(session, [r.task_id for r in results])
    # Undecided at the deadline = failed, even if a result arrives before any lease call noticed.
    overdue = [
        t["id"] for t in tasks.values()
        if t["leasable_at"] is not None and t["deadline_at"] is not None and t["deadline_at"] <= now
    ]
    fail_past_deadline(session, overdue, now)
    for tid in overdue:
        tasks[tid].update(status=FAILED, fail_reason=DEADLINE_PASSED, leasable_at=None)
    rows_by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if tasks:
        for r in driver_rows(session, _REPLICAS[dialect_name(session)], {"ids": list(tasks)}):
            rows_by_task[r["task_id"]].append(r)

    events: dict[str, NodeEvents] = defaultdict(NodeEvents)
    mine_changed: list[dict[str, Any]] = []
    acks: list[ResultAckView] = []
    seen: set[str] = set()
    touched: list[str] = []

    for res in results:
        tid = res.task_id
        if tid in seen:
            acks.append(ResultAckView(tid, "duplicate", "the same task appears earlier in this batch"))
            continue
        seen.add(tid)
        task = tasks.get(tid)
        row = next((r for r in rows_by_task.get(tid, []) if r["node_id"] == node_id), None)
        reason = None
        if task is None:
            reason = "unknown task"
        elif row is None:
            reason = "this node never leased the task"
        elif row["status"] == SUBMITTED:
            acks.append(ResultAckView(tid, "duplicate", "a result from this node is already recorded"))
            continue
        elif row["status"] == RELEASED:
            reason = "this node released the task"
        elif row["status"] == EXPIRED:
            reason = "lease expired and the replica was given to another node"
        elif task["status"] == FAILED:
            reason = f"task already failed: {task['fail_reason']}"
        elif task["status"] == VALIDATED and row["lease_expires_at"] <= now:
            reason = "lease expired and the task was validated without this result"
        elif (res.outputs is None) == (res.error is None):
            reason = "a result carries either outputs or an error"
        if reason is not None:
            acks.append(ResultAckView(tid, "refused", reason))
            continue

        ev = events[node_id]
        ev.submitted += 1
        ev.turnarounds_ms.append(max(0.0, _ms(now - row["leased_at"])))
        row.update(
            status=SUBMITTED,
            submitted_at=now,
            result=res.outputs,
            result_json=None if res.outputs is None else json_text(res.outputs),
            error=res.error,
            model_version=res.model_version,
            duration_ms=res.duration_ms,
            judged_at=None,
        )
        if res.error is not None:
            row["outcome"] = ERROR
            row["judged_at"] = now
            ev.outcomes.append((ERROR, False))
            ev.last_error = res.error
        elif task["status"] == VALIDATED:
            # A replica still under lease when the quorum formed: judged against the answer.
            ok = outputs_agree(task["result"], res.outputs, task["tolerance"])
            row["outcome"] = VALID if ok else INVALID
            row["judged_at"] = now
            ev.outcomes.append((row["outcome"], True))
        else:
            row["outcome"] = PENDING
        row["_mine"] = True
        mine_changed.append(row)
        touched.append(tid)
        acks.append(ResultAckView(tid, "accepted"))

    judged: list[dict[str, Any]] = []
    task_updates: list[dict[str, Any]] = []
    for tid in touched:
        task = tasks[tid]
        if task["status"] not in UNDECIDED:
            continue
        update = _evaluate(task, rows_by_task[tid], now, events, judged)
        if any(update[k] != task[k] for k in _TASK_STATE):
            task_updates.append(update)  # (an unchanged row is not rewritten)

    # Reliability rows are locked after the tasks (every writer locks in that order), then every
    # write of the batch goes out together: one statement on PostgreSQL.
    records = lock_reliability_records(session, list(events), rules, now) if events else {}
    for nid, ev in events.items():
        apply_events(records[nid], ev, rules, now)
    write_batches(
        session,
        BulkUpdate(
            A, keys=("task_id", "node_id"),
            columns=("status", "submitted_at", "result", "error", "model_version", "duration_ms", "outcome",
                     "judged_at"),
            rows=[{**r, "node_id": node_id} for r in mine_changed],
        ),
        BulkUpdate(A, keys=("task_id", "node_id"), columns=("outcome", "judged_at"),
                   rows=[r for r in judged if not r.get("_mine")]),
        BulkUpdate(
            T, keys=("id",),
            columns=("status", "result", "agreeing_node_ids", "validated_by", "fail_reason", "decided_at",
                     "leasable_at", "replicas_needed"),
            rows=task_updates,
        ),
        reliability_records_write(list(records.values())),
    )
    return acks


def _outputs(row: dict[str, Any]) -> Any:
    """A replica's outputs; read from the database they are parsed from their JSON text on first use."""
    if "result" not in row:
        row["result"] = None if row["result_json"] is None else orjson.loads(row["result_json"])
    return row["result"]


def _evaluate(
    task: dict[str, Any],
    rows: list[dict[str, Any]],
    now: datetime,
    events: dict[str, NodeEvents],
    judged: list[dict[str, Any]],
) -> dict[str, Any]:
    """Decide one undecided task from its rows (mutated in place); returns the task's new values."""
    results = [r for r in rows if r["status"] == SUBMITTED and r["outcome"] == PENDING]
    errors = [r for r in rows if r["status"] == SUBMITTED and r["outcome"] == ERROR]
    live_leases = [r for r in rows if r["status"] == LEASED and r["lease_expires_at"] > now]
    needed = task["replicas_needed"]
    base = {
        "id": task["id"], "status": IN_PROGRESS, "result": None,
        "agreeing_node_ids": None, "validated_by": None, "fail_reason": None, "decided_at": None,
        "leasable_at": task["leasable_at"], "replicas_needed": needed,
    }

    def judge(row: dict[str, Any], outcome: str, checked: bool) -> None:
        row["outcome"] = outcome
        row["judged_at"] = now
        judged.append(row)
        if outcome != INCONCLUSIVE:
            events[row["node_id"]].outcomes.append((outcome, checked))

    if task.get("challenge_expected") is not None and results:
        # A challenge task: judged against its known answer, never by quorum.
        _outputs(results[0])
        outcome, decided = judge_challenge(task, results[0], now)
        judge(results[0], outcome, True)
        return {**base, **decided}

    if not results and len(errors) < task["max_replicas"]:
        base["leasable_at"] = now if len(live_leases) < needed else min(r["lease_expires_at"] for r in live_leases)
        return base

    if needed == 1 and len(results) == 1 and results[0]["unreplicated"]:
        judge(results[0], VALID, False)
        return {**base, "status": VALIDATED, "result": _outputs(results[0]),
                "agreeing_node_ids": [results[0]["node_id"]], "validated_by": "unreplicated",
                "decided_at": now, "leasable_at": None}

    # Replicas agree only within one model version (a canary's answers never join the stable's).
    versions = [r["model_version"] for r in results]
    if identical_outputs([r["result_json"] for r in results], versions):
        group = QuorumDecision(pivot=0, members=tuple(range(len(results))))  # (parsing nothing)
    else:
        group = largest_agreeing_group([_outputs(r) for r in results], task["tolerance"], versions)
    if results and len(group.members) >= task["quorum"]:
        members = set(group.members)
        # A quorum of one checks nothing: such results do not extend a node's valid streak.
        checked = task["quorum"] >= 2
        pivot = results[group.pivot]
        for i, r in enumerate(results):
            if i in members:
                judge(r, VALID, checked)
            elif r["model_version"] != pivot["model_version"]:
                judge(r, INCONCLUSIVE, False)  # another version's answer: not comparable, not wrong
            else:
                judge(r, INVALID, checked)
        return {**base, "status": VALIDATED, "result": _outputs(pivot),
                "agreeing_node_ids": [results[i]["node_id"] for i in group.members],
                "validated_by": "quorum", "decided_at": now, "leasable_at": None}

    if len(results) >= needed:
        if needed < task["max_replicas"]:
            missing = task["quorum"] - len(group.members)
            return {**base, "replicas_needed": min(task["max_replicas"], needed + max(1, missing)),
                    "leasable_at": now}
        for r in results:
            judge(r, INCONCLUSIVE, False)
        return {**base, "status": FAILED, "decided_at": now, "leasable_at": None,
                "fail_reason": (
                    f"no quorum: {len(results)} nodes returned results, at most {len(group.members)} "
                    f"agree within tolerance {task['tolerance']:g} (quorum {task['quorum']}, "
                    f"max_replicas {task['max_replicas']} reached)"
                )}

    if len(errors) >= task["max_replicas"]:
        for r in results:
            judge(r, INCONCLUSIVE, False)
        last = errors[-1]
        return {**base, "status": FAILED, "decided_at": now, "leasable_at": None,
                "fail_reason": (
                    f"{len(errors)} nodes reported errors (max_replicas {task['max_replicas']}); "
                    f"last error: {(last.get('error') or '')[:300]}"
                )}

    live = len(results) + len(live_leases)
    base["leasable_at"] = now if live < needed else min(r["lease_expires_at"] for r in live_leases)
    return base
