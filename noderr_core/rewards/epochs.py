"""Computing one daily reward epoch from telemetry and judged task results.

The heavy part — aggregating the epoch's heartbeats (uptime slots) and judged task assignments
(valid / invalid / error) per node — is one SQL statement, so it scales with the database, not with
Python. Python then scores the per-node aggregates and splits the pool exactly (see scoring.py).

Writes are idempotent per epoch: the epoch row is upserted and its node / operator rows are
deleted and re-inserted in one transaction, so a retry or a backfill recomputes the same result.
Recomputing invalidates the epoch's cumulative tree; `rewards.tree` rebuilds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from eth_utils import is_address, to_checksum_address
from sqlalchemy import bindparam, delete, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from noderr_core.tables.base import UTCDateTime
from noderr_core.tables.rewards import (
    EpochStatus,
    NodeReward,
    OperatorReward,
    RewardEpoch,
    RewardLeaf,
)
from noderr_core.rewards.scoring import (
    DEFAULT_WEIGHTS,
    SLOT_SECONDS,
    SLOTS_PER_DAY,
    ScoringWeights,
    largest_remainder_split,
    score_node,
)
from noderr_core.timeutil import utcnow


@dataclass
class EpochSummary:
    epoch_date: date
    epoch_id: int
    pool_amount: int
    distributed_amount: int
    node_count: int
    operator_count: int
    total_score: int
    heartbeats: int
    tasks_judged: int
    skipped_nodes: dict[str, str] = field(default_factory=dict)  # node id -> why

    def as_metadata(self) -> dict:
        return {
            "epoch": self.epoch_date.isoformat(),
            "pool_amount": str(self.pool_amount),
            "distributed_amount": str(self.distributed_amount),
            "nodes_rewarded": self.node_count,
            "operators_rewarded": self.operator_count,
            "total_score": self.total_score,
            "heartbeats": self.heartbeats,
            "tasks_judged": self.tasks_judged,
            "skipped_nodes": len(self.skipped_nodes),
        }


def epoch_bounds(epoch_date: date) -> tuple[datetime, datetime]:
    start = datetime.combine(epoch_date, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _slot_expr(dialect: str) -> str:
    # Absolute 5-minute slot number of a (naive UTC) timestamp; day starts are slot boundaries.
    if dialect == "postgresql":
        return f"CAST(FLOOR(EXTRACT(EPOCH FROM h.received_at) / {SLOT_SECONDS}) AS BIGINT)"
    return f"(CAST(strftime('%s', h.received_at) AS INTEGER) / {SLOT_SECONDS})"


def activity_sql(dialect: str) -> str:
    """Per-node activity of one epoch: heartbeats, uptime slots, judged task outcomes."""
    return f"""
WITH hb AS (
    SELECT h.node_id AS node_id,
           COUNT(*) AS heartbeat_count,
           COUNT(DISTINCT {_slot_expr(dialect)}) AS uptime_slots
    FROM heartbeats h
    WHERE h.received_at >= :start AND h.received_at < :end
    GROUP BY h.node_id
), tr AS (
    SELECT a.node_id AS node_id,
           SUM(CASE WHEN a.outcome = 'valid' THEN 1 ELSE 0 END) AS tasks_valid,
           SUM(CASE WHEN a.outcome = 'invalid' THEN 1 ELSE 0 END) AS tasks_invalid,
           SUM(CASE WHEN a.outcome = 'error' THEN 1 ELSE 0 END) AS tasks_error
    FROM task_assignments a
    WHERE a.judged_at >= :start AND a.judged_at < :end
      AND a.outcome IN ('valid', 'invalid', 'error')
    GROUP BY a.node_id
)
SELECT n.id AS node_id,
       o.wallet_address AS wallet,
       o.wallet_proven_at AS wallet_proven_at,
       n.created_at AS created_at,
       COALESCE(hb.heartbeat_count, 0) AS heartbeat_count,
       COALESCE(hb.uptime_slots, 0) AS uptime_slots,
       COALESCE(tr.tasks_valid, 0) AS tasks_valid,
       COALESCE(tr.tasks_invalid, 0) AS tasks_invalid,
       COALESCE(tr.tasks_error, 0) AS tasks_error
