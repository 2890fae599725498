"""The cumulative Merkle tree per epoch and the publication of its root through the chain outbox.

The tree for epoch E has one leaf per wallet: everything the wallet earned in all computed epochs
up to and including E. The on-chain distributor pays the difference to what was already claimed,
so one claim collects every epoch and an epoch computed late (a backfill) is paid through the next
published root.

Publishing enqueues `{"action": "publish_root", ...}` with the idempotency key
`chain:publish_root:<YYYYMMDD>:<root>`: recomputing an epoch with the same inputs gives the same
root, hence the same key, hence no second transaction. Queueing a root *seals* every epoch it
covers (`sealed_at`): a sealed epoch's shares and tree are final (rewards.epochs), so no later root
can owe a wallet less than an earlier one. The invariants are checked again right before queueing
(rewards.invariants); a root that breaks one is never queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from noderr_core.outbox import enqueue
from noderr_core.tables import OutboxKind, OutboxMessage, OutboxStatus
from noderr_core.tables.rewards import EpochStatus, OperatorReward, RewardEpoch, RewardLeaf
from noderr_core.rewards.merkle import MerkleTree, build_tree
from noderr_core.timeutil import utcnow

PUBLISH_ACTION = "publish_root"


class InvariantViolation(RuntimeError):
    """A root that would break a payout invariant (docs/rewards.md); it is never queued."""


class EpochNotComputed(LookupError):
    pass


def epoch_number(epoch_date: date) -> int:
    """The on-chain epoch id: the date as YYYYMMDD (readable, and ordered like the dates)."""
    return epoch_date.year * 10_000 + epoch_date.month * 100 + epoch_date.day


def publish_idempotency_key(epoch_date: date, root: str) -> str:
    return f"chain:{PUBLISH_ACTION}:{epoch_number(epoch_date)}:{root}"


def get_epoch(session: Session, epoch_date: date) -> RewardEpoch:
    epoch = session.scalar(select(RewardEpoch).where(RewardEpoch.epoch_date == epoch_date))
    if epoch is None:
        raise EpochNotComputed(f"epoch {epoch_date.isoformat()} has not been computed yet")
    return epoch


def cumulative_amounts(session: Session, through: date) -> dict[str, int]:
    """wallet -> total earned over every computed epoch up to `through` (inclusive)."""
    base = (
        select(OperatorReward.wallet, OperatorReward.amount)
        .join(RewardEpoch, RewardEpoch.id == OperatorReward.epoch_id)
        .where(RewardEpoch.epoch_date <= through)
    )
    if session.get_bind().dialect.name == "postgresql":
        # NUMERIC(78,0) sums exactly in the database.
        stmt = (
            select(OperatorReward.wallet, func.sum(OperatorReward.amount))
            .join(RewardEpoch, RewardEpoch.id == OperatorReward.epoch_id)
            .where(RewardEpoch.epoch_date <= through)
            .group_by(OperatorReward.wallet)
        )
        return {wallet: int(total) for wallet, total in session.execute(stmt)}
    # SQLite keeps amounts as decimal text (its integers stop at 2^63): sum exactly in Python.
    totals: dict[str, int] = {}
    for wallet, amount in session.execute(base):
        totals[wallet] = totals.get(wallet, 0) + int(amount)
    return totals


@dataclass
class TreeSummary:
    epoch_date: date
    merkle_root: str | None
    leaf_count: int
    total_cumulative: int

    def as_metadata(self) -> dict:
        return {
            "epoch": self.epoch_date.isoformat(),
            "merkle_root": self.merkle_root or "(no leaves)",
            "leaves": self.leaf_count,
            "total_cumulative": str(self.total_cumulative),
        }


def build_epoch_tree(session: Session, epoch_date: date) -> TreeSummary:
    """(Re)build the cumulative leaves and root through `epoch_date`; the caller commits.

    A sealed epoch keeps the tree it was published with (a backfilled earlier epoch reaches the
    chain through the next root instead)."""
    epoch = get_epoch(session, epoch_date)
    if epoch.sealed_at is not None and epoch.tree_built_at is not None:
        return TreeSummary(epoch_date, epoch.merkle_root, epoch.leaf_count or 0, epoch.total_cumulative or 0)
    totals = {w: a for w, a in cumulative_amounts(session, epoch_date).items() if a > 0}
    session.execute(delete(RewardLeaf).where(RewardLeaf.epoch_id == epoch.id))
    leaves = sorted(totals.items())
    if leaves:
        session.execute(
            insert(RewardLeaf),
            [{"epoch_id": epoch.id, "wallet": w, "cumulative_amount": a} for w, a in leaves],
        )
        root = build_tree(leaves).root_hex
    else:
        root = None
    epoch.merkle_root = root
    epoch.leaf_count = len(leaves)
    epoch.total_cumulative = sum(totals.values())
    epoch.tree_built_at = utcnow()
    epoch.status = EpochStatus.ROOT_READY
    session.flush()
    return TreeSummary(epoch_date, root, len(leaves), epoch.total_cumulative)


@dataclass
class PublishDecision:
    epoch_date: date
    queued: bool
    status: str
    reason: str
    outbox_id: int | None = None
    idempotency_key: str | None = None

    def as_metadata(self) -> dict:
        return {
            "epoch": self.epoch_date.isoformat(),
            "queued": self.queued,
            "status": str(self.status),
            "reason": self.reason,
            "outbox_id": self.outbox_id or 0,
            "idempotency_key": self.idempotency_key or "",
        }


def latest_published_epoch(session: Session) -> RewardEpoch | None:
    return session.scalar(
        select(RewardEpoch)
        .where(RewardEpoch.status == EpochStatus.PUBLISHED)
        .order_by(RewardEpoch.epoch_date.desc())
        .limit(1)
    )


def seal_epochs_through(session: Session, epoch_date: date) -> int:
    """Mark every computed epoch up to `epoch_date` final: a queued root covers their shares."""
    result = session.execute(
        update(RewardEpoch)
        .where(RewardEpoch.epoch_date <= epoch_date, RewardEpoch.sealed_at.is_(None))
        .values(sealed_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )
    return result.rowcount or 0


def apply_outbox_state(epoch: RewardEpoch, msg: OutboxMessage) -> None:
    """Mirror the publish row's state on the epoch (a retried publish finds the row already sent)."""
    result = msg.result or {}
    if msg.status == OutboxStatus.SENT:
        if result.get("outcome") == "superseded":
            epoch.status = EpochStatus.ROOT_READY
            epoch.publish_error = result.get("detail")
        else:
            epoch.status = EpochStatus.PUBLISHED
            epoch.published_tx_hash = result.get("tx_hash") or epoch.published_tx_hash
            epoch.published_at = epoch.published_at or msg.sent_at
            epoch.publish_error = None
    elif msg.status == OutboxStatus.FAILED:
        epoch.status = EpochStatus.PUBLISH_FAILED
        epoch.publish_error = msg.last_error
    else:
        epoch.status = EpochStatus.PUBLISH_QUEUED
        epoch.publish_error = msg.last_error


def load_leaves(session: Session, epoch_id: int) -> list[tuple[str, int]]:
    return [
        (w, int(a))
        for w, a in session.execute(
            select(RewardLeaf.wallet, RewardLeaf.cumulative_amount)
            .where(RewardLeaf.epoch_id == epoch_id)
            .order_by(RewardLeaf.wallet)
        )
    ]


@lru_cache(maxsize=4)
def _cached_tree(root: str, leaves: tuple[tuple[str, int], ...]) -> MerkleTree:
    return build_tree(leaves)


def tree_for_epoch(session: Session, epoch: RewardEpoch) -> MerkleTree | None:
    """The epoch's tree, rebuilt from its stored leaves (cached per root) and checked against it."""
    if epoch.merkle_root is None:
        return None
    leaves = tuple(load_leaves(session, epoch.id))
    tree = _cached_tree(epoch.merkle_root, leaves)
    if tree.root_hex != epoch.merkle_root:
        raise RuntimeError(
            f"stored leaves of epoch {epoch.epoch_date} do not rebuild its root {epoch.merkle_root}"
        )
    return tree
