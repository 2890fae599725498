"""Per-node reliability: streaks, counts, turnaround, daily quota and blocking.

The record is updated in the same transaction as the results that change it (see results.py); this
module holds the rules and the read side used by admin pages and rewards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from types import SimpleNamespace

from sqlalchemy import bindparam, case, select
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.tables.tasks import NodeReliability
from noderr_core.tasks.bulk import (
    BulkUpdate,
    dialect_insert,
    dialect_name,
    driver_rows,
    insert_for_dialect,
    is_postgresql,
    per_dialect,
)
from noderr_core.tasks.rules import DEFAULT_RULES, ReliabilityRules


R = NodeReliability.__table__
# Columns a batch of results may change (written back in one statement per batch).
_MUTABLE = tuple(c.name for c in R.c if c.name != "node_id")


# Counters a new record starts at zero (beside node_id, daily_quota and updated_at).
_ZEROED = ("consecutive_valid", "consecutive_invalid", "consecutive_errors", "results_count", "valid_count",
           "invalid_count", "error_count", "unreplicated_count", "quota_used")
_NEW_ROW_COLUMNS = ("node_id", *_ZEROED, "daily_quota", "updated_at")


def _new_rows(node_ids: list[str], rules: ReliabilityRules, now: datetime) -> list[dict]:
    return [
        {"node_id": n, **dict.fromkeys(_ZEROED, 0), "daily_quota": rules.base_daily_quota, "updated_at": now}
        for n in node_ids
    ]


def _create_missing(session: Session, node_ids: list[str], rules: ReliabilityRules, now: datetime) -> None:
    # First work for these nodes: create their rows (a concurrent creator is harmless).
    session.execute(
        dialect_insert(session, R).on_conflict_do_nothing(index_elements=["node_id"]),
        _new_rows(node_ids, rules, now),
    )


def lock_reliability(
    session: Session, node_ids: list[str], rules: ReliabilityRules, now: datetime
) -> dict[str, NodeReliability]:
    """The nodes' reliability rows as ORM objects (created if missing), locked, in node-id order.

    For admin actions; the task hot path uses `lock_reliability_records` (no ORM objects).
    """
    node_ids = sorted(set(node_ids))
    if not node_ids:
        return {}
    stmt = select(NodeReliability).where(NodeReliability.node_id.in_(node_ids)).order_by(
        NodeReliability.node_id
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update()
    # populate_existing: the row may be cached in the session from before the lock was taken.
    stmt = stmt.execution_options(populate_existing=True)
    found = session.scalars(stmt).all()
    missing = sorted(set(node_ids) - {r.node_id for r in found})
    if missing:
        _create_missing(session, missing, rules, now)
        found = session.scalars(stmt).all()
    return {r.node_id: r for r in found}


_LOCK_RECORDS = per_dialect(lambda which: select(R).where(which).order_by(R.c.node_id).with_for_update(),
                            R.c.node_id)


def lock_reliability_records(
    session: Session, node_ids: list[str], rules: ReliabilityRules, now: datetime
) -> dict[str, SimpleNamespace]:
    """The nodes' reliability rows as plain records (created if missing), locked in node-id order.

    Change them with `apply_events`, then store them with `reliability_records_write`.
    """
    node_ids = sorted(set(node_ids))
    if not node_ids:
        return {}
    lock = _LOCK_RECORDS[dialect_name(session)]
    found = driver_rows(session, lock, {"ids": node_ids})
    missing = sorted(set(node_ids) - {r["node_id"] for r in found})
    if missing:
        _create_missing(session, missing, rules, now)
        found = driver_rows(session, lock, {"ids": node_ids})
    return {r["node_id"]: SimpleNamespace(**r) for r in found}


def reliability_records_write(records: list[SimpleNamespace]) -> BulkUpdate:
    """The write that stores records changed by `apply_events` (run it with `write_batches`)."""
    return BulkUpdate(R, keys=("node_id",), columns=_MUTABLE, rows=[vars(r) for r in records])


@dataclass(frozen=True)
class LeaseGate:
    blocked_reason: str | None
    consecutive_valid: int
    daily_quota: int
    quota_used: int  # today's, after the day rolled over


@lru_cache(maxsize=4)
def _reserve_statement(dialect: str):
    ins = insert_for_dialect(dialect, R).values(
        {c: bindparam(f"b_{c}") for c in (*_NEW_ROW_COLUMNS, "quota_day")})
    return ins.on_conflict_do_update(
        index_elements=[R.c.node_id],
        set_={
            "quota_used": case((R.c.quota_day == ins.excluded.quota_day, R.c.quota_used), else_=0),
            "quota_day": ins.excluded.quota_day,
        },
    ).returning(R.c.blocked_reason, R.c.consecutive_valid, R.c.daily_quota, R.c.quota_used)


def reserve_quota_day(session: Session, node_id: str, rules: ReliabilityRules, now: datetime) -> LeaseGate:
    """Lock the node's reliability row for a lease (creating it, rolling its quota to today).

    One statement (an upsert that returns the row): concurrent leases by the same node queue on
    the row lock, so two of them cannot both spend the last of the day's quota.
    """
    [values] = _new_rows([node_id], rules, now)
    params = {f"b_{k}": v for k, v in values.items()} | {"b_quota_day": now.date().isoformat()}
    [row] = driver_rows(session, _reserve_statement(dialect_name(session)), params)
    return LeaseGate(**row)


def quota_spent(node_id: str, quota_used: int, now: datetime) -> BulkUpdate:
    """The write that records today's quota use, for a row the caller holds locked (`reserve_quota_day`)."""
    return BulkUpdate(R, keys=("node_id",), columns=("quota_used", "updated_at"),
                      rows=[{"node_id": node_id, "quota_used": quota_used, "updated_at": now}])


