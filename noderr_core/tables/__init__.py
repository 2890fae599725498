"""All ORM models. Alembic migrations (noderr_core/migrations) are the only schema source.

Each domain has its own module; importing this package registers every table on Base.metadata.
"""

from noderr_core.tables.base import Base
from noderr_core.tables.onboarding import (
    AdminSession,
    AdminUser,
    ApplicationStatus,
    AuditLogEntry,
    BundleDownload,
    DownloadToken,
    LoginAttempt,
    Node,
    NodeStatus,
    Operator,
    OperatorApplication,
    WebhookDeadLetter,
)
from noderr_core.tables.outbox import OutboxAttempt, OutboxKind, OutboxMessage, OutboxStatus
from noderr_core.tables.telemetry import Heartbeat, HeartbeatSlot

# Domain modules owned by later work register their tables on import.
from noderr_core.tables import model_registry as _model_registry  # noqa: E402,F401
from noderr_core.tables import tasks as _tasks  # noqa: E402,F401
from noderr_core.tables import rewards as _rewards  # noqa: E402,F401
from noderr_core.tables import network as _network  # noqa: E402,F401
from noderr_core.tables import staking as _staking  # noqa: E402,F401
from noderr_core.tables import operators as _operators  # noqa: E402,F401

__all__ = [
    "AdminSession",
    "AdminUser",
    "ApplicationStatus",
    "AuditLogEntry",
    "Base",
    "BundleDownload",
    "DownloadToken",
    "Heartbeat",
    "HeartbeatSlot",
    "LoginAttempt",
    "Node",
    "NodeStatus",
    "Operator",
    "OperatorApplication",
    "OutboxAttempt",
    "OutboxKind",
    "OutboxMessage",
    "OutboxStatus",
    "WebhookDeadLetter",
]
