"""Model registry and version beacon tables: published model versions and the beacon sequence.

`model_versions` holds every published version (the signed manifest, where its bytes live and its
rollout status). `beacon_state` is one row whose `sequence` grows on every change to what the
beacon serves; updating it first in a transaction also serializes publishers and promotions (row
lock on PostgreSQL, BEGIN IMMEDIATE on SQLite). `model_rollout_events` is the history of those
changes, one row per sequence number.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from noderr_core.tables.base import Base
from noderr_core.timeutil import utcnow


class ModelVersionStatus(enum.StrEnum):
    """staged → canary (rollout %) → active → retired; a rollback re-activates a retired version."""

    STAGED = "staged"
    CANARY = "canary"
    ACTIVE = "active"
    RETIRED = "retired"


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
        UniqueConstraint("name", "sha256", name="uq_model_versions_name_sha256"),
        CheckConstraint("rollout_percent >= 0 AND rollout_percent <= 100", name="rollout_percent_range"),
        Index("ix_model_versions_name_status", "name", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63))
    version: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    bucket: Mapped[str] = mapped_column(String(63))
    object_key: Mapped[str] = mapped_column(String(512))
    manifest_key: Mapped[str] = mapped_column(String(512))
    # The signed manifest exactly as nodes receive it (ModelManifest JSON + signature).
    manifest: Mapped[dict] = mapped_column(JSON)
    signature: Mapped[str] = mapped_column(Text)
    key_id: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=ModelVersionStatus.STAGED)
    rollout_percent: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(512))  # "reference:iris", a file path or s3:// URI
    parent_version: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)  # manifest created (packaged)
    published_at: Mapped[datetime] = mapped_column(default=utcnow)  # entered the registry (staged)
    status_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    published_by: Mapped[str | None] = mapped_column(String(320))


class BeaconState(Base):
    """One row (id=1): the beacon sequence, bumped on every publish, promotion and rollback."""

    __tablename__ = "beacon_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelRolloutEvent(Base):
    """What changed at each beacon sequence (publish, promote, rollout, retire, rollback)."""

    __tablename__ = "model_rollout_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, unique=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    model_name: Mapped[str] = mapped_column(String(63), index=True)
    version: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    rollout_percent: Mapped[int] = mapped_column(Integer, default=0)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_label: Mapped[str | None] = mapped_column(String(320))
    details: Mapped[dict] = mapped_column(JSON, default=dict)