FROM nodes n
JOIN operators o ON o.id = n.operator_id
LEFT JOIN hb ON hb.node_id = n.id
LEFT JOIN tr ON tr.node_id = n.id
WHERE hb.node_id IS NOT NULL OR tr.node_id IS NOT NULL
ORDER BY n.id
"""


def _eligible_slots(created_at: datetime | str, start: datetime, until: datetime | None = None) -> int:
    """Slots of the epoch during which the node existed (a node created mid-day is not penalised
    for the hours before it existed), up to `until` (now, for an epoch closed before its day
    ended: the rest of the day cannot have been missed yet)."""
    if isinstance(created_at, str):  # raw SQLite text from a text() query
        created_at = datetime.fromisoformat(created_at)
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    end_slot = SLOTS_PER_DAY
    if until is not None and until < start + timedelta(days=1):
        end_slot = max(0, -(-int((until - start).total_seconds()) // SLOT_SECONDS))
    if created_at <= start:
        return end_slot
    elapsed_slots = int((created_at - start).total_seconds()) // SLOT_SECONDS
    return max(0, end_slot - elapsed_slots)


def _upsert_epoch(session: Session, epoch_date: date, pool: int, weights: ScoringWeights) -> RewardEpoch:
    start, end = epoch_bounds(epoch_date)
    dialect = session.get_bind().dialect.name
    values = {
        "epoch_date": epoch_date, "starts_at": start, "ends_at": end, "pool_amount": pool,
        "distributed_amount": 0, "node_count": 0, "operator_count": 0, "total_score": 0,
        "scoring": weights.as_dict(), "status": EpochStatus.COMPUTED.value, "computed_at": utcnow(),
    }
    insert_fn = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert_fn(RewardEpoch).values(**values).on_conflict_do_nothing(index_elements=["epoch_date"])
    )
    stmt = select(RewardEpoch).where(RewardEpoch.epoch_date == epoch_date)
    if dialect == "postgresql":
        # Serialise concurrent recomputations of one epoch (a retry racing a backfill).
        stmt = stmt.with_for_update()
    return session.scalar(stmt.execution_options(populate_existing=True))


def compute_epoch(
    session: Session,
    epoch_date: date,
    *,
    pool: int,
    weights: ScoringWeights = DEFAULT_WEIGHTS,
    allow_open_day: bool = False,
) -> EpochSummary:
    """(Re)compute one epoch's per-node and per-wallet rewards; the caller commits.

    `allow_open_day` closes today's epoch early on what has happened so far (test networks and
    the demo); recomputing it after midnight replaces it, and the cumulative tree carries the
    difference. Future days are always refused.
    """
    today = utcnow().date()
    if epoch_date > today or (epoch_date == today and not allow_open_day):
        raise ValueError(
            f"epoch {epoch_date.isoformat()} has not ended yet (epochs are whole UTC days); "
            "compute it after midnight UTC"
        )
    start, end = epoch_bounds(epoch_date)
    epoch = _upsert_epoch(session, epoch_date, pool, weights)
    dialect = session.get_bind().dialect.name
    query = text(activity_sql(dialect)).bindparams(
        bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime())
    )
    rows = session.execute(query, {"start": start, "end": end}).all()

    node_rows: list[dict] = []
    skipped: dict[str, str] = {}
    heartbeats = tasks_judged = 0
    for r in rows:
        heartbeats += int(r.heartbeat_count)
        tasks_judged += int(r.tasks_valid) + int(r.tasks_invalid) + int(r.tasks_error)
        if not r.wallet or not is_address(r.wallet):
            skipped[r.node_id] = f"operator wallet {r.wallet!r} is not an address"
            continue
        if r.wallet_proven_at is None:
            # Nothing proves the typed-in address is the operator's until they sign in with it
            # (EIP-4361, noderr_core.operators): nothing accrues to an address nobody may control.
            skipped[r.node_id] = f"payout wallet {r.wallet} not proven yet (operator has not signed in)"
            continue
        eligible = _eligible_slots(r.created_at, start, until=min(end, utcnow()))
        uptime = min(int(r.uptime_slots), SLOTS_PER_DAY)
        s = score_node(
            uptime_slots=uptime, eligible_slots=max(eligible, uptime),
            tasks_valid=int(r.tasks_valid), tasks_invalid=int(r.tasks_invalid), weights=weights,
        )
        node_rows.append({
            "epoch_id": epoch.id, "node_id": r.node_id,
            "operator_wallet": to_checksum_address(r.wallet),
            "heartbeat_count": int(r.heartbeat_count), "uptime_slots": uptime,
            "eligible_slots": max(eligible, uptime),
            "tasks_valid": int(r.tasks_valid), "tasks_invalid": int(r.tasks_invalid),
            "tasks_error": int(r.tasks_error),
            "uptime_points": s.uptime_points, "task_points": s.task_points,
            "invalid_penalty": s.invalid_penalty, "downtime_penalty": s.downtime_penalty,
            "score": s.score,
        })

    amounts = largest_remainder_split(pool, [(row["node_id"], row["score"]) for row in node_rows])
    per_wallet: dict[str, list[int]] = {}
    for row in node_rows:
        row["amount"] = amounts[row["node_id"]]
        totals = per_wallet.setdefault(row["operator_wallet"], [0, 0])
        totals[0] += row["amount"]
        totals[1] += 1
    operator_rows = [
        {"epoch_id": epoch.id, "wallet": wallet, "amount": amount, "node_count": count}
        for wallet, (amount, count) in sorted(per_wallet.items())
        if amount > 0
    ]

    # Delete-then-insert keyed by the epoch: retries and backfills converge on the same rows.
    session.execute(delete(RewardLeaf).where(RewardLeaf.epoch_id == epoch.id))
    session.execute(delete(NodeReward).where(NodeReward.epoch_id == epoch.id))
    session.execute(delete(OperatorReward).where(OperatorReward.epoch_id == epoch.id))
    if node_rows:
        session.execute(insert(NodeReward), node_rows)
    if operator_rows:
        session.execute(insert(OperatorReward), operator_rows)

    distributed = sum(amounts.values())
    total_score = sum(row["score"] for row in node_rows)
    epoch.starts_at, epoch.ends_at = start, end
    epoch.pool_amount = pool
    epoch.distributed_amount = distributed
    epoch.node_count = sum(1 for row in node_rows if row["amount"] > 0)
    epoch.operator_count = len(operator_rows)
    epoch.total_score = total_score
    epoch.scoring = weights.as_dict()
    epoch.computed_at = utcnow()
    # The tree through this epoch must be rebuilt from the new shares.
    epoch.status = EpochStatus.COMPUTED
    epoch.merkle_root = None
    epoch.total_cumulative = None
    epoch.leaf_count = None
    epoch.tree_built_at = None
    session.flush()
    return EpochSummary(
        epoch_date=epoch_date, epoch_id=epoch.id, pool_amount=pool, distributed_amount=distributed,
        node_count=epoch.node_count, operator_count=epoch.operator_count, total_score=total_score,
        heartbeats=heartbeats, tasks_judged=tasks_judged, skipped_nodes=skipped,
    )
