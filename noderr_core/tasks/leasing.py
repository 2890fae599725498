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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Text, and_, bindparam, case, cast, func, literal, or_, select, update
from sqlalchemy.orm import Session

from noderr_core.tables.tasks import (
    AssignmentStatus,
    ResultOutcome,
    Task,
    TaskAssignment,
    TaskStatus,
)
from noderr_core.tasks.bulk import BulkUpdate, BulkUpsert, dialect_name, driver_rows, per_dialect, write_batches
from noderr_core.tasks.reliability import quota_spent, reserve_quota_day
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
    inputs_json: str  # the inputs exactly as stored (validated at submission): sent on as they are
    lease_expires_at: datetime
    unreplicated: bool

    @property
    def inputs(self) -> dict[str, Any]:
        return orjson.loads(self.inputs_json)


@dataclass(frozen=True)
class LeaseOutcome:
    grants: list[LeaseGrant]
    lease_expires_at: datetime | None
    notice: str | None = None  # why nothing was leased, when it is not simply an empty queue


def _live(now):
    """A replica that counts toward the task: an unexpired lease or a submitted non-error result."""
    return or_(
        and_(A.c.status == SUBMITTED, A.c.outcome != ResultOutcome.ERROR.value),
        and_(A.c.status == LEASED, A.c.lease_expires_at > now),
    )


# The hot path's statements are built once, with bind parameters, so a call only binds values (a
# statement built per call cost ~2 ms of Python per lease in SQLAlchemy's expression layer).
_NOW = bindparam("now", type_=T.c.created_at.type)
_NODE, _OPERATOR = bindparam("node_id"), bindparam("operator_id")
_IDS = bindparam("ids", expanding=True)


def _build_candidate_query():
    # Two levels, so that the full replica check runs only on rows this lease has locked:
    # - inside, the queue scan takes the next leasable tasks in queue order with FOR UPDATE SKIP
    #   LOCKED (concurrent leases never wait on each other; SQLite renders no FOR UPDATE, BEGIN
    #   IMMEDIATE serializes its writers). It skips, before locking, the tasks this node already
    #   holds or answered: one probe of the (task_id, node_id) unique index. Locking those would
    #   hide them, for the length of this transaction, from the nodes that could take them;
    # - outside, the full replica check (one correlated *scalar* subquery: PostgreSQL evaluates it
    #   per locked task through the (task_id, node_id) index instead of an anti-join over all
    #   assignments) and the limit. Execution is demand-driven: the scan locks rows one by one until
    #   `limit` of them pass the check.
    # With the whole check inside the scan, PostgreSQL counted the replicas of every row ahead in
    # the queue, including the hundreds that 32 concurrent leases hold (6.3 ms per scan; 0.9 ms
    # with the count above the lock). A row that fails the outer check (another node of this
    # operator holds a live replica, or no slot is free) stays locked until this short transaction
    # ends; other leases skip it meanwhile.
    held_or_answered = and_(
        A.c.node_id == _NODE,
        or_(A.c.status == SUBMITTED, and_(A.c.status == LEASED, A.c.lease_expires_at > _NOW)),
    )
    # A scalar subquery, not EXISTS: PostgreSQL may turn an EXISTS into a (hash) anti-join over
    # every assignment; this stays one index probe per scanned row, whatever the plan.
    mine = select(A.c.id).where(A.c.task_id == T.c.id, held_or_answered).limit(1).scalar_subquery()
    blocking = or_(held_or_answered, and_(A.c.operator_id == _OPERATOR, A.c.node_id != _NODE, _live(_NOW)))
    queue = (
        select(T.c.id, T.c.replicas_needed)
        .where(
            T.c.model_name == bindparam("model_name"),
            # Challenge tasks (tasks/challenges.py) are leased only by their target node.
            or_(T.c.target_node_id.is_(None), T.c.target_node_id == _NODE),
            T.c.leasable_at.is_not(None),
            T.c.leasable_at <= _NOW,
            or_(T.c.deadline_at.is_(None), T.c.deadline_at > _NOW),
            mine.is_(None),
        )
        .order_by(T.c.priority.desc(), T.c.created_at)
        .with_for_update(of=T, skip_locked=True)
        .subquery("queue")
    )
    open_to_node = (
        select(and_(func.count().filter(blocking) == 0,
                    func.count().filter(_live(_NOW)) < queue.c.replicas_needed))
        .select_from(A)
        .where(A.c.task_id == queue.c.id)
        .scalar_subquery()
    )
    return select(queue.c.id).where(open_to_node).limit(bindparam("limit"))


