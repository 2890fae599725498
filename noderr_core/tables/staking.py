"""Stake and slashing tables: the chain's bonds as last observed, and slashing cases.

`node_stakes` is a cache of the Stake contract written only by the stake observer (a Dagster job
reading Stake events), so the lease path checks a bond with one primary-key read and never an RPC.
`slashing_cases` holds every case with its evidence, from opening through the challenge window to
the slash (or its dismissal). The schema lives in migration 0009.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from noderr_core.tables.base import Base
from noderr_core.tables.rewards import TokenAmount
from noderr_core.timeutil import utcnow


class NodeStake(Base):
    """A node's bond on the Stake contract, as of `observed_block`."""

    __tablename__ = "node_stakes"

    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True)
    operator_wallet: Mapped[str | None] = mapped_column(String(42))
    amount: Mapped[int] = mapped_column(TokenAmount(), default=0)
    min_stake: Mapped[int] = mapped_column(TokenAmount(), default=0)
    state: Mapped[str] = mapped_column(String(16))  # noderr_core.staking.chain.StakeState
    withdrawable_at: Mapped[datetime | None]
    observed_block: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class StakeSyncCursor(Base):
    """The last block of the Stake contract whose events the observer has applied."""

    __tablename__ = "stake_sync_cursors"

    contract: Mapped[str] = mapped_column(String(42), primary_key=True)
    chain_id: Mapped[int] = mapped_column(BigInteger)
    last_block: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class SlashingCaseStatus(enum.StrEnum):
    OPEN = "open"  # in the challenge window: an admin may dismiss it
    DISMISSED = "dismissed"  # an admin dismissed it: nothing is slashed
    SLASHING = "slashing"  # the window ended: the slash is queued in the chain outbox
    SLASHED = "slashed"  # mined: slashed_amount went to the treasury
    FAILED = "failed"  # the contract refused (e.g. the stake was withdrawn): see failure_reason


ACTIVE_CASE_STATUSES = (SlashingCaseStatus.OPEN.value, SlashingCaseStatus.SLASHING.value)


class SlashingCase(Base):
    __tablename__ = "slashing_cases"
    __table_args__ = (
        # One case at a time per node: a second one cannot be opened while one is open or slashing.
        Index(
            "uq_slashing_cases_active_node",
            "node_id",
            unique=True,
            sqlite_where=text("status IN ('open', 'slashing')"),
            postgresql_where=text("status IN ('open', 'slashing')"),
        ),
        Index("ix_slashing_cases_status_challenge", "status", "challenge_ends_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=SlashingCaseStatus.OPEN)
    # sha256 of the evidence's assignment ids: the same evidence never opens two cases.
    evidence_key: Mapped[str] = mapped_column(String(64), unique=True)
    # [{task_id, assignment_id, kind, judged_at, node_result, validated_result, agreeing_node_ids,
    #   agreeing_operator_ids}]
    evidence: Mapped[list] = mapped_column(JSON)
    invalid_count: Mapped[int] = mapped_column(Integer)
    judged_count: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]  # judged_at of the newest evidence: later cases start after it
    fraction_bps: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    challenge_ends_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(320))
    dismiss_reason: Mapped[str | None] = mapped_column(Text)
    chain_case_id: Mapped[str] = mapped_column(String(66))  # bytes32 hex passed to Stake.slash
    outbox_id: Mapped[int | None] = mapped_column(Integer)
    slashed_amount: Mapped[int | None] = mapped_column(TokenAmount())
    tx_hash: Mapped[str | None] = mapped_column(String(66))
    failure_reason: Mapped[str | None] = mapped_column(Text)
