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

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple
from datetime import datetime, timedelta

from sqlalchemy import (
    JSON,
    Integer,
    String,
    and_,
    any_,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from noderr_core.audit import Actor, audit
from noderr_core.email import email_outbox_row
from noderr_core.outbox import enqueue_many
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
        .where(_closable_condition())
        .order_by(Alert.id)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [
        ClosableAlert(alert_id, node_id, _close_reason(status))
        for alert_id, node_id, status in session.execute(stmt)
    ]


@dataclass(frozen=True)
class HealthBacklog:
    """What the health job would find to do now, in two aggregate reads (the sensor's view): the
    numbers and bounds name the work, so a new incident gives a new run key."""

    stale_nodes: int
    stale_since: tuple[datetime | None, datetime | None]  # oldest and newest last heartbeat
    closable_alerts: int
    closable_ids: tuple[int | None, int | None]  # lowest and highest alert id

    def candidate_keys(self) -> list[str]:
        keys = []
        if self.stale_nodes:
            oldest, newest = (t.isoformat() if t else "never" for t in self.stale_since)
            keys.append(f"offline:{self.stale_nodes}:{oldest}:{newest}")
        if self.closable_alerts:
            keys.append(f"close:{self.closable_alerts}:{self.closable_ids[0]}:{self.closable_ids[1]}")
        return keys


def health_backlog(session: Session, *, offline_after_seconds: int,
                   now: datetime | None = None) -> HealthBacklog:
    """How many nodes are stale and how many alerts closable now (`find_stale_nodes` and
    `find_closable_alerts`, counted in SQL instead of listed)."""
    cutoff = offline_cutoff(now or utcnow(), offline_after_seconds)
    stale, oldest, newest = session.execute(
        select(func.count(), func.min(Node.last_heartbeat_at), func.max(Node.last_heartbeat_at))
        .where(_stale_condition(cutoff))).one()
    closable, first, last = session.execute(
        select(func.count(), func.min(Alert.id), func.max(Alert.id))
        .join(Node, Node.id == Alert.node_id).where(_closable_condition())).one()
    return HealthBacklog(stale, (oldest, newest), closable, (first, last))


def _closable_condition():
    return and_(
        Alert.closed_at.is_(None),
        or_(
            and_(Node.status == NodeStatus.ONLINE, Node.last_heartbeat_at > Alert.opened_at),
            Node.status.in_([NodeStatus.SUSPENDED, NodeStatus.REMOVED]),
        ),
    )


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
DIGEST_MAX_LISTED = 20
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
    session: Session, *, node_ids: list[str] | None, alert_ids: list[int] | None,
    offline_after_seconds: int, settings: Settings, actor: Actor, now: datetime | None = None,
) -> HealthReport:
    """What the health job does; safe to run any number of times.

    `node_ids` / `alert_ids`: the nodes to take offline and the alerts to close if their condition
    still holds; None = every node stale now / every closable alert (the job's sweep), [] = none.

    Set-based end to end, whatever the number of nodes: one conditional UPDATE … RETURNING takes
    the still-stale nodes offline, one INSERT … SELECT opens their alerts, one INSERT … SELECT
    writes their audit rows (one per node: why, last heartbeat, alert), and one query gives each
    recipient's count and first nodes for one digest per recipient (a person concerned by a single
    node gets the single-node email). Closing is two UPDATEs (recovered; suspended or removed),
    one INSERT … SELECT of `alert.closed` audit rows and one recovery digest per recipient. While
    the control plane itself is held responsible (`assess_control_plane`), no node goes offline.
    """
    now = now or utcnow()
    report = HealthReport()
    admins = alert_recipients(session, settings) if (node_ids is None or node_ids or alert_ids is None
                                                     or alert_ids) else []
    if node_ids is None or node_ids:
        health = assess_control_plane(
            session, offline_after_seconds=offline_after_seconds,
            outage_after_seconds=settings.control_plane_outage_after_seconds, now=now)
        if health.holding_back:
            report.unchanged_nodes.extend(node_ids or [])
            report.held_back_reason = health.reason
        else:
            opened, listed = _mark_offline_many(session, node_ids, offline_after_seconds, actor, now,
                                                report)
            report.emails_queued += _queue_digests(session, opened, listed, settings, admins, "offline",
                                                   offline_after_seconds)
    if alert_ids is None or alert_ids:
        recovered, listed = _close_alerts_many(session, alert_ids, actor, now, report)
        report.emails_queued += _queue_digests(session, recovered, listed, settings, admins, "recovered",
                                               offline_after_seconds)
    session.flush()
    return report