def _flag(condition):
    return func.max(case((condition, 1), else_=0))


def _build_slot_query(which):
    """Each locked candidate with what its replicas say, in one grouped read (a fresh snapshot)."""
    live = _live(_NOW)
    leased_live = and_(A.c.status == LEASED, A.c.lease_expires_at > _NOW)
    return (
        select(
            T.c.id, T.c.model_name, cast(T.c.inputs, Text).label("inputs_json"), T.c.priority,
            T.c.created_at, T.c.replicas, T.c.adaptive, T.c.replicas_needed, T.c.status, T.c.leasable_at,
            func.count(A.c.id).filter(live).label("live"),
            _flag(and_(A.c.node_id == _NODE, or_(A.c.status == SUBMITTED, leased_live))).label("mine"),
            _flag(and_(A.c.operator_id == _OPERATOR, A.c.node_id != _NODE, live)).label("same_operator"),
            func.min(case((leased_live, A.c.lease_expires_at))).label("live_lease_until"),
            _flag(and_(A.c.status == LEASED, A.c.lease_expires_at <= _NOW, A.c.node_id != _NODE))
            .label("has_expired"),
        )
        .select_from(T.outerjoin(A, A.c.task_id == T.c.id))
        .where(which)
        .group_by(T.c.id)
    )


