"""Task network tables: clients and their API keys, tasks, replica assignments, node reliability.

The schema itself lives in migration 0003 (Alembic is the only schema source); these classes map it.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from noderr_core.tables.base import Base
from noderr_core.timeutil import utcnow


class TaskStatus(enum.StrEnum):
    QUEUED = "queued"  # no replica leased yet
    IN_PROGRESS = "in_progress"  # at least one replica leased or submitted
    VALIDATED = "validated"  # a quorum agreed (or a trusted node's unreplicated result)
    FAILED = "failed"  # no quorum within max_replicas, too many errors, or deadline passed


class AssignmentStatus(enum.StrEnum):
    LEASED = "leased"  # held by the node (possibly past lease_expires_at: see docs/tasks.md)
    SUBMITTED = "submitted"  # the node's result (or error) is in; final for this (task, node)
    EXPIRED = "expired"  # the lease ran out and the replica was given to another node
    RELEASED = "released"  # the node handed the lease back


class ResultOutcome(enum.StrEnum):
    PENDING = "pending"  # leased, or submitted and waiting for the quorum
    VALID = "valid"  # agrees with the validated result
    INVALID = "invalid"  # disagrees with the validated result
    ERROR = "error"  # the node reported an error instead of outputs
    INCONCLUSIVE = "inconclusive"  # the task failed without a quorum: nobody is judged


class Client(Base):
    """A customer that submits inference work through the client API."""

    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(320))
    disabled_at: Mapped[datetime | None]


class ClientApiKey(Base):
    """`ck_<key_id>_<secret>`: only the sha256 is stored; revoked keys stay for the audit trail."""

    __tablename__ = "client_api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        # The lease scan: per model, priority then age, only undecided tasks (leasable_at set).
        Index(
            "ix_tasks_leasable",
            "model_name",
            text("priority DESC"),
            "created_at",
            "leasable_at",
            postgresql_where=text("leasable_at IS NOT NULL"),
            sqlite_where=text("leasable_at IS NOT NULL"),
        ),
        Index(
            "ix_tasks_open_deadline",
            "deadline_at",
            postgresql_where=text("leasable_at IS NOT NULL AND deadline_at IS NOT NULL"),
            sqlite_where=text("leasable_at IS NOT NULL AND deadline_at IS NOT NULL"),
        ),
        Index("ix_tasks_client_created", "client_id", "created_at"),
        Index("ix_tasks_status_decided", "status", "decided_at"),
        Index(
            "ix_tasks_target_node_open",
            "target_node_id",
            postgresql_where=text("target_node_id IS NOT NULL AND leasable_at IS NOT NULL"),
            sqlite_where=text("target_node_id IS NOT NULL AND leasable_at IS NOT NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "t_" + 24 hex
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    model_name: Mapped[str] = mapped_column(String(128))
    inputs: Mapped[dict] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    deadline_at: Mapped[datetime | None]
    # The client's validation policy.
    replicas: Mapped[int] = mapped_column(Integer, default=2)
    quorum: Mapped[int] = mapped_column(Integer, default=2)
    tolerance: Mapped[float] = mapped_column(Float, default=1e-5)
    max_replicas: Mapped[int] = mapped_column(Integer, default=4)
    adaptive: Mapped[bool] = mapped_column(Boolean, default=True)
    # How many non-error results the task currently wants: starts at `replicas` (or 1 when leased
    # unreplicated to a trusted node) and grows on disagreement up to max_replicas.
    replicas_needed: Mapped[int] = mapped_column(Integer, default=2)
    # Earliest time a replica slot may be free (NULL once decided). Never later than the truth:
    # the lease query re-checks the slots, this column only keeps full tasks out of the scan.
    leasable_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default=TaskStatus.QUEUED)
    result: Mapped[dict | None] = mapped_column(JSON)
    agreeing_node_ids: Mapped[list | None] = mapped_column(JSON)
    validated_by: Mapped[str | None] = mapped_column(String(16))  # quorum | unreplicated
    fail_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    # Challenge tasks (noderr_core/tasks/challenges.py): the known answer, never sent to nodes, and
    # the one node that may lease the task. NULL for client tasks.
    challenge_expected: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    target_node_id: Mapped[str | None] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))


class TaskAssignment(Base):
    """One replica of a task given to one node (at most one per (task, node))."""

    __tablename__ = "task_assignments"
    __table_args__ = (
        UniqueConstraint("task_id", "node_id", name="uq_task_assignments_task_node"),
        Index("ix_task_assignments_node_status", "node_id", "status"),
        Index("ix_task_assignments_judged", "outcome", "judged_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    status: Mapped[str] = mapped_column(String(16), default=AssignmentStatus.LEASED)
    unreplicated: Mapped[bool] = mapped_column(Boolean, default=False)
    leased_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_expires_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    model_version: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float | None] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16), default=ResultOutcome.PENDING)
    judged_at: Mapped[datetime | None]


class NodeReliability(Base):
    """Per-node validation record: feeds adaptive replication, quotas, rewards and admin pages."""

    __tablename__ = "node_reliability"

    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True)
    consecutive_valid: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_invalid: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_errors: Mapped[int] = mapped_column(Integer, default=0)
    results_count: Mapped[int] = mapped_column(Integer, default=0)
    valid_count: Mapped[int] = mapped_column(Integer, default=0)
    invalid_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    unreplicated_count: Mapped[int] = mapped_column(Integer, default=0)
    turnaround_ms_avg: Mapped[float | None] = mapped_column(Float)
    daily_quota: Mapped[int] = mapped_column(Integer)
    quota_day: Mapped[str | None] = mapped_column(String(10))  # UTC date, YYYY-MM-DD
    quota_used: Mapped[int] = mapped_column(Integer, default=0)
    last_valid_at: Mapped[datetime | None]
    last_invalid_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    blocked_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