def _among(column, ids: list, dialect: str):
    """`column IN ids` as one bound value whatever the number of ids (no 10,000-parameter IN)."""
    if dialect == "postgresql":
        return column == any_(bindparam(None, ids, type_=postgresql.ARRAY(column.type)))
    rows = func.json_each(json.dumps(ids)).table_valued("value")
    return column.in_(select(rows.c.value))


def _iso(column, dialect: str, *, seconds: bool = False):
    """A stored UTC timestamp as `datetime.isoformat()` writes it, computed in SQL."""
    if dialect == "postgresql":
        pattern = 'YYYY-MM-DD"T"HH24:MI:SS' + ("" if seconds else ".US")
        text_ = type_coerce(func.to_char(column, pattern), String)
    else:  # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff' in SQLite
        text_ = type_coerce(func.replace(column, " ", "T"), String)
        if seconds:
            text_ = type_coerce(func.substr(text_, 1, 19), String)
    return text_ + "+00:00"


def _json_object(dialect: str, **values):
    """A JSON object built in SQL (the values are columns or expressions)."""
    fn = func.json_build_object if dialect == "postgresql" else func.json_object
    args = []
    for key, value in values.items():
        args += [literal(key, String), value]
    return type_coerce(fn(*args), JSON)


def _offline_reason(reason: str, last_heartbeat_at, dialect: str):
    """The alert's reason, in SQL: "<reason> (last at <time>)" or "<reason> (never reported)"."""
    return literal(reason, String) + func.coalesce(
        literal(" (last at ", String) + _iso(last_heartbeat_at, dialect, seconds=True) + ")",
        literal(" (never reported)", String))


def _alert_details(last_heartbeat_at, offline_after_seconds: int, reason: str, dialect: str):
    return _json_object(dialect, last_heartbeat_at=_iso(last_heartbeat_at, dialect),
                        offline_after_seconds=literal(offline_after_seconds, Integer),
                        reason=_offline_reason(reason, last_heartbeat_at, dialect))


def _node_offline_details(last_heartbeat_at, alert_id, reason: str, dialect: str):
    """The `node.offline` audit row's details: why, the last heartbeat, the (new or kept) alert."""
    return _json_object(dialect, reason=_offline_reason(reason, last_heartbeat_at, dialect),
                        last_heartbeat_at=_iso(last_heartbeat_at, dialect), alert_id=alert_id)


def _mark_offline_many(session: Session, node_ids: list[str] | None, offline_after_seconds: int,
                       actor: Actor, now: datetime, report: HealthReport) -> tuple[list[int], list]:
    """Take the still-stale nodes offline; returns the ids of the alerts opened (a flapping node
    keeps its open alert and is not announced again) and their digest rows (`_ranked`)."""
    dialect = session.get_bind().dialect.name
    cutoff = offline_cutoff(now, offline_after_seconds)
    reason = f"no heartbeat for more than {offline_after_seconds}s"
    stmt = update(Node).where(_stale_condition(cutoff))
    if node_ids is not None:
        stmt = stmt.where(_among(Node.id, sorted(set(node_ids)), dialect))
    stmt = stmt.values(status=NodeStatus.OFFLINE, status_reason=reason)
    alerts = Alert.__table__
    open_alert = and_(alerts.c.kind == AlertKind.NODE_OFFLINE, alerts.c.closed_at.is_(None))
    if dialect == "postgresql":
        changed, opened, listed = _mark_offline_chained(stmt, offline_after_seconds, reason, actor, now, session)
    else:
        changed = session.scalars(stmt.returning(Node.id).execution_options(synchronize_session=False)).all()
        opened, listed = [], []
        if changed:
            in_changed = _among(Node.id, list(changed), dialect)
            opened = session.scalars(
                sqlite.insert(alerts).from_select(
                    ["kind", "node_id", "opened_at", "details"],
                    select(literal(AlertKind.NODE_OFFLINE.value, String), Node.id,
                           literal(now, alerts.c.opened_at.type),
                           _alert_details(Node.last_heartbeat_at, offline_after_seconds, reason, dialect))
                    .where(in_changed),
                )
                # A node still holding an open alert (uq_alerts_open_kind_node) keeps it.
                .on_conflict_do_nothing(index_elements=["kind", "node_id"], index_where=alerts.c.closed_at.is_(None))
                .returning(alerts.c.id)).all()
            # One audit row per node: when, by whom and why it went offline, and its (new or kept) alert.
            session.execute(_audit_from_select(
                select(Node.id, _node_offline_details(Node.last_heartbeat_at, alerts.c.id, reason, dialect))
                .select_from(Node).outerjoin(alerts, and_(alerts.c.node_id == Node.id, open_alert))
                .where(in_changed),
                actor, now, "node.offline", "node"))
            listed = _listed_rows(session, opened, dialect)
    report.marked_offline.extend(sorted(changed))
    if node_ids is not None:
        done = set(changed)
        report.unchanged_nodes.extend(n for n in node_ids if n not in done)
    report.alerts_opened.extend(sorted(opened))
    return list(opened), listed


