"""Leasing replicas of queued tasks to nodes; extending, releasing; failing overdue tasks.

Rules (docs/tasks.md has the full story):
- A task wants `replicas_needed` live replicas: a lease that has not expired, or a submitted
  non-error result. Expired leases free their slot without any sweeper.
- A node never holds two replicas of one task (UNIQUE(task_id, node_id)); a node whose own earlier
  lease expired or was released may lease the task again (the same row is reused).
- Live replicas of one task come from distinct operators.
- Order: priority (high first), then age. Tasks past their deadline fail instead of being leased.
- PostgreSQL: candidates are locked with FOR UPDATE SKIP LOCKED, so concurrent leases never wait
  on each other, then re-checked against a fresh snapshot (we hold the row locks, and every writer
  of a task's assignments locks the task first). SQLite: BEGIN IMMEDIATE serializes writers.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, text, update
from sqlalchemy.orm import Session

from noderr_core.tables.tasks import (
    AssignmentStatus,
    ResultOutcome,
    Task,
    TaskAssignment,
    TaskStatus,
)
from noderr_core.tasks.bulk import bulk_upsert, is_postgresql
from noderr_core.tasks.reliability import lock_reliability, roll_quota_day
from noderr_core.tasks.rules import DEFAULT_RULES, ReliabilityRules
from noderr_core.timeutil import utcnow

T = Task.__table__
A = TaskAssignment.__table__

LEASED = AssignmentStatus.LEASED.value
SUBMITTED = AssignmentStatus.SUBMITTED.value
UNDECIDED = (TaskStatus.QUEUED.value, TaskStatus.IN_PROGRESS.value)


@dataclass(frozen=True)
class LeaseGrant:
    task_id: str
    model_name: str
    inputs: dict[str, Any]
    lease_expires_at: datetime
    unreplicated: bool


@dataclass(frozen=True)
class LeaseOutcome:
    grants: list[LeaseGrant]
    lease_expires_at: datetime | None
    notice: str | None = None  # why nothing was leased, when it is not simply an empty queue


@dataclass(frozen=True)
class AssignmentView:
    """An assignment row as the leasing and validation rules see it."""

    task_id: str
    node_id: str
    operator_id: int
    status: str
    outcome: str
    lease_expires_at: datetime

    def is_live(self, now: datetime) -> bool:
        if self.status == SUBMITTED:
            return self.outcome != ResultOutcome.ERROR.value
        return self.status == LEASED and self.lease_expires_at > now


def load_assignments(session: Session, task_ids: list[str]) -> dict[str, list[AssignmentView]]:
    out: dict[str, list[AssignmentView]] = defaultdict(list)
    if not task_ids:
        return out
    rows = session.execute(
        select(A.c.task_id, A.c.node_id, A.c.operator_id, A.c.status, A.c.outcome, A.c.lease_expires_at)
        .where(A.c.task_id.in_(task_ids))
    ).all()
    for r in rows:
        out[r.task_id].append(AssignmentView(*r))
    return out


def _live_clause(now: datetime):
    return or_(
        and_(A.c.status == SUBMITTED, A.c.outcome != ResultOutcome.ERROR.value),
        and_(A.c.status == LEASED, A.c.lease_expires_at > now),
    )


def _candidate_query(model_name: str, node_id: str, operator_id: int, now: datetime, limit: int, pg: bool):
    # Both checks are correlated *scalar* subqueries on purpose: PostgreSQL evaluates them per
    # scanned task through the (task_id, node_id) index, instead of turning them into an anti-join
    # that scans all assignments.
    blocking = (
        select(func.count())
        .select_from(A)
        .where(
            A.c.task_id == T.c.id,
            or_(
                and_(
                    A.c.node_id == node_id,
                    or_(A.c.status == SUBMITTED, and_(A.c.status == LEASED, A.c.lease_expires_at > now)),
                ),
                and_(A.c.operator_id == operator_id, A.c.node_id != node_id, _live_clause(now)),
            ),
        )
        .scalar_subquery()
    )
    live_count = (
        select(func.count()).select_from(A).where(A.c.task_id == T.c.id, _live_clause(now)).scalar_subquery()
    )
    stmt = (
        select(T.c.id)
        .where(
            T.c.model_name == model_name,
            # Challenge tasks (tasks/challenges.py) are leased only by their target node.
            or_(T.c.target_node_id.is_(None), T.c.target_node_id == node_id),
            T.c.leasable_at.is_not(None),
            T.c.leasable_at <= now,
            or_(T.c.deadline_at.is_(None), T.c.deadline_at > now),
            blocking == 0,
            live_count < T.c.replicas_needed,
        )
        .order_by(T.c.priority.desc(), T.c.created_at)
        .limit(limit)
    )
    if pg:
        stmt = stmt.with_for_update(of=T, skip_locked=True)
    return stmt


def _prefer_ordered_scan(session: Session) -> None:
    """Make PostgreSQL walk ix_tasks_leasable in queue order and stop after `limit` rows.

    Row estimates for `leasable_at <= now` are poor (the column moves all the time), and a plan
    that collects every leasable task and sorts it costs ~1 s on a 30k queue instead of ~2 ms.
    SET LOCAL lasts until the lease transaction ends.
    """
    session.execute(text("SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off"))


def fail_overdue_tasks(
    session: Session, now: datetime | None = None, *, limit: int = 1000, task_ids: list[str] | None = None
) -> int:
    """Fail undecided tasks whose deadline has passed (skipping rows other transactions hold)."""
    now = now or utcnow()
    stmt = (
        select(T.c.id)
        .where(T.c.leasable_at.is_not(None), T.c.deadline_at.is_not(None), T.c.deadline_at <= now)
        .limit(limit)
    )
    if task_ids is not None:
        stmt = stmt.where(T.c.id.in_(task_ids))
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    ids = list(session.scalars(stmt))
    if not ids:
        return 0
    session.execute(
        update(T)
        .where(T.c.id.in_(ids))
        .values(
            status=TaskStatus.FAILED.value,
            fail_reason=literal("deadline passed before a quorum of nodes agreed"),
            decided_at=now,
            leasable_at=None,
        )
    )
    session.execute(
        update(A)
        .where(A.c.task_id.in_(ids), A.c.status == SUBMITTED, A.c.outcome == ResultOutcome.PENDING.value)
        .values(outcome=ResultOutcome.INCONCLUSIVE.value, judged_at=now)
    )
    return len(ids)


def lease_tasks(
    session: Session,
    *,
    node_id: str,
    operator_id: int,
    model_names: list[str],
    max_tasks: int,
    lease_seconds: int,
    now: datetime | None = None,
    rng: random.Random | None = None,
    rules: ReliabilityRules = DEFAULT_RULES,
) -> LeaseOutcome:
    """Lease up to `max_tasks` replicas for the models the node has loaded (one transaction)."""
    now = now or utcnow()
    rng = rng or random.Random()
    expires = now + timedelta(seconds=lease_seconds)
    pg = is_postgresql(session)

    rel = lock_reliability(session, [node_id], rules, now)[node_id]
    if rel.blocked_reason:
        return LeaseOutcome([], None, notice=f"node blocked from new work: {rel.blocked_reason}")
    roll_quota_day(rel, now)
    allowance = min(max_tasks, rel.daily_quota - rel.quota_used)
    if allowance <= 0:
        return LeaseOutcome(
            [], None,
            notice=f"daily quota of {rel.daily_quota} tasks used up (it resets at 00:00 UTC and "
            "grows back with valid results)",
        )

    fail_overdue_tasks(session, now, limit=500)

    if pg:
        _prefer_ordered_scan(session)
    candidate_ids: list[str] = []
    for model in sorted(set(model_names)):
        candidate_ids.extend(
            session.scalars(_candidate_query(model, node_id, operator_id, now, allowance, pg))
        )
    if not candidate_ids:
        return LeaseOutcome([], None)

    # Fresh snapshot of the locked candidates: the exact rules are applied here.
    tasks = {
        r.id: r
        for r in session.execute(
            select(
                T.c.id, T.c.model_name, T.c.inputs, T.c.priority, T.c.created_at, T.c.replicas,
                T.c.adaptive, T.c.replicas_needed, T.c.status, T.c.leasable_at,
            ).where(T.c.id.in_(candidate_ids))
        )
    }
    assignments = load_assignments(session, candidate_ids)
    chosen = []
    for tid in sorted(tasks, key=lambda i: (-tasks[i].priority, tasks[i].created_at, i)):
        t = tasks[tid]
        if t.status not in UNDECIDED or t.leasable_at is None:
            continue
        rows = assignments.get(tid, [])
        live = [a for a in rows if a.is_live(now)]
        if any(a.node_id == node_id and (a.status == SUBMITTED or a in live) for a in rows):
            continue
        if any(a.operator_id == operator_id and a.node_id != node_id for a in live):
            continue
        needed = t.replicas_needed
        unreplicated = False
        if not live:
            # Nothing counts toward the task yet: (re)decide adaptive replication for this node.
            needed = t.replicas
            cv = rel.consecutive_valid
            if (
                t.adaptive
                and t.replicas > 1
                and cv >= rules.adaptive_threshold
                and rng.random() < 1.0 - 1.0 / cv
            ):
                needed, unreplicated = 1, True
        if len(live) >= needed:
            continue
        if len(live) + 1 < needed:
            leasable_at = now
        else:
            leasable_at = min([a.lease_expires_at for a in live if a.status == LEASED] + [expires])
        chosen.append((t, needed, unreplicated, leasable_at))
        if len(chosen) >= allowance:
            break
    if not chosen:
        return LeaseOutcome([], None)

    bulk_upsert(
        session, A, conflict=("task_id", "node_id"),
        update_columns=("status", "unreplicated", "leased_at", "lease_expires_at", "outcome"),
        rows=[
            {
                "task_id": t.id,
                "node_id": node_id,
                "operator_id": operator_id,
                "status": LEASED,
                "unreplicated": unreplicated,
                "leased_at": now,
                "lease_expires_at": expires,
                "outcome": ResultOutcome.PENDING.value,
            }
            for t, _n, unreplicated, _l in chosen
        ],
    )
    chosen_ids = [t.id for t, *_ in chosen]
    # Expired leases on these tasks have now been replaced: their late results will be refused.
    session.execute(
        update(A)
        .where(
            A.c.task_id.in_(chosen_ids),
            A.c.status == LEASED,
            A.c.lease_expires_at <= now,
            A.c.node_id != node_id,
        )
        .values(status=AssignmentStatus.EXPIRED.value)
    )
    groups: dict[tuple[int, datetime], list[str]] = defaultdict(list)
    for t, needed, _u, leasable_at in chosen:
        groups[(needed, leasable_at)].append(t.id)
    for (needed, leasable_at), ids in groups.items():
        session.execute(
            update(T)
            .where(T.c.id.in_(ids))
            .values(status=TaskStatus.IN_PROGRESS.value, replicas_needed=needed, leasable_at=leasable_at)
        )
    rel.quota_used += len(chosen)
    rel.updated_at = now
    session.flush()
    grants = [
        LeaseGrant(t.id, t.model_name, t.inputs, expires, unreplicated) for t, _n, unreplicated, _l in chosen
    ]
    return LeaseOutcome(grants, expires)


def _lock_tasks(session: Session, task_ids: list[str]) -> dict[str, Any]:
    """Lock the tasks in id order (every writer does, so they cannot deadlock) and return them."""
    stmt = select(
        T.c.id, T.c.status, T.c.fail_reason, T.c.replicas, T.c.quorum, T.c.tolerance,
        T.c.max_replicas, T.c.replicas_needed, T.c.leasable_at, T.c.result, T.c.challenge_expected,
    ).where(T.c.id.in_(sorted(set(task_ids)))).order_by(T.c.id)
    if is_postgresql(session):
        stmt = stmt.with_for_update()
    return {r.id: r for r in session.execute(stmt)}


@dataclass(frozen=True)
class ExtendOutcome:
    extended: list[str]
    refused: dict[str, str]
    lease_expires_at: datetime


def extend_leases(
    session: Session, *, node_id: str, task_ids: list[str], lease_seconds: int, now: datetime | None = None
) -> ExtendOutcome:
    """Push the node's leases out to now + lease_seconds.

    A lease past its expiry can still be extended while nobody replaced it (the same rule as for
    late results): the row is still this node's.
    """
    now = now or utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    tasks = _lock_tasks(session, task_ids)
    mine = {
        r.task_id: r
        for r in session.execute(
            select(A.c.task_id, A.c.status).where(A.c.task_id.in_(list(tasks)), A.c.node_id == node_id)
        )
    }
    extended, refused = [], {}
    for tid in dict.fromkeys(task_ids):
        task, row = tasks.get(tid), mine.get(tid)
        if task is None:
            refused[tid] = "unknown task"
        elif row is None:
            refused[tid] = "this node holds no lease on the task"
        elif task.status == TaskStatus.FAILED.value:
            refused[tid] = f"task already failed: {task.fail_reason}"
        elif row.status == SUBMITTED:
            refused[tid] = "result already submitted"
        elif row.status == AssignmentStatus.EXPIRED.value:
            refused[tid] = "lease expired and the replica was given to another node"
        elif row.status == AssignmentStatus.RELEASED.value:
            refused[tid] = "lease was released"
        else:
            extended.append(tid)
    if extended:
        session.execute(
            update(A)
            .where(A.c.task_id.in_(extended), A.c.node_id == node_id, A.c.status == LEASED)
            .values(lease_expires_at=expires)
        )
    return ExtendOutcome(extended, refused, expires)


@dataclass(frozen=True)
class ReleaseOutcome:
    released: list[str]
    refused: dict[str, str]


def release_tasks(
    session: Session, *, node_id: str, task_ids: list[str], now: datetime | None = None
) -> ReleaseOutcome:
    """Hand unfinished leases back (a node shutting down): the slots are leasable at once."""
    now = now or utcnow()
    tasks = _lock_tasks(session, task_ids)
    mine = {
        r.task_id: r.status
        for r in session.execute(
            select(A.c.task_id, A.c.status).where(A.c.task_id.in_(list(tasks)), A.c.node_id == node_id)
        )
    }
    released, refused = [], {}
    for tid in dict.fromkeys(task_ids):
        if tid not in tasks:
            refused[tid] = "unknown task"
        elif mine.get(tid) != LEASED:
            refused[tid] = (
                "this node holds no lease on the task" if tid not in mine else f"assignment is {mine[tid]}"
            )
        else:
            released.append(tid)
    if released:
        session.execute(
            update(A)
            .where(A.c.task_id.in_(released), A.c.node_id == node_id, A.c.status == LEASED)
            .values(status=AssignmentStatus.RELEASED.value)
        )
        session.execute(
            update(T)
            .where(T.c.id.in_(released), T.c.leasable_at.is_not(None))
            .values(leasable_at=now)
        )
    return ReleaseOutcome(released, refused)


def overdue_task_summary(session: Session, now: datetime | None = None) -> tuple[int, datetime | None]:
    """(how many undecided tasks are past their deadline, the latest such deadline); read-only."""
    now = now or utcnow()
    count, latest = session.execute(
        select(func.count(), func.max(T.c.deadline_at)).where(
            T.c.leasable_at.is_not(None), T.c.deadline_at.is_not(None), T.c.deadline_at <= now
        )
    ).one()
    return int(count or 0), latest