_CANDIDATES = _build_candidate_query()
_SLOTS = per_dialect(_build_slot_query, T.c.id)
# Expired leases on newly leased tasks have been replaced: their late results will be refused.
_EXPIRE_REPLACED = (
    update(A)
    .where(A.c.task_id.in_(_IDS), A.c.status == LEASED, A.c.lease_expires_at <= _NOW,
           A.c.node_id != bindparam("b_node_id"))  # (an UPDATE reserves the column names)
    .values(status=AssignmentStatus.EXPIRED.value)
)
_OVERDUE = (
    select(T.c.id)
    .where(T.c.leasable_at.is_not(None), T.c.deadline_at.is_not(None), T.c.deadline_at <= _NOW)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_OVERDUE_OF = _OVERDUE.where(T.c.id.in_(_IDS))
DEADLINE_PASSED = "deadline passed before a quorum of nodes agreed"
_FAIL_TASKS = (
    update(T)
    .where(T.c.id.in_(_IDS))
    .values(
        status=TaskStatus.FAILED.value,
        fail_reason=literal(DEADLINE_PASSED),
        decided_at=_NOW,
        leasable_at=None,
    )
)
_FAIL_PENDING = (
    update(A)
    .where(A.c.task_id.in_(_IDS), A.c.status == SUBMITTED, A.c.outcome == ResultOutcome.PENDING.value)
    .values(outcome=ResultOutcome.INCONCLUSIVE.value, judged_at=_NOW)
)


def plan_settings(*, queue_order: bool = False) -> str:
    """SET LOCAL statements keeping PostgreSQL on index plans for the hot path's key lookups.

    Sent in the same round trip as a transaction's first query (`bulk.driver_rows(before=…)`);
    they last until the transaction ends. The task tables grow by tens of thousands of rows a
    minute, faster than statistics follow, and a stale estimate turns a 64-key lookup into a
    sequential scan of every assignment (measured: 13 ms instead of under 1 ms at 60k rows), or
    starts a parallel worker for it (~10 ms). `queue_order` also makes the lease scan walk
    ix_tasks_leasable in queue order and stop after `limit` rows: estimates for `leasable_at <= now`
    are poor, and a plan that collects every leasable task and sorts it costs ~1 s on a 30k queue
    instead of ~2 ms. (SQLite ignores `before`.)
    """
    settings = ["enable_seqscan = off", "max_parallel_workers_per_gather = 0"]
    if queue_order:
        settings += ["enable_bitmapscan = off", "enable_sort = off"]
    return "; ".join(f"SET LOCAL {s}" for s in settings)


def fail_overdue_tasks(
    session: Session, now: datetime | None = None, *, limit: int = 1000, task_ids: list[str] | None = None
) -> int:
    """Fail undecided tasks whose deadline has passed (skipping rows other transactions hold)."""
    now = now or utcnow()
    if task_ids is not None:
        ids = list(session.scalars(_OVERDUE_OF, {"now": now, "limit": limit, "ids": list(task_ids)}))
    else:
        ids = list(session.scalars(_OVERDUE, {"now": now, "limit": limit}))
    fail_past_deadline(session, ids, now)
    return len(ids)


def fail_past_deadline(session: Session, task_ids: list[str], now: datetime) -> None:
    """Fail these undecided tasks (their deadline passed); pending results become inconclusive."""
    if task_ids:
        session.execute(_FAIL_TASKS, {"ids": task_ids, "now": now})
        session.execute(_FAIL_PENDING, {"ids": task_ids, "now": now})


@dataclass(frozen=True)
class SlotView:
    """A locked candidate task and its replicas, as the leasing rules see them."""

    id: str
    model_name: str
    inputs_json: str
    priority: int
    created_at: datetime
    replicas: int
    adaptive: bool
    replicas_needed: int
    status: str
    leasable_at: datetime | None
    live: int  # replicas that count: unexpired leases and submitted non-error results
    mine: bool  # this node submitted, or holds an unexpired lease
    same_operator: bool  # another node of this node's operator holds a live replica
    live_lease_until: datetime | None  # the earliest expiry among the unexpired leases
    has_expired: bool  # another node's lease ran out (it is replaced when this node leases)


@dataclass(frozen=True)
class PlannedLease:
    task: SlotView
    replicas_needed: int
    unreplicated: bool
    leasable_at: datetime  # when the task may next be leased (now, or when a live lease ends)


def plan_leases(
    slots: list[SlotView],
    *,
    allowance: int,
    consecutive_valid: int,
    now: datetime,
    expires: datetime,
    rng: random.Random,
    rules: ReliabilityRules,
) -> list[PlannedLease]:
    """Which candidates the node gets, in queue order (pure: the rules of leasing, no I/O).

    A node never holds two replicas of one task, live replicas come from distinct operators, and
    a task with nothing counting toward it yet (re)decides adaptive replication for this node: a
    trusted node (a streak of `adaptive_threshold` checked valid results) gets it unreplicated
    with probability 1 − 1/streak.
    """
    chosen: list[PlannedLease] = []
    for t in sorted(slots, key=lambda s: (-s.priority, s.created_at, s.id)):
        if len(chosen) >= allowance:
            break
        if t.status not in UNDECIDED or t.leasable_at is None or t.mine or t.same_operator:
            continue
        needed, unreplicated = t.replicas_needed, False
        if not t.live:
            needed = t.replicas
            if (
                t.adaptive
                and t.replicas > 1
                and consecutive_valid >= rules.adaptive_threshold
                and rng.random() < 1.0 - 1.0 / consecutive_valid
            ):
                needed, unreplicated = 1, True
        if t.live >= needed:
            continue
        if t.live + 1 < needed:
            leasable_at = now
        else:
            leasable_at = min(t.live_lease_until or expires, expires)
        chosen.append(PlannedLease(t, needed, unreplicated, leasable_at))
    return chosen


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
    """Lease up to `max_tasks` replicas for the models the node has loaded (one transaction).

    Set-based: the node's quota row (locked), the candidates (locked, SKIP LOCKED), one grouped
    read of their replicas in a fresh snapshot, then one statement per kind of write.
    """
    now = now or utcnow()
    rng = rng or random.Random()
    expires = now + timedelta(seconds=lease_seconds)

    gate = reserve_quota_day(session, node_id, rules, now)
    if gate.blocked_reason:
        return LeaseOutcome([], None, notice=f"node blocked from new work: {gate.blocked_reason}")
    allowance = min(max_tasks, gate.daily_quota - gate.quota_used)
    if allowance <= 0:
        return LeaseOutcome(
            [], None,
            notice=f"daily quota of {gate.daily_quota} tasks used up (it resets at 00:00 UTC and "
            "grows back with valid results)",
        )

    # Undecided tasks past their deadline fail here; the plan settings ride along (one round trip).
    overdue = driver_rows(session, _OVERDUE, {"now": now, "limit": 500}, before=plan_settings(queue_order=True))
    fail_past_deadline(session, [r["id"] for r in overdue], now)
    params = {"now": now, "node_id": node_id, "operator_id": operator_id, "limit": allowance}
    candidate_ids: list[str] = []
    for model in sorted(set(model_names)):
        candidate_ids.extend(r["id"] for r in driver_rows(session, _CANDIDATES, {**params, "model_name": model}))
    if not candidate_ids:
        return LeaseOutcome([], None)

    # A fresh snapshot of the locked candidates: the exact rules are applied to it.
    slots = [SlotView(**r)
             for r in driver_rows(session, _SLOTS[dialect_name(session)], {**params, "ids": candidate_ids})]
    chosen = plan_leases(slots, allowance=allowance, consecutive_valid=gate.consecutive_valid, now=now,
                         expires=expires, rng=rng, rules=rules)
    if not chosen:
        return LeaseOutcome([], None)

    replaced = [p.task.id for p in chosen if p.task.has_expired]
    if replaced:
        session.execute(_EXPIRE_REPLACED, {"ids": replaced, "now": now, "b_node_id": node_id})
    # One statement on PostgreSQL. The quota row is locked by the gate above, so its new value is
    # known exactly.
    write_batches(
        session,
        BulkUpsert(
            A, conflict=("task_id", "node_id"),
            update_columns=("status", "unreplicated", "leased_at", "lease_expires_at", "outcome"),
            rows=[
                {
                    "task_id": p.task.id,
                    "node_id": node_id,
                    "operator_id": operator_id,
                    "status": LEASED,
                    "unreplicated": p.unreplicated,
                    "leased_at": now,
                    "lease_expires_at": expires,
                    "outcome": ResultOutcome.PENDING.value,
                }
                for p in chosen
            ],
        ),
        BulkUpdate(
            T, keys=("id",), columns=("status", "replicas_needed", "leasable_at"),
            rows=[
                {"id": p.task.id, "status": TaskStatus.IN_PROGRESS.value, "replicas_needed": p.replicas_needed,
                 "leasable_at": p.leasable_at}
                for p in chosen
            ],
        ),
        quota_spent(node_id, gate.quota_used + len(chosen), now),
    )
    return LeaseOutcome(
        [LeaseGrant(p.task.id, p.task.model_name, p.task.inputs_json, expires, p.unreplicated) for p in chosen],
        expires,
    )


def _lock_tasks_query(which):
    return (
        select(
            T.c.id, T.c.status, T.c.fail_reason, T.c.replicas, T.c.quorum, T.c.tolerance,
            T.c.max_replicas, T.c.replicas_needed, T.c.leasable_at, T.c.result, T.c.challenge_expected,
            T.c.deadline_at,
        )
        .where(which)
        .order_by(T.c.id)
        .with_for_update()
    )


_LOCK_TASKS = _lock_tasks_query(T.c.id.in_(_IDS))
_LOCK_TASKS_FOR_RESULTS = per_dialect(_lock_tasks_query, T.c.id)


def _lock_tasks(session: Session, task_ids: list[str]) -> dict[str, Any]:
    """Lock the tasks in id order (every writer does, so they cannot deadlock) and return them."""
    return {r.id: r for r in session.execute(_LOCK_TASKS, {"ids": sorted(set(task_ids))})}


def lock_tasks_for_results(session: Session, task_ids: list[str]) -> dict[str, dict[str, Any]]:
    """`_lock_tasks` for the results path: index plans set in the same round trip, rows as dicts."""
    statement = _LOCK_TASKS_FOR_RESULTS[dialect_name(session)]
    return {r["id"]: r for r in driver_rows(session, statement, {"ids": sorted(set(task_ids))},
                                            before=plan_settings())}


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