def _mark_offline_chained(stmt, offline_after_seconds: int, reason: str, actor: Actor, now: datetime,
                          session: Session) -> tuple[list[str], list[int], list]:
    """PostgreSQL: the offline UPDATE, the alerts' INSERT and the audit rows' INSERT as one statement
    (data-modifying CTEs: each reads the previous one's RETURNING), which also ranks the event's
    nodes for the digests. Only the node and alert ids and the digests' few listed rows come back."""
    alerts = Alert.__table__
    went = stmt.returning(Node.id, Node.operator_id, Node.region, Node.tier,
                          Node.last_heartbeat_at).cte("went_offline")
    opened = (
        postgresql.insert(alerts).from_select(
            ["kind", "node_id", "opened_at", "details"],
            select(literal(AlertKind.NODE_OFFLINE.value, String), went.c.id,
                   literal(now, alerts.c.opened_at.type),
                   _alert_details(went.c.last_heartbeat_at, offline_after_seconds, reason, "postgresql")),
        )
        # A node still holding an open alert (uq_alerts_open_kind_node) keeps it.
        .on_conflict_do_nothing(index_elements=["kind", "node_id"], index_where=alerts.c.closed_at.is_(None))
        .returning(alerts.c.id, alerts.c.node_id, alerts.c.opened_at, alerts.c.closed_at)
        .cte("opened")
    )
    # The statement's snapshot holds the alerts open before it (kept), not those it opens.
    kept = alerts.alias("kept")
    audited = _audit_from_select(
        select(went.c.id, _node_offline_details(
            went.c.last_heartbeat_at, func.coalesce(opened.c.id, kept.c.id), reason, "postgresql"))
        .select_from(went.outerjoin(opened, opened.c.node_id == went.c.id).outerjoin(
            kept, and_(kept.c.node_id == went.c.id, kept.c.kind == AlertKind.NODE_OFFLINE,
                       kept.c.closed_at.is_(None)))),
        actor, now, "node.offline", "node").cte("audited")
    node_ids, _alert_ids, opened_ids, listed = _event_arrays(
        session,
        select(opened.c.id, went.c.id.label("node_id"), went.c.operator_id, went.c.region, went.c.tier,
               opened.c.opened_at, opened.c.closed_at, went.c.last_heartbeat_at)
        .select_from(went.outerjoin(opened, opened.c.node_id == went.c.id)),
        in_event=opened.c.id.is_not(None), cte=audited)
    return node_ids, opened_ids, listed


def _audit_from_select(rows, actor: Actor, now: datetime, action: str, subject_type: str):
    """INSERT … SELECT of audit_log rows (as `audit()` writes them) from (subject id, details) rows."""
    log = AuditLogEntry.__table__
    subject_id, details = rows.selected_columns
    return insert(log).from_select(
        ["at", "actor_type", "actor_id", "actor_label", "action", "subject_type", "subject_id", "details"],
        rows.with_only_columns(
            literal(now, log.c.at.type), literal(actor.type, String), literal(actor.id, String),
            literal(actor.label, String), literal(action, String), literal(subject_type, String),
            cast(subject_id, String), details,
        ),
    )


