"""Network monitoring: alerts opened when a node stops reporting, closed when it recovers."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from noderr_core.tables.base import Base
from noderr_core.timeutil import utcnow


class AlertKind(enum.StrEnum):
    NODE_OFFLINE = "node_offline"  # no heartbeat for longer than heartbeat_offline_after_seconds


class Alert(Base):
    """One incident: open while `closed_at` is NULL. At most one open alert per (kind, node)."""

    __tablename__ = "alerts"
    __table_args__ = (
        # The backstop for the health job's idempotency: a second open alert for the same
        # incident cannot exist even if two runs race.
        Index(
            "uq_alerts_open_kind_node",
            "kind",
            "node_id",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    closed_at: Mapped[datetime | None]
    # Why it opened (last heartbeat, threshold) and, once closed, why it closed.
    details: Mapped[dict] = mapped_column(JSON, default=dict)
