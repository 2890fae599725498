"""Publishing an epoch's root: the last gate before the chain outbox.

`queue_root_publication` re-checks every payout invariant (rewards.invariants) and refuses a root
that breaks one, refuses an older root once a later one is queued (it would owe wallets less), seals
the epochs it covers and queues the root once per (epoch, root). Kept apart from `rewards.tree`
(building the cumulative tree), which the invariant checks themselves read.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from noderr_core.outbox import enqueue
from noderr_core.rewards.invariants import check_epoch
from noderr_core.rewards.tree import (
    PUBLISH_ACTION,
    EpochNotComputed,
    InvariantViolation,
    PublishDecision,
    apply_outbox_state,
    epoch_number,
    get_epoch,
    latest_published_epoch,
    publish_idempotency_key,
    seal_epochs_through,
)
from noderr_core.tables import OutboxKind, OutboxStatus
from noderr_core.tables.rewards import EpochStatus, RewardEpoch


def publication_problems(session: Session, epoch: RewardEpoch) -> list[str]:
    return [p for problems in check_epoch(session, epoch.epoch_date).values() for p in problems]


def queue_root_publication(session: Session, epoch_date: date) -> PublishDecision:
    """Enqueue the epoch's root for the chain relay, once per (epoch, root); the caller commits."""
    epoch = get_epoch(session, epoch_date)
    if epoch.status == EpochStatus.COMPUTED or epoch.tree_built_at is None:
        raise EpochNotComputed(f"the tree of epoch {epoch_date.isoformat()} is not built yet")
    if epoch.merkle_root is None:
        return PublishDecision(epoch_date, False, epoch.status, "nobody has earned anything yet")
    later = session.scalar(
        select(RewardEpoch.epoch_date)
        .where(RewardEpoch.epoch_date > epoch_date, RewardEpoch.publish_outbox_id.is_not(None))
        .order_by(RewardEpoch.epoch_date.desc()).limit(1)
    )
    if later is not None:
        # A later root is already queued or on-chain: an older root would owe wallets less than
        # it. This epoch's shares reach the chain through the next root built after it (trees are
        # cumulative over every computed epoch).
        return PublishDecision(
            epoch_date, False, epoch.status,
            f"superseded: the root of epoch {later.isoformat()} is already queued or on-chain; the "
            "next published root includes this epoch's shares",
        )
    latest = latest_published_epoch(session)
    if (latest is not None and latest.epoch_date < epoch_date
            and latest.merkle_root == epoch.merkle_root):
        return PublishDecision(
            epoch_date, False, epoch.status,
            f"unchanged: the root equals epoch {latest.epoch_date.isoformat()}'s, already on-chain",
        )
    if epoch.publish_outbox_id is None:
        problems = publication_problems(session, epoch)
        if problems:
            raise InvariantViolation(
                f"epoch {epoch_date.isoformat()}'s root is not queued: " + "; ".join(problems))
    key = publish_idempotency_key(epoch_date, epoch.merkle_root)
    msg = enqueue(
        session,
        kind=OutboxKind.CHAIN,
        idempotency_key=key,
        payload={
            "action": PUBLISH_ACTION,
            "epoch": epoch_number(epoch_date),
            "epoch_date": epoch_date.isoformat(),
            "root": epoch.merkle_root,
            # uint256 as a string: JSON readers in other languages lose precision past 2^53.
            "total_cumulative": str(epoch.total_cumulative),
        },
        subject_type="reward_epoch",
        subject_id=epoch_date.isoformat(),
    )
    epoch.publish_outbox_id = msg.id
    seal_epochs_through(session, epoch_date)
    apply_outbox_state(epoch, msg)
    session.flush()
    return PublishDecision(epoch_date, msg.status != OutboxStatus.SENT, epoch.status,
                           f"outbox row {msg.id} is {msg.status}", msg.id, key)