def _close_alerts_many(session: Session, alert_ids: list[int] | None, actor: Actor, now: datetime,
                       report: HealthReport) -> tuple[list[int], list]:
    """Close the alerts whose node is back or gone; returns the recovered ones (for the digest) and
    their digest rows (`_ranked`)."""
    dialect = session.get_bind().dialect.name
    recovered_cond = and_(Node.status == NodeStatus.ONLINE, Node.last_heartbeat_at > Alert.opened_at)
    gone_cond = Node.status.in_([NodeStatus.SUSPENDED, NodeStatus.REMOVED])
    gone_reason = case((Node.status == NodeStatus.SUSPENDED, CLOSE_NODE_SUSPENDED), else_=CLOSE_NODE_REMOVED)

    def close(condition, reason, recovered_at):
        merged = (
            type_coerce(cast(cast(Alert.details, postgresql.JSONB).op("||")(func.jsonb_build_object(
                "closed_reason", reason, "recovered_heartbeat_at", recovered_at)), JSON), JSON)
            if dialect == "postgresql" else
            type_coerce(func.json_set(Alert.details, "$.closed_reason", reason,
                                      "$.recovered_heartbeat_at", recovered_at), JSON)
        )
        stmt = update(Alert).where(Alert.node_id == Node.id, Alert.closed_at.is_(None), condition)
        if alert_ids is not None:
            stmt = stmt.where(_among(Alert.id, sorted(set(alert_ids)), dialect))
        return stmt.values(closed_at=now, details=merged).execution_options(synchronize_session=False)

    if dialect == "postgresql":
        # One statement: the UPDATE (recovered or gone) … RETURNING feeds the audit rows' INSERT and
        # the digests' ranking (data-modifying CTE).
        reason = case((recovered_cond, CLOSE_RECOVERED), else_=gone_reason)
        closed_alerts = close(or_(recovered_cond, gone_cond), reason,
                              case((recovered_cond, _iso(Node.last_heartbeat_at, dialect)))).returning(
            Alert.id, Alert.node_id, Node.operator_id, Node.region, Node.tier, Alert.opened_at,
            Alert.closed_at, Node.last_heartbeat_at, recovered_cond.label("recovered"),
            reason.label("reason")).cte("closed_alerts")
        audited = _audit_from_select(
            select(closed_alerts.c.id, _json_object(dialect, node_id=closed_alerts.c.node_id,
                                                    reason=closed_alerts.c.reason)),
            actor, now, "alert.closed", "alert").cte("audited")
        c = closed_alerts.c
        _nodes, closed, recovered, listed = _event_arrays(
            session,
            select(c.id, c.node_id, c.operator_id, c.region, c.tier, c.opened_at, c.closed_at,
                   c.last_heartbeat_at),
            in_event=c.recovered, cte=audited)
        closed.sort()
    else:
        recovered = session.scalars(close(recovered_cond, literal(CLOSE_RECOVERED, String),
                                          _iso(Node.last_heartbeat_at, dialect)).returning(Alert.id)).all()
        gone = session.scalars(close(gone_cond, gone_reason, literal(None, String)).returning(Alert.id)).all()
        closed = sorted([*recovered, *gone])
        if closed:
            reason = (Alert.details["closed_reason"].as_string())
            session.execute(_audit_from_select(
                select(Alert.id, _json_object(dialect, node_id=Alert.node_id, reason=reason))
                .where(_among(Alert.id, closed, dialect)),
                actor, now, "alert.closed", "alert"))
        listed = _listed_rows(session, list(recovered), dialect)
    report.alerts_closed.extend(closed)
    if alert_ids is not None:
        done = set(closed)
        report.unchanged_alerts.extend(a for a in alert_ids if a not in done)
    return list(recovered), listed


def _ranked(rows, in_event):
    """`rows` (alert id, node_id, operator_id, region, tier, opened_at, closed_at, last_heartbeat_at)
    ranked for the digests among those of the event (`in_event`): each operator's count and the
    rank of each of its nodes by node id (one sort). A row is listed when it is among the first
    DIGEST_MAX_LISTED of its operator: the first of all are among them too. Returns the ranked
    subquery, the listed condition and the listed fields (`_DigestRow`, the operator's joined)."""
    operator_id, node_id = rows.selected_columns.operator_id, rows.selected_columns.node_id
    ranked = rows.add_columns(
        in_event.label("in_event"),
        func.count().filter(in_event).over(partition_by=operator_id).label("mine"),
        func.row_number().over(partition_by=operator_id, order_by=[in_event.desc(), node_id]).label("rank_mine"),
    ).subquery()
    listed = and_(ranked.c.in_event, ranked.c.rank_mine <= DIGEST_MAX_LISTED)
    fields = [ranked.c[name] for name in _DigestRow._fields[:-2]] + [Operator.email, Operator.full_name]
    return ranked, listed, fields


