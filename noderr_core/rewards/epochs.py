"""Computing one reward epoch from judged task results (proven service) and telemetry.

The heavy part — aggregating the epoch's judged task assignments (valid / invalid / error, proven
slots, challenge answers) and heartbeats per node — is one SQL statement, so it scales with the
database, not with Python. Python then scores the per-node aggregates with the versioned policy
(scoring.py) and splits the pool exactly.

Rules (docs/rewards.md, "Invariants"):
- **Windows are contiguous.** An epoch is a UTC day, but its window starts where the previous
  computed epoch's window ended (not at midnight when that day was closed early) and ends at
  midnight, at `now` for an early close of the open day, or where the next computed epoch starts.
  Activity is therefore counted in exactly one epoch: work done after an early close is counted —
  visibly, in the window shown in the epoch document — in the next epoch.
- **A sealed epoch is final.** Once a root covering the epoch has been queued for the chain
  (`sealed_at`, set by rewards.tree), computing it again changes nothing and says so: published
  amounts are never lowered or redistributed.
- Until then writes are idempotent per epoch: its node / wallet rows are deleted and re-inserted in
  one transaction, so a retry or a backfill recomputes the same result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from eth_utils import is_address, to_checksum_address
from sqlalchemy import bindparam, delete, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from noderr_core.rewards.scoring import (
    DEFAULT_WEIGHTS,
    SCORING_POLICY_VERSION,
    SLOT_SECONDS,
    ScoringWeights,
    largest_remainder_split,
    score_node,
)
from noderr_core.tables.base import UTCDateTime
from noderr_core.tables.rewards import (
    EpochStatus,
    NodeReward,
    OperatorReward,
    RewardEpoch,
    RewardLeaf,
)
from noderr_core.timeutil import utcnow


class EpochNotOpen(ValueError):
    """The epoch's day has not started or (without allow_open_day) not ended yet."""


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
    window_start: datetime | None = None
    window_end: datetime | None = None
    proven_slots: int = 0
    final: bool = False  # sealed before this call: nothing was recomputed
    note: str = ""
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
            "proven_slots": self.proven_slots,
            "window": f"{self.window_start.isoformat() if self.window_start else '?'} → "
                      f"{self.window_end.isoformat() if self.window_end else '?'}",
            "final": self.final,
            "note": self.note,
            "policy_version": SCORING_POLICY_VERSION,
            "skipped_nodes": len(self.skipped_nodes),
        }


