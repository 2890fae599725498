"""Reads of past reward epochs: the latest epochs, and the latest epoch with its top nodes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from noderr_core.tables.rewards import NodeReward, RewardEpoch


@dataclass
class EpochLeaderboard:
    """An epoch and its best-scoring nodes."""

    epoch: RewardEpoch
    top_nodes: list[NodeReward]


def latest_epoch_leaderboard(session: Session, top: int = 5) -> EpochLeaderboard | None:
    epoch = session.scalar(select(RewardEpoch).order_by(RewardEpoch.epoch_date.desc()).limit(1))
    if epoch is None:
        return None
    top_nodes = session.scalars(
        select(NodeReward).where(NodeReward.epoch_id == epoch.id)
        .order_by(NodeReward.score.desc()).limit(top)
    ).all()
    return EpochLeaderboard(epoch, list(top_nodes))


def recent_epochs(session: Session, limit: int = 60) -> list[RewardEpoch]:
    """The newest epochs first."""
    return list(session.scalars(select(RewardEpoch).order_by(RewardEpoch.epoch_date.desc()).limit(limit)))