class _DigestRow(NamedTuple):
    """A listed row: what the digests say of an alert, its node and the node's operator."""

    id: int
    node_id: str
    mine: int  # the operator's alerts in the event
    region: str | None
    tier: str | None
    opened_at: datetime
    closed_at: datetime | None
    last_heartbeat_at: datetime | None
    email: str
    full_name: str | None


def _event_arrays(session: Session, rows, *, in_event, cte) -> tuple[list, list, list, list[_DigestRow]]:
    """PostgreSQL: run the statement `cte` belongs to and give back its event (`rows`, as `_ranked`
    takes them) as one row of arrays (every node id, every alert id, the event's alert ids, and the
    listed rows column by column), not one row per node."""
    ranked, listed, fields = _ranked(rows, in_event)
    stmt = (select(func.array_agg(ranked.c.node_id), func.array_agg(ranked.c.id),
                   func.array_agg(ranked.c.id).filter(ranked.c.in_event),
                   *[func.array_agg(f).filter(listed) for f in fields])
            .select_from(ranked.outerjoin(Operator, Operator.id == ranked.c.operator_id))
            .add_cte(cte))
    node_ids, alert_ids, event_ids, *columns = session.connection().execute(stmt).one()
    return (node_ids or [], alert_ids or [], event_ids or [],
            [_DigestRow(*values) for values in zip(*(column or [] for column in columns))])


def _listed_rows(session: Session, alert_ids: list[int], dialect: str) -> list:
    """The listed rows (`_ranked`) of these alerts, read back from the alerts table."""
    if not alert_ids:
        return []
    ranked, listed, fields = _ranked(
        select(Alert.id, Alert.node_id, Node.operator_id, Node.region, Node.tier, Alert.opened_at,
               Alert.closed_at, Node.last_heartbeat_at)
        .join(Node, Node.id == Alert.node_id).where(_among(Alert.id, alert_ids, dialect)),
        literal(True))
    return session.execute(select(*fields).join(Operator, Operator.id == ranked.c.operator_id)
                           .where(listed)).all()


@dataclass(frozen=True)
class _Listed:
    """An alert and its node as the emails describe them: a plain record (at most
    DIGEST_MAX_LISTED per recipient, never one per node of the event)."""

    id: int  # the alert
    node_id: str
    region: str | None
    tier: str | None
    opened_at: datetime
    closed_at: datetime | None
    last_heartbeat_at: str | None  # when the node was last heard of as it went offline
    recovered_heartbeat_at: str | None
    offline_after_seconds: int | None

    @classmethod
    def of(cls, alert: Alert, node: Node) -> _Listed:
        details = alert.details or {}
        return cls(alert.id, node.id, node.region, node.tier, alert.opened_at, alert.closed_at,
                   details.get("last_heartbeat_at"), details.get("recovered_heartbeat_at"),
                   details.get("offline_after_seconds"))


