"""Node health: stale nodes go offline with an alert and emails; a new heartbeat closes the alert.

The health sensor (noderr_pipelines/defs/network) only *reads* through `find_stale_nodes` and
`find_closable_alerts`; the health job *acts* through `mark_offline` and `close_alert`, which
re-check their condition atomically, so a run that is repeated, or races a heartbeat, changes
nothing twice:

- `mark_offline` is a conditional UPDATE (``status = online AND last heartbeat older than the
  cutoff``): of two racing runs only one sees a row change, and a heartbeat that lands first wins.
- `close_alert` is a conditional UPDATE on ``closed_at IS NULL``.
- Emails go through the outbox with one idempotency key per (alert, event, recipient), so each
  person gets at most one "offline" and one "recovered" email per alert. The health job handles
  all of a run's nodes set-based (`apply_node_health`) and sends one digest per recipient.
- A control-plane outage (no heartbeat processed from any node for
  `control_plane_outage_after_seconds`) is not blamed on the nodes: `assess_control_plane` holds
  offline marks back during it and for one offline threshold after heartbeats resume, so an API
  outage produces neither an offline storm nor, therefore, a recovery storm.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from noderr_core.audit import Actor, audit
from noderr_core.email import enqueue_email
from noderr_core.tables import (
    AdminUser,
    AuditLogEntry,
    Heartbeat,
    Node,
    NodeStatus,
    Operator,
    OutboxMessage,
    OutboxStatus,
)
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
    held_back_reason: str | None = None  # set when a control-plane outage held offline marks back


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


# A control-plane outage is only inferred from silence when enough nodes would be silent together;
# a network of one or two nodes going quiet is more likely the nodes themselves.
OUTAGE_MIN_FLEET = 3
# Past this many nodes, a digest lists the first ones and says how many more (the dashboard has all).
DIGEST_MAX_LISTED = 200
DIGEST_TEMPLATE = "nodes_health_digest"


@dataclass(frozen=True)
class ControlPlaneHealth:
    """Whether node silence can be blamed on the nodes right now.

    `holding_back` is set while the control plane itself is (or just was) not processing
    heartbeats: during an outage (no heartbeat from any node for `outage_after_seconds` while at
    least OUTAGE_MIN_FLEET nodes are online) and for `offline_after_seconds` after heartbeats
    resume (every node gets one full threshold to report again before it is blamed).
    """

    holding_back: bool
    reason: str | None = None


def assess_control_plane(
    session: Session, *, offline_after_seconds: int, outage_after_seconds: int,
    now: datetime | None = None,
) -> ControlPlaneHealth:
    """Two indexed reads: the newest heartbeat over all nodes, and the last gap in the stream."""
    now = now or utcnow()
    online = session.scalar(
        select(func.count()).select_from(Node).where(Node.status == NodeStatus.ONLINE)) or 0
    newest = session.scalar(select(func.max(Node.last_heartbeat_at)))
    if online >= OUTAGE_MIN_FLEET and newest is not None and (now - newest).total_seconds() > outage_after_seconds:
        return ControlPlaneHealth(True, (
            f"control plane outage: no heartbeat processed from any of {online} online nodes since "
            f"{newest.isoformat(timespec='seconds')}; node-offline alerts are held back"))
    # Did heartbeats resume after such a silence within the last threshold? The first raw
    # heartbeat of the window, and the one before it, tell (ix on received_at).
    window = offline_cutoff(now, offline_after_seconds)
    first = session.scalar(select(func.min(Heartbeat.received_at)).where(Heartbeat.received_at > window))
    if first is not None:
        before = session.scalar(select(func.max(Heartbeat.received_at)).where(Heartbeat.received_at < first))
        if before is not None and (first - before).total_seconds() > outage_after_seconds:
            return ControlPlaneHealth(True, (
                f"heartbeats resumed at {first.isoformat(timespec='seconds')} after a "
                f"{int((first - before).total_seconds())}s control-plane silence; nodes get "
                f"{offline_after_seconds}s to report before any is marked offline"))
    return ControlPlaneHealth(False)


def apply_node_health(
    session: Session, *, node_ids: list[str], alert_ids: list[int], offline_after_seconds: int,
    settings: Settings, actor: Actor, now: datetime | None = None,
) -> HealthReport:
    """What the health job does with the sensor's decision; safe to run any number of times.

    Set-based: one conditional UPDATE … RETURNING takes every still-stale node offline, one insert
    opens their alerts, one UPDATE closes the recovered ones; emails go out as one digest per
    recipient per run (a person concerned by a single node gets the single-node email). While the
    control plane itself is held responsible (`assess_control_plane`), no node is taken offline.
    """
    now = now or utcnow()
    report = HealthReport()
    before = session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
    admins = alert_recipients(session, settings) if (node_ids or alert_ids) else []
    if node_ids:
        health = assess_control_plane(
            session, offline_after_seconds=offline_after_seconds,
            outage_after_seconds=settings.control_plane_outage_after_seconds, now=now)
        if health.holding_back:
            report.unchanged_nodes.extend(node_ids)
            report.held_back_reason = health.reason
        else:
            opened = _mark_offline_many(session, node_ids, offline_after_seconds, actor, now, report)
            _queue_digests(session, opened, settings, admins, "offline", offline_after_seconds)
    if alert_ids:
        closed = _close_alerts_many(session, alert_ids, actor, now, report)
        _queue_digests(session, closed, settings, admins, "recovered", offline_after_seconds)
    session.flush()
    after = session.scalar(select(func.count()).select_from(OutboxMessage)) or 0
    report.emails_queued = after - before
    return report


def _mark_offline_many(session: Session, node_ids: list[str], offline_after_seconds: int,
                       actor: Actor, now: datetime, report: HealthReport) -> list[_AlertFacts]:
    """Take the still-stale nodes offline; returns the alerts opened (a flapping node keeps its
    open alert and is not announced again)."""
    cutoff = offline_cutoff(now, offline_after_seconds)
    reason = f"no heartbeat for more than {offline_after_seconds}s"
    changed = {
        r.id: r.last_heartbeat_at
        for r in session.execute(
            update(Node)
            .where(Node.id.in_(sorted(set(node_ids))), _stale_condition(cutoff))
            .values(status=NodeStatus.OFFLINE, status_reason=reason)
            .returning(Node.id, Node.last_heartbeat_at)
            .execution_options(synchronize_session=False)
        )
    }
    report.unchanged_nodes.extend(n for n in node_ids if n not in changed)
    report.marked_offline.extend(n for n in node_ids if n in changed)
    if not changed:
        return []
    audit_rows = [
        _audit_row(actor, now, "node.offline", "node", node_id,
                   {"reason": reason, "last_heartbeat_at": last.isoformat() if last else None})
        for node_id, last in changed.items()
    ]
    already = set(session.scalars(
        select(Alert.node_id).where(Alert.node_id.in_(list(changed)), Alert.kind == AlertKind.NODE_OFFLINE,
                                    Alert.closed_at.is_(None))))
    new_alerts = [
        {"kind": AlertKind.NODE_OFFLINE.value, "node_id": node_id, "opened_at": now, "closed_at": None,
         "details": {
             "last_heartbeat_at": last.isoformat() if last else None,
             "offline_after_seconds": offline_after_seconds,
             "reason": reason + (f" (last at {last.isoformat(timespec='seconds')})" if last else " (never reported)"),
         }}
        for node_id, last in changed.items() if node_id not in already
    ]
    alerts: list[_AlertFacts] = []
    if new_alerts:
        # One multi-row INSERT … RETURNING (batched by SQLAlchemy), no ORM unit of work per row.
        ids = session.execute(insert(Alert.__table__).returning(Alert.__table__.c.id, sort_by_parameter_order=True),
                              new_alerts).scalars().all()
        for alert_id, row in zip(ids, new_alerts, strict=True):
            alerts.append(_detached_alert(alert_id, row))
            audit_rows.append(_audit_row(actor, now, "alert.opened", "alert", alert_id,
                                         {"kind": row["kind"], "node_id": row["node_id"]}))
            report.alerts_opened.append(alert_id)
    session.execute(insert(AuditLogEntry.__table__), audit_rows)
    return alerts


def _audit_row(actor: Actor, now: datetime, action: str, subject_type: str, subject_id, details: dict) -> dict:
    """An audit_log row as `audit()` writes it, for bulk inserts."""
    return {"at": now, "actor_type": actor.type, "actor_id": actor.id, "actor_label": actor.label,
            "action": action, "subject_type": subject_type, "subject_id": str(subject_id), "details": details}


@dataclass(frozen=True)
class _AlertFacts:
    """What the e-mails say about an alert (a plain record: no ORM object per alert at scale)."""

    id: int
    node_id: str
    opened_at: datetime
    closed_at: datetime | None
    details: dict


def _detached_alert(alert_id: int, row: dict) -> _AlertFacts:
    return _AlertFacts(alert_id, row["node_id"], row["opened_at"], row["closed_at"], row["details"])


def _close_alerts_many(session: Session, alert_ids: list[int], actor: Actor, now: datetime,
                       report: HealthReport) -> list[Alert]:
    """Close the alerts whose node is back (returned, for the recovery digest) or gone."""
    rows = session.execute(
        select(Alert, Node.status, Node.last_heartbeat_at)
        .join(Node, Node.id == Alert.node_id)
        .where(Alert.id.in_(sorted(set(alert_ids))), Alert.closed_at.is_(None))
    ).all()
    recovered: list[Alert] = []
    for alert, status, last in rows:
        back = status == NodeStatus.ONLINE and last is not None and last > alert.opened_at
        if not back and status not in (NodeStatus.SUSPENDED, NodeStatus.REMOVED):
            continue
        reason = CLOSE_RECOVERED if back else _close_reason(status)
        details = dict(alert.details or {}, closed_reason=reason)
        if back:
            details["recovered_heartbeat_at"] = last.isoformat()
        changed = session.execute(
            update(Alert).where(Alert.id == alert.id, Alert.closed_at.is_(None))
            .values(closed_at=now, details=details).execution_options(synchronize_session=False)
        ).rowcount
        if changed != 1:
            continue
        set_committed_value(alert, "closed_at", now)
        set_committed_value(alert, "details", details)
        audit(session, actor, "alert.closed", "alert", alert.id, node_id=alert.node_id, reason=reason)
        report.alerts_closed.append(alert.id)
        if back:
            recovered.append(alert)
    closed = set(report.alerts_closed)
    report.unchanged_alerts.extend(a for a in alert_ids if a not in closed)
    return recovered


def _queue_digests(session: Session, alerts: list[Alert], settings: Settings, admins: list[str],
                   event: str, offline_after_seconds: int) -> None:
    """One email per recipient for this batch of alerts: the operator about their nodes, each
    admin about all. A recipient concerned by one node gets the single-node email."""
    if not alerts:
        return
    template_single = OFFLINE_EMAIL_TEMPLATE if event == "offline" else RECOVERED_EMAIL_TEMPLATE
    nodes = {n.id: n for n in session.execute(
        select(Node.id, Node.operator_id, Node.region, Node.tier).where(Node.id.in_([a.node_id for a in alerts])))}
    operators = {o.id: o for o in session.scalars(
        select(Operator).where(Operator.id.in_({n.operator_id for n in nodes.values()})))}
    by_recipient: dict[str, tuple[str, Operator | None, list[Alert]]] = {}
    for alert in alerts:
        op = operators.get(nodes[alert.node_id].operator_id)
        if op is not None:
            by_recipient.setdefault(op.email.lower(), (op.email, op, []))[2].append(alert)
    for email in admins:
        # An admin who also runs nodes hears about every node once, as an admin.
        by_recipient[email.lower()] = (email, None, list(alerts))
    base = settings.public_base_url.rstrip("/")
    for _key, (to, op, mine) in sorted(by_recipient.items()):
        role = "operator" if op is not None else "admin"
        if len(mine) == 1:
            alert = mine[0]
            node = nodes[alert.node_id]
            _queue_alert_emails_to(session, alert, node, settings, template_single, [(to, role)],
                                   operator=operators.get(node.operator_id))
            continue
        ids = sorted(a.id for a in mine)
        listed = sorted(mine, key=lambda a: a.node_id)[:DIGEST_MAX_LISTED]
        enqueue_email(
            session,
            template=DIGEST_TEMPLATE,
            to=to,
            context={
                "event": event, "count": len(mine), "recipient_role": role,
                "operator_name": op.full_name if op else None,
                "offline_after_seconds": offline_after_seconds,
                "alerts_url": f"{base}/admin",
                "nodes": [{"node_id": a.node_id, "alert_id": a.id,
                           "last_heartbeat_at": (a.details or {}).get(
                               "last_heartbeat_at" if event == "offline" else "recovered_heartbeat_at")}
                          for a in listed],
            },
            # One per (event, set of alerts, recipient): a retried run never sends it twice.
            idempotency_key=(f"email:{DIGEST_TEMPLATE}:{event}:"
                             f"{sha256_hex(','.join(map(str, ids)))[:16]}:{sha256_hex(to.lower())[:16]}"),
            subject_type="alert",
            subject_id=ids[0],
        )


def _queue_alert_emails(session: Session, alert: Alert, node: Node, settings: Settings,
                        template: str, admin_recipients: list[str] | None = None) -> None:
    operator = session.get(Operator, node.operator_id)
    recipients: list[tuple[str, str]] = []
    if operator is not None:
        recipients.append((operator.email, "operator"))
    admins = alert_recipients(session, settings) if admin_recipients is None else admin_recipients
    recipients.extend((email, "admin") for email in admins)
    _queue_alert_emails_to(session, alert, node, settings, template, recipients, operator=operator)


def _queue_alert_emails_to(session: Session, alert: Alert, node: Node, settings: Settings,
                           template: str, recipients: list[tuple[str, str]],
                           operator: Operator | None) -> None:
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