@dataclass
class NodeEvents:
    """What happened to one node's results in one transaction, in order."""

    outcomes: list[tuple[str, bool]] = field(default_factory=list)  # (valid|invalid|error, checked)
    turnarounds_ms: list[float] = field(default_factory=list)
    submitted: int = 0
    last_error: str | None = None


def apply_events(
    rel: NodeReliability | SimpleNamespace, events: NodeEvents, rules: ReliabilityRules, now: datetime
) -> None:
    """Fold one batch of a node's events into its record (streaks, quota, blocking)."""
    if events.turnarounds_ms:
        n0 = rel.results_count
        total = (rel.turnaround_ms_avg or 0.0) * n0 + sum(events.turnarounds_ms)
        rel.turnaround_ms_avg = total / (n0 + len(events.turnarounds_ms))
    rel.results_count += events.submitted
    for outcome, checked in events.outcomes:
        if outcome == "valid":
            rel.valid_count += 1
            rel.consecutive_invalid = 0
            rel.consecutive_errors = 0
            rel.last_valid_at = now
            if checked:
                # Only results compared against other nodes extend the streak: an unreplicated
                # result was trusted, not verified.
                rel.consecutive_valid += 1
                rel.daily_quota = min(rules.base_daily_quota, rel.daily_quota * 2)
            else:
                rel.unreplicated_count += 1
        elif outcome == "invalid":
            rel.invalid_count += 1
            rel.consecutive_valid = 0
            rel.consecutive_invalid += 1
            rel.last_invalid_at = now
            rel.daily_quota = max(rules.min_daily_quota, rel.daily_quota // 2)
            if rel.consecutive_invalid >= rules.block_after_consecutive_invalid and not rel.blocked_reason:
                rel.blocked_reason = (
                    f"{rel.consecutive_invalid} invalid results in a row (last at "
                    f"{now:%Y-%m-%d %H:%M} UTC): its outputs disagree with the quorum; check the "
                    "node's model files and hardware, then unblock it"
                )
                rel.blocked_at = now
        elif outcome == "error":
            rel.error_count += 1
            rel.consecutive_errors += 1
            if rel.consecutive_errors >= rules.block_after_consecutive_errors and not rel.blocked_reason:
                rel.blocked_reason = (
                    f"{rel.consecutive_errors} errors in a row; last error: "
                    f"{(events.last_error or '')[:300]}"
                )
                rel.blocked_at = now
    if events.last_error:
        rel.last_error = events.last_error[:2000]
    rel.updated_at = now


@dataclass(frozen=True)
class ReliabilitySummary:
    node_id: str
    consecutive_valid: int
    results_count: int
    valid_count: int
    invalid_count: int
    error_count: int
    unreplicated_count: int
    invalid_rate: float
    error_rate: float
    turnaround_ms_avg: float | None
    daily_quota: int
    quota_used_today: int
    trusted: bool  # eligible for unreplicated tasks (adaptive replication)
    last_valid_at: datetime | None
    last_invalid_at: datetime | None
    last_error: str | None
    blocked_reason: str | None
    blocked_at: datetime | None


def _summary(rel: NodeReliability | None, node_id: str, rules: ReliabilityRules, now) -> ReliabilitySummary:
    if rel is None:
        return ReliabilitySummary(
            node_id, 0, 0, 0, 0, 0, 0, 0.0, 0.0, None, rules.base_daily_quota, 0, False,
            None, None, None, None, None,
        )
    judged = rel.valid_count + rel.invalid_count
    today = now.date().isoformat() if now else None
    return ReliabilitySummary(
        node_id=node_id,
        consecutive_valid=rel.consecutive_valid,
        results_count=rel.results_count,
        valid_count=rel.valid_count,
        invalid_count=rel.invalid_count,
        error_count=rel.error_count,
        unreplicated_count=rel.unreplicated_count,
        invalid_rate=rel.invalid_count / judged if judged else 0.0,
        error_rate=rel.error_count / rel.results_count if rel.results_count else 0.0,
        turnaround_ms_avg=rel.turnaround_ms_avg,
        daily_quota=rel.daily_quota,
        quota_used_today=rel.quota_used if rel.quota_day == today else 0,
        trusted=rel.consecutive_valid >= rules.adaptive_threshold and not rel.blocked_reason,
        last_valid_at=rel.last_valid_at,
        last_invalid_at=rel.last_invalid_at,
        last_error=rel.last_error,
        blocked_reason=rel.blocked_reason,
        blocked_at=rel.blocked_at,
    )


def node_reliability_summary(
    session: Session, node_id: str, rules: ReliabilityRules = DEFAULT_RULES
) -> ReliabilitySummary:
    """The node's validation record as admin pages and rewards read it (zeros if it has none)."""
    from noderr_core.timeutil import utcnow

    return _summary(session.get(NodeReliability, node_id), node_id, rules, utcnow())


def node_reliability_summaries(
    session: Session, node_ids: list[str] | None = None, rules: ReliabilityRules = DEFAULT_RULES
) -> dict[str, ReliabilitySummary]:
    """Summaries for many nodes at once (one query), keyed by node id."""
    from noderr_core.timeutil import utcnow

    stmt = select(NodeReliability)
    if node_ids is not None:
        stmt = stmt.where(NodeReliability.node_id.in_(node_ids))
    now = utcnow()
    found = {r.node_id: r for r in session.scalars(stmt)}
    ids = node_ids if node_ids is not None else list(found)
    return {n: _summary(found.get(n), n, rules, now) for n in ids}


def unblock_node(session: Session, *, node_id: str, actor: Actor, rules: ReliabilityRules = DEFAULT_RULES) -> None:
    """An admin lets a blocked node work again (streaks restart, quota back to the minimum)."""
    from noderr_core.timeutil import utcnow

    now = utcnow()
    rel = lock_reliability(session, [node_id], rules, now)[node_id]
    previous = rel.blocked_reason
    rel.blocked_reason = None
    rel.blocked_at = None
    rel.consecutive_invalid = 0
    rel.consecutive_errors = 0
    rel.daily_quota = max(rules.min_daily_quota, min(rel.daily_quota, rules.base_daily_quota))
    rel.updated_at = now
    audit(session, actor, "node.work_unblocked", "node", node_id, previous_reason=previous)
