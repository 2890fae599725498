"""The operator application state machine and the admin's decision.

received → pending_review (screened) → approved / rejected → provisioned → active

`decide_application` only records the decision (status, who, when, why) and its audit entry; the
decision sensor in noderr_pipelines carries it out (provisioning or the rejection email).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.tables import AdminUser, ApplicationStatus, OperatorApplication
from noderr_core.timeutil import utcnow

# Which status may follow which. Anything else is a bug or a double click.
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    ApplicationStatus.RECEIVED: {ApplicationStatus.SCREENED, ApplicationStatus.PENDING_REVIEW,
                                 ApplicationStatus.REJECTED},
    ApplicationStatus.SCREENED: {ApplicationStatus.PENDING_REVIEW, ApplicationStatus.REJECTED},
    ApplicationStatus.PENDING_REVIEW: {ApplicationStatus.APPROVED, ApplicationStatus.REJECTED},
    ApplicationStatus.APPROVED: {ApplicationStatus.PROVISIONED},
    ApplicationStatus.REJECTED: set(),
    ApplicationStatus.PROVISIONED: {ApplicationStatus.ACTIVE},
    ApplicationStatus.ACTIVE: set(),
}

MAX_REASON_LENGTH = 2000


class DecisionError(ValueError):
    """An admin decision that cannot be applied; the message is shown to the admin as is."""


class InvalidTransition(ValueError):
    pass


def set_application_status(app: OperatorApplication, new_status: str) -> None:
    """Move the application to `new_status`, bumping status_version (sensors key runs on it)."""
    current = ApplicationStatus(app.status)
    target = ApplicationStatus(new_status)
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition(f"application {app.id}: {current} → {target} is not allowed")
    app.status = target
    app.status_version = (app.status_version or 1) + 1
    app.updated_at = utcnow()


def get_application_for_update(session: Session, application_id: int) -> OperatorApplication | None:
    """Load and row-lock the application (PostgreSQL FOR UPDATE; SQLite's BEGIN IMMEDIATE serializes)."""
    stmt = select(OperatorApplication).where(OperatorApplication.id == application_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.scalar(stmt.execution_options(populate_existing=True))


def decide_application(
    session: Session,
    *,
    application_id: int,
    actor: Actor,
    decision: Literal["approve", "reject"],
    reason: str | None,
) -> OperatorApplication:
    """Record an approval or rejection of a pending application (audited); raises DecisionError."""
    if decision not in ("approve", "reject"):
        raise DecisionError(f"unknown decision {decision!r}: use 'approve' or 'reject'")
    reason = (reason or "").strip() or None
    if decision == "reject" and not reason:
        raise DecisionError("a rejection needs a reason: it is sent to the applicant")
    if reason and len(reason) > MAX_REASON_LENGTH:
        raise DecisionError(f"the reason is too long ({len(reason)} characters, at most {MAX_REASON_LENGTH})")
    app = get_application_for_update(session, application_id)
    if app is None:
        raise DecisionError(f"application {application_id} does not exist")
    if app.status != ApplicationStatus.PENDING_REVIEW:
        raise DecisionError(
            f"application {application_id} is {app.status}, not pending review: "
            "only a pending application can be approved or rejected"
        )
    target = ApplicationStatus.APPROVED if decision == "approve" else ApplicationStatus.REJECTED
    set_application_status(app, target)
    app.decision_reason = reason
    app.decided_at = utcnow()
    app.decided_by_id = _admin_id(session, actor)
    audit(session, actor, f"application.{'approved' if decision == 'approve' else 'rejected'}",
          "application", app.id, reason=reason, status_version=app.status_version)
    session.flush()
    return app


def _admin_id(session: Session, actor: Actor) -> int | None:
    if actor.type != "admin" or actor.id is None:
        return None
    try:
        admin_id = int(actor.id)
    except ValueError:
        return None
    return admin_id if session.get(AdminUser, admin_id) is not None else None


def applications_awaiting_screening(session: Session, *, limit: int) -> list[tuple[int, int]]:
    """(id, status_version) of received applications, oldest first (read-only; the screening sensor)."""
    rows = session.execute(
        select(OperatorApplication.id, OperatorApplication.status_version)
        .where(OperatorApplication.status == ApplicationStatus.RECEIVED)
        .order_by(OperatorApplication.id).limit(limit)
    )
    return [(r.id, r.status_version) for r in rows]


def decisions_awaiting_execution(session: Session, *, limit: int) -> list[tuple[int, int]]:
    """(id, status_version) of approved/rejected applications not yet carried out (read-only)."""
    rows = session.execute(
        select(OperatorApplication.id, OperatorApplication.status_version)
        .where(OperatorApplication.status.in_([ApplicationStatus.APPROVED, ApplicationStatus.REJECTED]),
               OperatorApplication.processed_at.is_(None))
        .order_by(OperatorApplication.id).limit(limit)
    )
    return [(r.id, r.status_version) for r in rows]


def application_status_counts(session: Session) -> dict[str, int]:
    """Applications per status, every status present (zeros included)."""
    rows = session.execute(
        select(OperatorApplication.status, func.count()).group_by(OperatorApplication.status)
    ).all()
    counts = {s.value: 0 for s in ApplicationStatus}
    counts.update({status: n for status, n in rows})
    return counts


class LinkReissueRefused(ValueError):
    """A new download link cannot be issued for this application (yet); `reason` says why:
    "not_found", "not_provisioned" or "node_required"."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def node_for_link_reissue(session: Session, *, application_id: int, node_id: str | None) -> str:
    """The node of the application that gets a new single-use download link.

    A link can only be re-issued once the pipeline has provisioned the application's nodes; an
    application with one node needs no choice, with several the caller names the node.
    """
    from noderr_core.tables import Node

    app = session.get(OperatorApplication, application_id)
    if app is None:
        raise LinkReissueRefused(f"application {application_id} does not exist", "not_found")
    if app.status not in (ApplicationStatus.PROVISIONED, ApplicationStatus.ACTIVE):
        raise LinkReissueRefused(
            f"application {application_id} is {app.status}: a download link can only be "
            "re-issued once the pipeline has provisioned the node", "not_provisioned")
    nodes = set(session.scalars(select(Node.id).where(Node.application_id == app.id)))
    if node_id is None and len(nodes) == 1:
        node_id = next(iter(nodes))
    if node_id not in nodes:
        raise LinkReissueRefused(f"choose which node of application {application_id} gets a new link",
                                 "node_required")
    return node_id
