"""The audit log: one row per admin or pipeline action, written in the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from noderr_core.tables import AuditLogEntry


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


class Actor:
    """Who did something: an admin (id + email), a pipeline run, or the system."""

    __slots__ = ("type", "id", "label")

    def __init__(self, type: str, id: str | int | None = None, label: str | None = None):
        self.type = type
        self.id = None if id is None else str(id)
        self.label = label

    @classmethod
    def admin(cls, admin_user) -> "Actor":
        return cls("admin", admin_user.id, admin_user.email)

    @classmethod
    def pipeline(cls, run_id: str | None = None, label: str = "dagster") -> "Actor":
        return cls("pipeline", run_id, label)

    @classmethod
    def system(cls, label: str = "system") -> "Actor":
        return cls("system", None, label)


def audit(
    session: Session,
    actor: Actor,
    action: str,
    subject_type: str,
    subject_id: str | int,
    **details: Any,
) -> AuditLogEntry:
    return record_audit(
        session,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label,
        action=action,
        subject_type=subject_type,
        subject_id=subject_id,
        details=details,
    )


def audit_filter_choices(session: Session) -> tuple[list[str], list[str]]:
    """The distinct actions and subject types in the log (for the audit page's filters)."""
    actions = list(session.scalars(select(AuditLogEntry.action).distinct().order_by(AuditLogEntry.action)))
    subjects = list(session.scalars(
        select(AuditLogEntry.subject_type).distinct().order_by(AuditLogEntry.subject_type)
    ))
    return actions, subjects
