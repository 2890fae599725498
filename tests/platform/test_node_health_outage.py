"""Node health at scale: a control-plane outage raises no offline-alert storm, and many nodes going
offline (or coming back) at once reach each person as one digest, through the sensor and the job
too (1,500 nodes: one run, one email per person). SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, update

from noderr_core.audit import Actor
from noderr_core.email import render_email
from noderr_core.network import apply_node_health, find_closable_alerts, find_stale_nodes
from noderr_core.settings import Settings
from noderr_core.tables import AdminUser, AuditLogEntry, Node, NodeStatus, Operator, OutboxMessage
from noderr_core.tables.network import Alert
from noderr_core.telemetry import record_heartbeat
from noderr_core.timeutil import utcnow
from noderr_protocol.work import HeartbeatIn
from tests.support.factories import make_node
from tests.support.platform import run_job, sensor_tick

THRESHOLD = 60


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(env="test", state_dir=tmp_path / "state", public_base_url="https://noderr.example",
                    control_plane_outage_after_seconds=90)


def _fleet(session_factory, n: int, per_operator: int, prefix: str = "op") -> list[str]:
    ids = []
    with session_factory() as s:
        operator = None
        for i in range(n):
            if i % per_operator == 0:
                operator = Operator(email=f"{prefix}{i}@example.com", full_name=f"Operator {i}",
                                    wallet_address=f"0x{abs(hash(prefix)) % 1000:03d}{i:037x}")
                s.add(operator)
                s.flush()
            node, _ = make_node(s, operator=operator)
            ids.append(node.id)
        s.commit()
    return ids


def _beat(session_factory, node_ids, at) -> None:
    with session_factory() as s:
        for nid in node_ids:
            record_heartbeat(s, nid, HeartbeatIn(uptime_seconds=1), now=at)
        s.commit()


def _health(session_factory, settings, now):
    with session_factory() as s:
        stale = [n.node_id for n in find_stale_nodes(s, offline_after_seconds=THRESHOLD, now=now)]
        closable = [a.alert_id for a in find_closable_alerts(s)]
        report = apply_node_health(s, node_ids=stale, alert_ids=closable, offline_after_seconds=THRESHOLD,
                                   settings=settings, actor=Actor.system("test"), now=now)
        s.commit()
    return stale, report


def _outbox(session_factory) -> list[OutboxMessage]:
    with session_factory() as s:
        return list(s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")))


def test_a_control_plane_outage_raises_no_offline_storm(session_factory, alert_admin, settings):
    nodes = _fleet(session_factory, 30, per_operator=1)
    t0 = utcnow()
    _beat(session_factory, nodes, t0 - timedelta(seconds=3600))  # the last beats before the API died

    # During the outage: every node is silent, and none is blamed.
    stale, report = _health(session_factory, settings, t0)
    assert len(stale) == 30
    assert report.marked_offline == [] and "control plane outage" in report.held_back_reason
    assert _outbox(session_factory) == []

    # The API is back: most nodes report at once; the rest get one threshold to report too.
    _beat(session_factory, nodes[:27], t0 + timedelta(seconds=10))
    _stale, report = _health(session_factory, settings, t0 + timedelta(seconds=20))
    assert report.marked_offline == [] and "resumed" in report.held_back_reason
    _beat(session_factory, nodes[:28], t0 + timedelta(seconds=65))  # one more came back

    # One threshold later, only the two nodes that really are down go offline: two alerts, their
    # operators hear about their own node, the admin gets one digest; nothing to recover later.
    _stale, report = _health(session_factory, settings, t0 + timedelta(seconds=75))
    assert sorted(report.marked_offline) == sorted(nodes[28:])
    assert report.held_back_reason is None
    mails = _outbox(session_factory)
    assert len(mails) == 3  # 2 operators + 1 admin digest, where the old code sent 60 and 60 more
    admin = [m for m in mails if m.payload["to"] == alert_admin]
    assert len(admin) == 1 and admin[0].payload["template"] == "nodes_health_digest"
    text = render_email("nodes_health_digest", admin[0].payload["context"]).text
    assert all(n in text for n in nodes[28:]) and "2 Noderr nodes stopped reporting" in text
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 2


def test_many_nodes_offline_and_back_reach_each_person_once(session_factory, alert_admin, settings):
    nodes = _fleet(session_factory, 12, per_operator=4)  # 3 operators with 4 nodes each
    others = _fleet(session_factory, 3, per_operator=3, prefix="other")  # still reporting: no outage
    t0 = utcnow()
    _beat(session_factory, nodes, t0 - timedelta(seconds=600))
    for ago in range(600, 0, -30):  # the rest of the fleet kept reporting every 30 s
        _beat(session_factory, others, t0 - timedelta(seconds=ago - 5))
    _stale, report = _health(session_factory, settings, t0)
    assert sorted(report.marked_offline) == sorted(nodes) and len(report.alerts_opened) == 12
    mails = _outbox(session_factory)
    assert sorted(m.payload["to"] for m in mails) == sorted(
        ["op0@example.com", "op4@example.com", "op8@example.com", alert_admin])
    assert {m.payload["context"]["count"] for m in mails} == {4, 12}
    op_text = render_email("nodes_health_digest",
                           next(m for m in mails if m.payload["to"] == "op0@example.com").payload["context"]).text
    assert "docker compose up -d" in op_text and all(n in op_text for n in nodes[:4])

    # A retried run changes nothing and sends nothing.
    _stale, again = _health(session_factory, settings, t0)
    assert again.marked_offline == [] and again.emails_queued == 0

    # They all come back: one recovery digest per person, every alert closed.
    _beat(session_factory, nodes + others, t0 + timedelta(seconds=30))
    _stale, back = _health(session_factory, settings, t0 + timedelta(seconds=31))
    assert len(back.alerts_closed) == 12 and back.emails_queued == 4
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.closed_at.is_(None))) == 0
        assert s.scalar(select(func.count()).select_from(Node).where(
            Node.status == NodeStatus.ONLINE)) == 15


def _silent_fleet(session_factory, n: int, per_operator: int, silent_for: timedelta) -> list[str]:
    """n online nodes in operators of `per_operator`, silent for `silent_for` (bulk rows: a fleet
    of thousands in a second), plus three nodes that reported just now (the control plane is up)."""
    now = utcnow()
    with session_factory() as s:
        ops = [{"email": f"fleet{o}@example.com", "full_name": f"Fleet {o}", "wallet_address": f"0x{o:040x}",
                "created_at": now} for o in range(n // per_operator)]
        op_ids = s.scalars(insert(Operator).returning(Operator.id, sort_by_parameter_order=True), ops).all()
        rows = [{"id": f"node_{i:016x}", "operator_id": op_ids[min(i // per_operator, len(op_ids) - 1)],
                 "status": NodeStatus.ONLINE, "api_key_id": f"k{i:015x}", "api_key_hash": "0" * 64,
                 "last_heartbeat_at": now - (silent_for if i < n else timedelta(0))} for i in range(n + 3)]
        s.execute(insert(Node), rows)
        s.commit()
    return [r["id"] for r in rows[:n]]


def _emails_by_person(session_factory) -> dict[str, list[OutboxMessage]]:
    by: dict[str, list[OutboxMessage]] = {}
    for m in _outbox(session_factory):
        by.setdefault(m.payload["to"], []).append(m)
    return by


def test_a_fleet_silent_at_once_is_one_digest_per_person_and_its_recovery_one_more(
    db_url, session_factory, alert_admin
):
    with session_factory() as s:
        s.add(AdminUser(email="second-admin@noderr.example", password_hash="-"))
        s.commit()
    nodes = _silent_fleet(session_factory, 1500, per_operator=100, silent_for=timedelta(hours=1))

    # The sensor asks for one run, whatever the number of silent nodes; the run handles them all.
    tick = sensor_tick(db_url, None)
    assert len(tick.run_requests) == 1
    assert run_job(db_url, tick.run_requests[0]).success
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Node).where(Node.status == NodeStatus.OFFLINE)) == 1500
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.closed_at.is_(None))) == 1500
        # The audit trail still tells, node by node, when and why it went offline.
        audited = s.scalars(select(AuditLogEntry.subject_id).where(AuditLogEntry.action == "node.offline")).all()
        assert sorted(audited) == sorted(nodes)
    by_person = _emails_by_person(session_factory)
    assert sorted(by_person) == sorted([alert_admin, "second-admin@noderr.example",
                                        *(f"fleet{o}@example.com" for o in range(15))])
    assert all(len(mails) == 1 for mails in by_person.values())
    admin_mail = by_person[alert_admin][0].payload
    assert admin_mail["template"] == "nodes_health_digest" and admin_mail["context"]["count"] == 1500
    text = render_email("nodes_health_digest", admin_mail["context"]).text
    assert "1500 Noderr nodes stopped reporting" in text and "and 1480 more" in text
    assert f"Open alerts: {admin_mail['context']['alerts_url']}" in text and len(text.splitlines()) < 60
    operator_mail = by_person["fleet0@example.com"][0].payload
    assert operator_mail["context"]["count"] == 100
    assert "All your nodes: " in render_email("nodes_health_digest", operator_mail["context"]).text

    # The next tick finds nothing new to do.
    idle = sensor_tick(db_url, tick.cursor)
    assert idle.run_requests == []

    # They all come back: one recovery digest per person, no per-node email, every alert closed.
    with session_factory() as s:
        s.execute(OutboxMessage.__table__.delete())
        s.execute(update(Node).values(status=NodeStatus.ONLINE, last_heartbeat_at=utcnow()))
        s.commit()
    back = sensor_tick(db_url, idle.cursor)
    assert len(back.run_requests) == 1
    assert run_job(db_url, back.run_requests[0]).success
    by_person = _emails_by_person(session_factory)
    assert len(by_person) == 17 and all(len(mails) == 1 for mails in by_person.values())
    assert {m.payload["template"] for mails in by_person.values() for m in mails} == {"nodes_health_digest"}
    assert {m.payload["context"]["event"] for mails in by_person.values() for m in mails} == {"recovered"}
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.closed_at.is_(None))) == 0
