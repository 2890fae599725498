"""Node heartbeats: the telemetry every node reports, used for health, monitoring and rewards."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from noderr_core.tables.base import Base
from noderr_core.timeutil import utcnow


class Heartbeat(Base):
    __tablename__ = "heartbeats"
    __table_args__ = (Index("ix_heartbeats_node_received", "node_id", "received_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    uptime_seconds: Mapped[float] = mapped_column(Float, default=0)
    model_versions: Mapped[dict] = mapped_column(JSON, default=dict)  # name -> version
    inference_count: Mapped[int] = mapped_column(BigInteger, default=0)
    tasks_done: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)
    latency_p95_ms: Mapped[float | None] = mapped_column(Float)
    cpu_percent: Mapped[float | None] = mapped_column(Float)
    memory_mb: Mapped[float | None] = mapped_column(Float)
    agent_version: Mapped[str | None] = mapped_column(String(32))
    # onnxruntime execution provider the node serves with ("CUDAExecutionProvider", ...).
    execution_provider: Mapped[str | None] = mapped_column(String(64))


class HeartbeatSlot(Base):
    """One node's heartbeats in one 5-minute slot (`slot_start` = a multiple of 300 s, UTC).

    Written only by `noderr_core.telemetry.rollup_heartbeats` (delete-then-insert per slot range,
    so re-runs are idempotent). Raw `heartbeats` rows are pruned after the retention window; this
    table is what rewards ("proven slots") and dashboards read for anything older.
    """

    __tablename__ = "heartbeat_slots"
    __table_args__ = (Index("ix_heartbeat_slots_slot_start", "slot_start"),)

    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), primary_key=True)
    slot_start: Mapped[datetime] = mapped_column(primary_key=True)
    beats: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime]
    last_at: Mapped[datetime]
    # Counters are cumulative on the node, so the slot keeps their maximum.
    uptime_seconds: Mapped[float] = mapped_column(Float)
    inference_count: Mapped[int] = mapped_column(BigInteger)
    tasks_done: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    latency_p50_ms: Mapped[float | None] = mapped_column(Float)  # mean over the slot's beats
    latency_p95_ms: Mapped[float | None] = mapped_column(Float)  # max over the slot's beats
    cpu_percent: Mapped[float | None] = mapped_column(Float)  # mean
    memory_mb: Mapped[float | None] = mapped_column(Float)  # max
