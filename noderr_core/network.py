"""Node health: stale nodes go offline with an alert and emails; a new heartbeat closes the alert.

The health sensor (noderr_pipelines/defs/network) only *reads* through `find_stale_nodes` and
`find_closable_alerts`; the health job *acts* through `mark_offline` and `close_alert`, which
re-check their condition atomically, so a run that is repeated, or races a heartbeat, changes
nothing twice:

- `mark_offline` is a conditional UPDATE (``status = online AND last heartbeat older than the
  cutoff``): of two racing runs only one sees a row change, and a heartbeat that lands first wins.
- `close_alert` is a conditional UPDATE on ``closed_at IS NULL``.
- Emails go through the outbox with one idempotency key per (alert, event, recipient), so each
  person gets at most one "offline" and one "recovered" email per alert.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from noderr_core.audit import Actor, audit
from noderr_core.email import enqueue_email
from noderr_core.tables import AdminUser, Heartbeat, Node, NodeStatus, Operator, OutboxMessage, OutboxStatus
from noderr_core.tables.network import Alert, AlertKind
from noderr_core.security import sha256_hex
from noderr_core.settings import Settings
from noderr_core.timeutil import utcnow

OFFLINE_EMAIL_TEMPLATE = "node_offline"
RECOVERED_EMAIL_TEMPLATE = "node_recovered"

# Why an open alert may be closed.
CLOSE_RECOVERED = "recovered"  # the node sent a heartbeat after the alert opened
CLOSE_NODE_SUSPENDED = "node_suspended"  # an admin stopped the node: nothing left to watch
CLOSE_NODE_REMOVED = "node_removed"


@dataclass(frozen=True)
class StaleNode:
    node_id: str
    last_heartbeat_at: datetime | None


@dataclass(frozen=True)
class ClosableAlert:
    alert_id: int
    node_id: str
    reason: str  # CLOSE_RECOVERED | CLOSE_NODE_SUSPENDED | CLOSE_NODE_REMOVED


@dataclass
class HealthReport:
    """What one health run changed (for the run's metadata and logs)."""

    marked_offline: list[str] = field(default_factory=list)
    alerts_opened: list[int] = field(default_factory=list)
    alerts_closed: list[int] = field(default_factory=list)
    unchanged_nodes: list[str] = field(default_factory=list)  # recovered or handled before the run
    unchanged_alerts: list[int] = field(default_factory=list)
    emails_queued: int = 0


def offline_cutoff(now: datetime, offline_after_seconds: int) -> datetime:
    return now - timedelta(seconds=offline_after_seconds)


def _stale_condition(cutoff: datetime):
    # An online node with no heartbeat at all (only possible for rows made outside the heartbeat
    # path) counts as stale once it is older than the threshold.
    return and_(
        Node.status == NodeStatus.ONLINE,
        or_(
            Node.last_heartbeat_at < cutoff,
            and_(Node.last_heartbeat_at.is_(None), Node.created_at < cutoff),
        ),
    )


def find_stale_nodes(
    session: Session, *, offline_after_seconds: int, now: datetime | None = None,
    limit: int | None = None,
) -> list[StaleNode]:
    """Online nodes whose last heartbeat is older than the threshold, oldest first."""
    cutoff = offline_cutoff(now or utcnow(), offline_after_seconds)
    stmt = (
        select(Node.id, Node.last_heartbeat_at)
        .where(_stale_condition(cutoff))
        .order_by(Node.last_heartbeat_at.asc(), Node.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [StaleNode(node_id, hb) for node_id, hb in session.execute(stmt)]


def find_closable_alerts(session: Session, *, limit: int | None = None) -> list[ClosableAlert]:
    """Open alerts whose node is back (online with a heartbeat after the alert opened) or gone."""
    stmt = (
        select(Alert.id, Alert.node_id, Node.status)
        .join(Node, Node.id == Alert.node_id)
        .where(
            Alert.closed_at.is_(None),
            or_(
                and_(Node.status == NodeStatus.ONLINE, Node.last_heartbeat_at > Alert.opened_at),
                Node.status.in_([NodeStatus.SUSPENDED, NodeStatus.REMOVED]),
            ),
        )
        .order_by(Alert.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        ClosableAlert(alert_id, node_id, _close_reason(status))
        for alert_id, node_id, status in session.execute(stmt)
    ]


def _close_reason(node_status: str) -> str:
    if node_status == NodeStatus.SUSPENDED:
        return CLOSE_NODE_SUSPENDED
    if node_status == NodeStatus.REMOVED:
        return CLOSE_NODE_REMOVED
    return CLOSE_RECOVERED


def open_alert_for(session: Session, node_id: str, kind: str = AlertKind.NODE_OFFLINE) -> Alert | None:
    return session.scalar(
        select(Alert).where(Alert.node_id == node_id, Alert.kind == kind, Alert.closed_at.is_(None))
    )


def list_alerts(session: Session, *, open_only: bool = False, node_id: str | None = None,
                limit: int = 100) -> list[Alert]:
    """Most recent alerts first (for the admin dashboard)."""
    stmt = select(Alert).order_by(Alert.opened_at.desc(), Alert.id.desc()).limit(limit)
    if open_only:
        stmt = stmt.where(Alert.closed_at.is_(None))
    if node_id is not None:
        stmt = stmt.where(Alert.node_id == node_id)
    return list(session.scalars(stmt))


def alert_recipients(session: Session, settings: Settings) -> list[str]:
    """The admins who get network alerts: NODERR_ADMIN_ALERT_EMAILS, else every active admin."""
    configured = [e.strip() for e in settings.admin_alert_emails.split(",") if e.strip()]
    if configured:
        return sorted(set(configured))
    return sorted(session.scalars(select(AdminUser.email).where(AdminUser.is_active.is_(True))))


def mark_offline(
    session: Session, *, node_id: str, offline_after_seconds: int, settings: Settings,
    actor: Actor, now: datetime | None = None, admin_recipients: list[str] | None = None,
) -> Alert | None:
    """Take a stale node offline, open its alert and queue the emails; None if nothing changed.

    Nothing changes when the node is no longer stale (a heartbeat arrived), is not online, or was
    already taken offline by an earlier run. `admin_recipients` (default: `alert_recipients`)
    lets a caller handling many nodes look the admins up once.
    """
    alert, _opened = _mark_offline(session, node_id=node_id,
                                   offline_after_seconds=offline_after_seconds, settings=settings,
                                   actor=actor, now=now, admin_recipients=admin_recipients)
    return alert


def _mark_offline(
    session: Session, *, node_id: str, offline_after_seconds: int, settings: Settings,
    actor: Actor, now: datetime | None, admin_recipients: list[str] | None,
) -> tuple[Alert | None, bool]:
    """`mark_offline`, also telling whether the alert was opened by this call."""
    now = now or utcnow()
    cutoff = offline_cutoff(now, offline_after_seconds)
    node = session.get(Node, node_id)
    if node is None:
        return None, False
    last = node.last_heartbeat_at
    reason = (
        f"no heartbeat for more than {offline_after_seconds}s"
        + (f" (last at {last.isoformat(timespec='seconds')})" if last else " (never reported)")
    )
    changed = session.execute(
        update(Node)
        .where(Node.id == node_id, _stale_condition(cutoff))
        .values(status=NodeStatus.OFFLINE, status_reason=reason)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        return None, False
    # The row changed in SQL; record the new values as loaded (not dirty: no second UPDATE).
    set_committed_value(node, "status", NodeStatus.OFFLINE.value)
    set_committed_value(node, "status_reason", reason)
    audit(session, actor, "node.offline", "node", node_id, reason=reason,
          last_heartbeat_at=last.isoformat() if last else None)

    # A node that flapped (heartbeat, then stale again) before the previous alert was closed keeps
    # that alert: the people concerned already know, and they hear once when it recovers.
    existing = open_alert_for(session, node_id)
    if existing is not None:
        return existing, False
    alert = Alert(
        kind=AlertKind.NODE_OFFLINE,
        node_id=node_id,
        opened_at=now,
        details={
            "last_heartbeat_at": last.isoformat() if last else None,
            "offline_after_seconds": offline_after_seconds,
            "reason": reason,
        },
    )
    session.add(alert)
    session.flush()
    audit(session, actor, "alert.opened", "alert", alert.id, kind=alert.kind, node_id=node_id)
    _queue_alert_emails(session, alert, node, settings, OFFLINE_EMAIL_TEMPLATE, admin_recipients)
    return alert, True


def close_alert(
    session: Session, *, alert_id: int, settings: Settings, actor: Actor,
    now: datetime | None = None, admin_recipients: list[str] | None = None,
) -> Alert | None:
    """Close an alert whose node recovered (and queue the recovery emails) or was suspended/removed.

    None if the alert is already closed or its node is still down.
    """
    now = now or utcnow()
    alert = session.get(Alert, alert_id)
    if alert is None or alert.closed_at is not None:
        return None
    node = session.get(Node, alert.node_id)
    recovered = (
        node.status == NodeStatus.ONLINE
        and node.last_heartbeat_at is not None
        and node.last_heartbeat_at > alert.opened_at
    )
    if not recovered and node.status not in (NodeStatus.SUSPENDED, NodeStatus.REMOVED):
        return None
    reason = CLOSE_RECOVERED if recovered else _close_reason(node.status)
    details = dict(alert.details or {})
    details["closed_reason"] = reason
    if recovered:
        details["recovered_heartbeat_at"] = node.last_heartbeat_at.isoformat()
    changed = session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.closed_at.is_(None))
        .values(closed_at=now, details=details)
        .execution_options(synchronize_session=False)
    ).rowcount
    if changed != 1:
        return None
    session.refresh(alert)
    audit(session, actor, "alert.closed", "alert", alert.id, node_id=node.id, reason=reason)
    if recovered:
        _queue_alert_emails(session, alert, node, settings, RECOVERED_EMAIL_TEMPLATE,
                            admin_recipients)
    return alert


def apply_node_health(
    session: Session, *, node_ids: list[str], alert_ids: list[int], offline_after_seconds: int,
    settings: Settings, actor: Actor, now: datetime | None = None,
) -> HealthReport:
    """What the health job does with the sensor's decision; safe to run any number of times."""
    report = HealthReport()
    before = session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
    admins = alert_recipients(session, settings) if (node_ids or alert_ids) else []
    for node_id in node_ids:
        alert, opened = _mark_offline(
            session, node_id=node_id, offline_after_seconds=offline_after_seconds,
            settings=settings, actor=actor, now=now, admin_recipients=admins,
        )
        if alert is None:
            report.unchanged_nodes.append(node_id)
            continue
        report.marked_offline.append(node_id)
        if opened:
            report.alerts_opened.append(alert.id)
    for alert_id in alert_ids:
        if close_alert(session, alert_id=alert_id, settings=settings, actor=actor, now=now,
                       admin_recipients=admins):
            report.alerts_closed.append(alert_id)
        else:
            report.unchanged_alerts.append(alert_id)
    session.flush()
    after = session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
    report.emails_queued = after - before
    return report


def _queue_alert_emails(session: Session, alert: Alert, node: Node, settings: Settings,
                        template: str, admin_recipients: list[str] | None = None) -> None:
    operator = session.get(Operator, node.operator_id)
    base = settings.public_base_url.rstrip("/")
    common = {
        "node_id": node.id,
        "node_region": node.region,
        "node_tier": node.tier,
        "alert_id": alert.id,
        "opened_at": alert.opened_at.isoformat(timespec="seconds"),
        "closed_at": alert.closed_at.isoformat(timespec="seconds") if alert.closed_at else None,
        "last_heartbeat_at": (alert.details or {}).get("last_heartbeat_at"),
        "recovered_heartbeat_at": (alert.details or {}).get("recovered_heartbeat_at"),
        "offline_after_seconds": (alert.details or {}).get("offline_after_seconds"),
        "operator_name": operator.full_name if operator else None,
        "node_url": None,
    }
    recipients: list[tuple[str, str]] = []
    if operator is not None:
        recipients.append((operator.email, "operator"))
    admins = alert_recipients(session, settings) if admin_recipients is None else admin_recipients
    recipients.extend((email, "admin") for email in admins)
    seen: set[str] = set()
    for to, role in recipients:
        if to.lower() in seen:  # an admin who also runs the node gets one email
            continue
        seen.add(to.lower())
        context = dict(common, recipient_role=role)
        if role == "admin":
            context["node_url"] = f"{base}/admin/nodes/{node.id}"
        else:  # the operator's own page (wallet sign-in)
            context["node_url"] = f"{base}/operator/nodes/{node.id}"
        enqueue_email(
            session,
            template=template,
            to=to,
            context=context,
            # One per (alert, event, recipient): re-runs and relays never send it twice.
            idempotency_key=f"email:{template}:alert:{alert.id}:{sha256_hex(to.lower())[:16]}",
            subject_type="node",
            subject_id=node.id,
        )


def node_status_counts(session: Session) -> dict[str, int]:
    """Nodes per status, every status present (zeros included), for gauges and the overview."""
    counts = Counter({status.value: 0 for status in NodeStatus})
    for status, n in session.execute(select(Node.status, func.count()).group_by(Node.status)):
        counts[str(status)] = n
    return dict(counts)


def open_alert_count(session: Session) -> int:
    return session.scalar(
        select(func.count()).select_from(Alert).where(Alert.closed_at.is_(None))
    ) or 0


def outbox_backlog(session: Session) -> dict[tuple[str, str], int]:
    """Outbox messages not yet sent, by (kind, status): pending/sending/failed."""
    rows = session.execute(
        select(OutboxMessage.kind, OutboxMessage.status, func.count())
        .where(OutboxMessage.status.in_(
            [OutboxStatus.PENDING, OutboxStatus.SENDING, OutboxStatus.FAILED]
        ))
        .group_by(OutboxMessage.kind, OutboxMessage.status)
    )
    return {(str(kind), str(status)): n for kind, status, n in rows}


def latest_heartbeats(session: Session, node_ids: list[str] | None = None) -> dict[str, Heartbeat]:
    """Each node's most recent heartbeat (one query: join on the per-node max received_at)."""
    latest = select(Heartbeat.node_id, func.max(Heartbeat.received_at).label("at")).group_by(
        Heartbeat.node_id)
    if node_ids is not None:
        if not node_ids:
            return {}
        latest = latest.where(Heartbeat.node_id.in_(node_ids))
    latest = latest.subquery()
    rows = session.scalars(
        select(Heartbeat).join(latest, and_(Heartbeat.node_id == latest.c.node_id,
                                            Heartbeat.received_at == latest.c.at))
    ).all()
    return {h.node_id: h for h in rows}


def recent_alerts(session: Session, limit: int = 10, node_id: str | None = None) -> list[Alert]:
    """The newest alerts (open or closed), optionally of one node."""
    stmt = select(Alert).order_by(Alert.opened_at.desc()).limit(limit)
    if node_id is not None:
        stmt = stmt.where(Alert.node_id == node_id)
    return list(session.scalars(stmt))