def epoch_bounds(epoch_date: date) -> tuple[datetime, datetime]:
    start = datetime.combine(epoch_date, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):  # raw SQLite text from a text() query
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def epoch_window(session: Session, epoch_date: date, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the activity the epoch counts (contiguous with its computed neighbours)."""
    day_start, day_end = epoch_bounds(epoch_date)
    prev_end = session.scalar(
        select(RewardEpoch.ends_at).where(RewardEpoch.epoch_date == epoch_date - timedelta(days=1))
    )
    start = _aware(prev_end) if prev_end is not None and _aware(prev_end) < day_start else day_start
    end = min(day_end, now)
    next_start = session.scalar(
        select(RewardEpoch.starts_at).where(RewardEpoch.epoch_date == epoch_date + timedelta(days=1))
    )
    if next_start is not None:
        end = min(end, _aware(next_start))
    return start, max(start, end)


def _slot_expr(dialect: str, column: str) -> str:
    # Absolute 5-minute slot number of a (naive UTC) timestamp; day starts are slot boundaries.
    if dialect == "postgresql":
        return f"CAST(FLOOR(EXTRACT(EPOCH FROM {column}) / {SLOT_SECONDS}) AS BIGINT)"
    return f"(CAST(strftime('%s', {column}) AS INTEGER) / {SLOT_SECONDS})"


def activity_sql(dialect: str) -> str:
    """Per-node activity of one window: judged outcomes, proven slots, challenges, heartbeats.

    A proven slot is the 5-minute slot of a result's submission (`submitted_at`) whose judgement
    in the window (`judged_at`) was valid; heartbeats are counted for the record only.
    """
    return f"""
WITH hb AS (
    SELECT h.node_id AS node_id,
           COUNT(*) AS heartbeat_count,
           COUNT(DISTINCT {_slot_expr(dialect, 'h.received_at')}) AS heartbeat_slots
    FROM heartbeats h
    WHERE h.received_at >= :start AND h.received_at < :end
    GROUP BY h.node_id
), tr AS (
    SELECT a.node_id AS node_id,
           SUM(CASE WHEN a.outcome = 'valid' THEN 1 ELSE 0 END) AS tasks_valid,
           SUM(CASE WHEN a.outcome = 'invalid' THEN 1 ELSE 0 END) AS tasks_invalid,
           SUM(CASE WHEN a.outcome = 'error' THEN 1 ELSE 0 END) AS tasks_error,
           SUM(CASE WHEN a.outcome = 'valid' AND t.challenge_expected IS NOT NULL THEN 1 ELSE 0 END)
               AS challenges_valid,
           SUM(CASE WHEN a.outcome = 'invalid' AND t.challenge_expected IS NOT NULL THEN 1 ELSE 0 END)
               AS challenges_invalid,
           COUNT(DISTINCT CASE WHEN a.outcome = 'valid'
                          THEN {_slot_expr(dialect, 'COALESCE(a.submitted_at, a.judged_at)')} END)
               AS proven_slots
    FROM task_assignments a
    JOIN tasks t ON t.id = a.task_id
    WHERE a.judged_at >= :start AND a.judged_at < :end
      AND a.outcome IN ('valid', 'invalid', 'error')
    GROUP BY a.node_id
)
SELECT n.id AS node_id,
       o.wallet_address AS wallet,
       o.wallet_proven_at AS wallet_proven_at,
       n.created_at AS created_at,
       COALESCE(hb.heartbeat_count, 0) AS heartbeat_count,
       COALESCE(hb.heartbeat_slots, 0) AS heartbeat_slots,
       COALESCE(tr.tasks_valid, 0) AS tasks_valid,
       COALESCE(tr.tasks_invalid, 0) AS tasks_invalid,
       COALESCE(tr.tasks_error, 0) AS tasks_error,
       COALESCE(tr.challenges_valid, 0) AS challenges_valid,
       COALESCE(tr.challenges_invalid, 0) AS challenges_invalid,
       COALESCE(tr.proven_slots, 0) AS proven_slots
FROM nodes n
JOIN operators o ON o.id = n.operator_id
LEFT JOIN hb ON hb.node_id = n.id
LEFT JOIN tr ON tr.node_id = n.id
WHERE hb.node_id IS NOT NULL OR tr.node_id IS NOT NULL
ORDER BY n.id
"""


def _window_slots(created_at: datetime | str, start: datetime, end: datetime) -> int:
    """Slots of the window during which the node existed (for the record: uptime percent)."""
    begin = max(_aware(created_at), start)
    if begin >= end:
        return 0
    return -(-int((end - begin).total_seconds()) // SLOT_SECONDS)


def _upsert_epoch(session: Session, epoch_date: date, pool: int, weights: ScoringWeights) -> RewardEpoch:
    start, end = epoch_bounds(epoch_date)
    dialect = session.get_bind().dialect.name
    values = {
        "epoch_date": epoch_date, "starts_at": start, "ends_at": end, "pool_amount": pool,
        "distributed_amount": 0, "node_count": 0, "operator_count": 0, "total_score": 0,
        "scoring": weights.as_dict(), "status": EpochStatus.COMPUTED.value, "computed_at": utcnow(),
        "policy_version": SCORING_POLICY_VERSION,
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


def _sealed_summary(epoch: RewardEpoch) -> EpochSummary:
    closed = "closed early at " + epoch.ends_at.isoformat() if epoch.ends_at < epoch_bounds(
        epoch.epoch_date)[1] else "closed at the end of its day"
    return EpochSummary(
        epoch_date=epoch.epoch_date, epoch_id=epoch.id, pool_amount=epoch.pool_amount,
        distributed_amount=epoch.distributed_amount, node_count=epoch.node_count,
        operator_count=epoch.operator_count, total_score=epoch.total_score, heartbeats=0,
        tasks_judged=0, window_start=epoch.starts_at, window_end=epoch.ends_at, final=True,
        note=(f"final: sealed at {epoch.sealed_at.isoformat()} ({closed}); its shares are unchanged "
              "and any later activity is counted in the next epoch"),
    )


def compute_epoch(
    session: Session,
    epoch_date: date,
    *,
    pool: int,
    weights: ScoringWeights = DEFAULT_WEIGHTS,
    allow_open_day: bool = False,
    now: datetime | None = None,
) -> EpochSummary:
    """(Re)compute one epoch's per-node and per-wallet rewards; the caller commits.

    `allow_open_day` closes today's epoch early on what has happened so far (test networks and
    the demo). Until its root is queued it may be recomputed (the daily schedule does, after
    midnight, and then counts the whole day); once sealed it is final and the rest of the day goes
    to the next epoch. Future days are always refused. `now` is the clock (tests pass one).
    """
    now = now or utcnow()
    today = now.date()
    if epoch_date > today or (epoch_date == today and not allow_open_day):
        raise EpochNotOpen(
            f"epoch {epoch_date.isoformat()} has not ended yet (epochs are whole UTC days); "
            "compute it after midnight UTC"
        )
    epoch = _upsert_epoch(session, epoch_date, pool, weights)
    if epoch.sealed_at is not None:
        return _sealed_summary(epoch)
    start, end = epoch_window(session, epoch_date, now)
    dialect = session.get_bind().dialect.name
    query = text(activity_sql(dialect)).bindparams(
        bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime())
    )
    rows = session.execute(query, {"start": start, "end": end}).all()
    window_slots = -(-int((end - start).total_seconds()) // SLOT_SECONDS)

    node_rows: list[dict] = []
    skipped: dict[str, str] = {}
    heartbeats = tasks_judged = proven_total = 0
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
        proven = min(int(r.proven_slots), window_slots)
        proven_total += proven
        s = score_node(
            proven_slots=proven, tasks_valid=int(r.tasks_valid), tasks_invalid=int(r.tasks_invalid),
            tasks_error=int(r.tasks_error), weights=weights,
        )
        node_rows.append({
            "epoch_id": epoch.id, "node_id": r.node_id,
            "operator_wallet": to_checksum_address(r.wallet),
            "heartbeat_count": int(r.heartbeat_count),
            # uptime_slots = the slots the node *said* it was up (heartbeats), for the record.
            "uptime_slots": min(int(r.heartbeat_slots), window_slots),
            "eligible_slots": max(_window_slots(r.created_at, start, end), proven),
            "proven_slots": proven,
            "tasks_valid": int(r.tasks_valid), "tasks_invalid": int(r.tasks_invalid),
            "tasks_error": int(r.tasks_error),
            "challenges_valid": int(r.challenges_valid), "challenges_invalid": int(r.challenges_invalid),
            "uptime_points": s.uptime_points, "task_points": s.task_points,
            "invalid_penalty": s.invalid_penalty, "error_penalty": s.error_penalty,
            "downtime_penalty": 0, "score": s.score,
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
    epoch.policy_version = SCORING_POLICY_VERSION
    epoch.computed_at = utcnow()
    # The tree through this epoch must be rebuilt from the new shares.
    epoch.status = EpochStatus.COMPUTED
    epoch.merkle_root = None
    epoch.total_cumulative = None
    epoch.leaf_count = None
    epoch.tree_built_at = None
    session.flush()
    day_end = epoch_bounds(epoch_date)[1]
    note = "" if end == day_end else f"closed early at {end.isoformat()}: provisional until its root is queued"
    if start < epoch_bounds(epoch_date)[0]:
        note = (note + "; " if note else "") + (
            f"includes {start.isoformat()} → midnight carried over from the early-closed previous epoch")
    return EpochSummary(
        epoch_date=epoch_date, epoch_id=epoch.id, pool_amount=pool, distributed_amount=distributed,
        node_count=epoch.node_count, operator_count=epoch.operator_count, total_score=total_score,
        heartbeats=heartbeats, tasks_judged=tasks_judged, window_start=start, window_end=end,
        proven_slots=proven_total, note=note, skipped_nodes=skipped,
    )