def _queue_digests(session: Session, alert_ids: list[int], listed_rows: list, settings: Settings,
                   admins: list[str], event: str, offline_after_seconds: int) -> int:
    """One email per recipient for this event's alerts: the operator about their nodes, each admin
    about all; each gives the count and the first DIGEST_MAX_LISTED nodes with a link to the rest.
    A recipient concerned by one node gets the single-node email. `listed_rows`: the alerts'
    listed rows (`_ranked`), in any order. Returns the emails queued."""
    if not alert_ids:
        return 0
    total = len(alert_ids)
    by_recipient: dict[str, tuple[str, str, str | None, int, list[_Listed]]] = {}
    everyone: list[_Listed] = []
    for r in sorted(listed_rows, key=lambda r: r.node_id):
        beat = r.last_heartbeat_at.isoformat() if r.last_heartbeat_at else None
        listed = _Listed(r.id, r.node_id, r.region, r.tier, r.opened_at, r.closed_at,
                         beat if event == "offline" else None, beat if event != "offline" else None,
                         offline_after_seconds)
        if len(everyone) < DIGEST_MAX_LISTED:  # each operator's first nodes hold the first of all
            everyone.append(listed)
        by_recipient.setdefault(r.email.lower(), (r.email, "operator", r.full_name, r.mine, []))[4].append(listed)
    for email in admins:
        # An admin who also runs nodes hears about every node once, as an admin.
        by_recipient[email.lower()] = (email, "admin", None, total, everyone)
    base = settings.public_base_url.rstrip("/")
    template_single = OFFLINE_EMAIL_TEMPLATE if event == "offline" else RECOVERED_EMAIL_TEMPLATE
    first = min(alert_ids)
    event_key = f"{first}-{max(alert_ids)}-{total}"  # the alerts of one run: disjoint per run
    messages = []
    for _key, (to, role, name, count, mine) in sorted(by_recipient.items()):
        if count == 1:
            messages += _alert_email_rows(mine[0], settings, template_single, [(to, role)], name)
            continue
        messages.append(email_outbox_row(
            template=DIGEST_TEMPLATE,
            to=to,
            context={
                "event": event, "count": count, "recipient_role": role, "operator_name": name,
                "offline_after_seconds": offline_after_seconds,
                "alerts_url": f"{base}/admin" if role == "admin" else f"{base}/operator",
                "nodes": [{"node_id": a.node_id, "alert_id": a.id,
                           "last_heartbeat_at": a.last_heartbeat_at or a.recovered_heartbeat_at}
                          for a in mine],
            },
            # One per (event's alerts, recipient): a retried run never sends it twice.
            idempotency_key=f"email:{DIGEST_TEMPLATE}:{event}:{event_key}:{sha256_hex(to.lower())[:16]}",
            subject_type="alert",
            subject_id=first,
        ))
    return enqueue_many(session, messages)


def _queue_alert_emails(session: Session, alert: Alert, node: Node, settings: Settings,
                        template: str, admin_recipients: list[str] | None = None) -> None:
    operator = session.get(Operator, node.operator_id)
    recipients: list[tuple[str, str]] = []
    if operator is not None:
        recipients.append((operator.email, "operator"))
    admins = alert_recipients(session, settings) if admin_recipients is None else admin_recipients
    recipients.extend((email, "admin") for email in admins)
    enqueue_many(session, _alert_email_rows(_Listed.of(alert, node), settings, template, recipients,
                                            operator.full_name if operator else None))


def _alert_email_rows(alert: _Listed, settings: Settings, template: str,
                      recipients: list[tuple[str, str]], operator_name: str | None) -> list[dict]:
    """The single-node email to each recipient (outbox values)."""
    base = settings.public_base_url.rstrip("/")
    common = {
        "node_id": alert.node_id,
        "node_region": alert.region,
        "node_tier": alert.tier,
        "alert_id": alert.id,
        "opened_at": alert.opened_at.isoformat(timespec="seconds"),
        "closed_at": alert.closed_at.isoformat(timespec="seconds") if alert.closed_at else None,
        "last_heartbeat_at": alert.last_heartbeat_at,
        "recovered_heartbeat_at": alert.recovered_heartbeat_at,
        "offline_after_seconds": alert.offline_after_seconds,
        "operator_name": operator_name,
        "node_url": None,
    }
    rows: list[dict] = []
    seen: set[str] = set()
    for to, role in recipients:
        if to.lower() in seen:  # an admin who also runs the node gets one email
            continue
        seen.add(to.lower())
        context = dict(common, recipient_role=role)
        if role == "admin":
            context["node_url"] = f"{base}/admin/nodes/{alert.node_id}"
        else:  # the operator's own page (wallet sign-in)
            context["node_url"] = f"{base}/operator/nodes/{alert.node_id}"
        rows.append(email_outbox_row(
            template=template,
            to=to,
            context=context,
            # One per (alert, event, recipient): re-runs and relays never send it twice.
            idempotency_key=f"email:{template}:alert:{alert.id}:{sha256_hex(to.lower())[:16]}",
            subject_type="node",
            subject_id=alert.node_id,
        ))
    return rows


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
