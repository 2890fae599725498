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
