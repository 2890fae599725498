"""The audit log: one row per admin or pipeline action, written in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from noderr_core.models import AuditLogEntry


def record_audit(
    session: Session,
    *,
    actor_type: str,
    actor_id: str | int | None,
    action: str,
    subject_type: str,
    subject_id: str | int,
    actor_label: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditLogEntry:
    entry = AuditLogEntry(
        actor_type=actor_type,
        actor_id=None if actor_id is None else str(actor_id),
        actor_label=actor_label,
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        details=details or {},
    )
    session.add(entry)
    return entry
