"""Reward tables: epochs, per-node and per-wallet rewards, cumulative Merkle leaves, chain txs.

Token amounts are integers in base units (18 decimals), larger than 64 bits: `TokenAmount` stores
them as NUMERIC(78, 0) on PostgreSQL (exact, summable in SQL) and as decimal text on SQLite (whose
integers stop at 2^63), and always returns Python ints.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from noderr_core.tables.base import Base
from noderr_core.timeutil import utcnow


class TokenAmount(TypeDecorator):
    """A non-negative integer token amount of up to 78 digits (uint256)."""

    impl = String(80)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(78, 0))
        return dialect.type_descriptor(String(80))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise TypeError(f"token amounts are integers, got {type(value).__name__}")
        value = int(value)
        if value < 0:
            raise ValueError("token amounts cannot be negative")
        return Decimal(value) if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return int(value)


class EpochStatus(enum.StrEnum):
    COMPUTED = "computed"  # shares computed, tree not built yet
    ROOT_READY = "root_ready"  # cumulative tree built, root not queued (nothing to publish / superseded)
    PUBLISH_QUEUED = "publish_queued"  # a publish_root chain outbox row is waiting for the relay
    PUBLISHED = "published"  # the root is on-chain
    PUBLISH_FAILED = "publish_failed"  # the relay gave up or the contract refused (see publish_error)


class RewardEpoch(Base):
    """One UTC day of rewards: the pool, how it was split, and the cumulative root through it."""

    __tablename__ = "reward_epochs"

    id: Mapped[int] = mapped_column(primary_key=True)
    epoch_date: Mapped[date] = mapped_column(Date, unique=True)
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    pool_amount: Mapped[int] = mapped_column(TokenAmount())
    distributed_amount: Mapped[int] = mapped_column(TokenAmount())
    node_count: Mapped[int] = mapped_column(Integer, default=0)
    operator_count: Mapped[int] = mapped_column(Integer, default=0)
    total_score: Mapped[int] = mapped_column(BigInteger, default=0)
    # Scoring weights used, so a published epoch explains itself even after the weights change.
    scoring: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=EpochStatus.COMPUTED)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    merkle_root: Mapped[str | None] = mapped_column(String(66))
    total_cumulative: Mapped[int | None] = mapped_column(TokenAmount())
    leaf_count: Mapped[int | None] = mapped_column(Integer)
    tree_built_at: Mapped[datetime | None]
    publish_outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="SET NULL"))
    published_tx_hash: Mapped[str | None] = mapped_column(String(66))
    published_at: Mapped[datetime | None]
    publish_error: Mapped[str | None] = mapped_column(Text)
    # The scoring policy (noderr_core/rewards/scoring.py SCORING_POLICY_VERSION) of the shares.
    policy_version: Mapped[str | None] = mapped_column(String(32))
    # Set when a root covering this epoch is queued for the chain: from then on the epoch is final.
    sealed_at: Mapped[datetime | None]


class NodeReward(Base):
    """A node's share of one epoch and why: uptime, validated tasks, penalties."""

    __tablename__ = "node_rewards"
    __table_args__ = (
        UniqueConstraint("epoch_id", "node_id", name="uq_node_rewards_epoch_node"),
        Index("ix_node_rewards_node_epoch", "node_id", "epoch_id"),
        Index("ix_node_rewards_wallet_epoch", "operator_wallet", "epoch_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    epoch_id: Mapped[int] = mapped_column(ForeignKey("reward_epochs.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    operator_wallet: Mapped[str] = mapped_column(String(42))
    heartbeat_count: Mapped[int] = mapped_column(BigInteger, default=0)
    uptime_slots: Mapped[int] = mapped_column(Integer, default=0)
    eligible_slots: Mapped[int] = mapped_column(Integer, default=0)
    tasks_valid: Mapped[int] = mapped_column(BigInteger, default=0)
    tasks_invalid: Mapped[int] = mapped_column(BigInteger, default=0)
    tasks_error: Mapped[int] = mapped_column(BigInteger, default=0)
    uptime_points: Mapped[int] = mapped_column(BigInteger, default=0)
    task_points: Mapped[int] = mapped_column(BigInteger, default=0)
    invalid_penalty: Mapped[int] = mapped_column(BigInteger, default=0)
    downtime_penalty: Mapped[int] = mapped_column(BigInteger, default=0)
    proven_slots: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    challenges_valid: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    challenges_invalid: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error_penalty: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    score: Mapped[int] = mapped_column(BigInteger, default=0)
    amount: Mapped[int] = mapped_column(TokenAmount())


class OperatorReward(Base):
    """A wallet's total for one epoch (the sum of its nodes' amounts)."""

    __tablename__ = "operator_rewards"
    __table_args__ = (
        UniqueConstraint("epoch_id", "wallet", name="uq_operator_rewards_epoch_wallet"),
        Index("ix_operator_rewards_wallet_epoch", "wallet", "epoch_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    epoch_id: Mapped[int] = mapped_column(ForeignKey("reward_epochs.id", ondelete="CASCADE"))
    wallet: Mapped[str] = mapped_column(String(42))
    node_count: Mapped[int] = mapped_column(Integer, default=0)
    amount: Mapped[int] = mapped_column(TokenAmount())


class RewardLeaf(Base):
    """One leaf of an epoch's cumulative tree: (wallet, everything earned through the epoch).

    Proofs are recomputed from the leaves (a tree over 100k wallets builds in about a second),
    so the table holds one row per wallet per epoch rather than one proof per wallet per epoch.
    """

    __tablename__ = "reward_leaves"
    __table_args__ = (
        UniqueConstraint("epoch_id", "wallet", name="uq_reward_leaves_epoch_wallet"),
        Index("ix_reward_leaves_wallet_epoch", "wallet", "epoch_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    epoch_id: Mapped[int] = mapped_column(ForeignKey("reward_epochs.id", ondelete="CASCADE"))
    wallet: Mapped[str] = mapped_column(String(42))
    cumulative_amount: Mapped[int] = mapped_column(TokenAmount())


class ChainTransaction(Base):
    """What the chain relay did for an outbox row: a mined tx, a revert, or a no-op after the
    on-chain check found the effect already there. Shown in Dagster and the admin dashboard."""

    __tablename__ = "chain_transactions"
    __table_args__ = (Index("ix_chain_transactions_outbox", "outbox_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str | None] = mapped_column(String(80))  # node id or epoch date
    outcome: Mapped[str] = mapped_column(String(16))  # mined | reverted | already_done | superseded
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    gas_used: Mapped[int | None] = mapped_column(BigInteger)
    revert_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
