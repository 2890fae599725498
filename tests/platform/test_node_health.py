"""Node health: stale nodes go offline with one alert and one email per person; recovery closes it.

Runs on SQLite and PostgreSQL (`db_url`), through the core functions, the sensor
(`build_sensor_context`, asserting run requests and cursor) and the job executed in process.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from noderr_core.audit import Actor
from noderr_core.email import render_email
from noderr_core.tables import AuditLogEntry, Node, NodeStatus, OutboxMessage
from noderr_core.tables.network import Alert
from noderr_core.network import (
    CLOSE_NODE_SUSPENDED,
    close_alert,
    find_closable_alerts,
    find_stale_nodes,
    mark_offline,
    node_status_counts,
    open_alert_count,
)
from noderr_core.settings import Settings
from noderr_core.telemetry import record_heartbeat
from noderr_core.timeutil import utcnow
from noderr_protocol.work import HeartbeatIn
from tests.support.platform import run_job, sensor_tick

THRESHOLD = 60


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(env="test", state_dir=tmp_path / "state", public_base_url="https://noderr.example")


def emails(session, template: str) -> list[OutboxMessage]:
    rows = session.scalars(
        select(OutboxMessage).where(OutboxMessage.kind == "email").order_by(OutboxMessage.id)
    )
    return [m for m in rows if m.payload["template"] == template]


def heartbeat(session_factory, node_id: str) -> None:
    with session_factory() as s:
        record_heartbeat(s, s.get(Node, node_id), HeartbeatIn(uptime_seconds=5))
        s.commit()


def test_only_online_nodes_silent_past_the_threshold_are_stale(
    session_factory, node_with_heartbeat_age
):
    stale, _ = node_with_heartbeat_age(3600)
    never, _ = node_with_heartbeat_age(None)
    node_with_heartbeat_age(5)  # fresh
    node_with_heartbeat_age(3600, status=NodeStatus.SUSPENDED)
    node_with_heartbeat_age(3600, status=NodeStatus.OFFLINE)
    node_with_heartbeat_age(None, status=NodeStatus.PROVISIONED)
    with session_factory() as s:
        found = find_stale_nodes(s, offline_after_seconds=THRESHOLD)
    assert sorted(n.node_id for n in found) == sorted([stale, never])


def test_offline_opens_one_alert_and_emails_operator_and_admins_once(
    session_factory, node_with_heartbeat_age, alert_admin, settings
):
    node_id, operator_email = node_with_heartbeat_age(3600)
    actor = Actor.pipeline("run-1")
    with session_factory() as s:
        alert = mark_offline(s, node_id=node_id, offline_after_seconds=THRESHOLD,
                             settings=settings, actor=actor)
        s.commit()
    assert alert is not None
    with session_factory() as s:
        node = s.get(Node, node_id)
        assert node.status == NodeStatus.OFFLINE
        assert f"no heartbeat for more than {THRESHOLD}s" in node.status_reason
        queued = emails(s, "node_offline")
        assert sorted(m.payload["to"] for m in queued) == sorted([operator_email, alert_admin])
        assert all(m.subject_id == node_id for m in queued)
        assert {m.payload["subject"] for m in queued} == {f"Noderr node {node_id} is offline"}
        actions = set(s.scalars(select(AuditLogEntry.action)))
        assert {"node.offline", "alert.opened"} <= actions
        assert open_alert_count(s) == 1
        assert node_status_counts(s)["offline"] == 1

    # A second run (retry, duplicate request) changes nothing and sends nothing more.
    with session_factory() as s:
        again = mark_offline(s, node_id=node_id, offline_after_seconds=THRESHOLD,
                             settings=settings, actor=actor)
        s.commit()
        assert again is None
        assert len(emails(s, "node_offline")) == 2
        assert len(list(s.scalars(select(Alert)))) == 1


def test_queued_alert_emails_render_for_operator_and_admin(
    session_factory, node_with_heartbeat_age, alert_admin, settings
):
    node_id, operator_email = node_with_heartbeat_age(3600)
    with session_factory() as s:
        mark_offline(s, node_id=node_id, offline_after_seconds=THRESHOLD, settings=settings,
                     actor=Actor.system())
        s.commit()
        by_to = {m.payload["to"]: m for m in emails(s, "node_offline")}
    operator_mail = render_email("node_offline", by_to[operator_email].payload["context"])
    admin_mail = render_email("node_offline", by_to[alert_admin].payload["context"])
    assert "docker compose up -d" in operator_mail.text
    assert node_id in operator_mail.html
    assert f"https://noderr.example/admin/nodes/{node_id}" in admin_mail.text
    assert "docker compose" not in admin_mail.text


def test_heartbeat_before_the_job_runs_wins(session_factory, node_with_heartbeat_age, settings):
    node_id, _ = node_with_heartbeat_age(3600)
    with session_factory() as s:
        assert [n.node_id for n in find_stale_nodes(s, offline_after_seconds=THRESHOLD)] == [node_id]
    heartbeat(session_factory, node_id)  # arrives between the sensor's read and the job
    with session_factory() as s:
        assert mark_offline(s, node_id=node_id, offline_after_seconds=THRESHOLD,
                            settings=settings, actor=Actor.system()) is None
        s.commit()
        assert s.get(Node, node_id).status == NodeStatus.ONLINE
        assert open_alert_count(s) == 0
        assert emails(s, "node_offline") == []


def test_recovery_closes_the_alert_and_sends_one_recovery_email_each(
    session_factory, node_with_heartbeat_age, alert_admin, settings
):
    node_id, operator_email = node_with_heartbeat_age(3600)
    with session_factory() as s:
        alert = mark_offline(s, node_id=node_id, offline_after_seconds=THRESHOLD,
                             settings=settings, actor=Actor.system())
        s.commit()
        assert find_closable_alerts(s) == []  # still down: nothing to close
        assert close_alert(s, alert_id=alert.id, settings=settings, actor=Actor.system()) is None

    heartbeat(session_factory, node_id)
    with session_factory() as s:
        closable = find_closable_alerts(s)
        assert [(c.alert_id, c.reason) for c in closable] == [(alert.id, "recovered")]
        closed = close_alert(s, alert_id=alert.id, settings=settings, actor=Actor.system())
        s.commit()
        assert closed is not None and closed.closed_at is not None
        assert closed.details["closed_reason"] == "recovered"
    with session_factory() as s:
        assert close_alert(s, alert_id=alert.id, settings=settings, actor=Actor.system()) is None
        s.commit()
        recovered = emails(s, "node_recovered")
        assert sorted(m.payload["to"] for m in recovered) == sorted([operator_email, alert_admin])
        assert s.get(Node, node_id).status == NodeStatus.ONLINE
        assert open_alert_count(s) == 0
        text = render_email("node_recovered", recovered[0].payload["context"]).text
        assert "back online" in text


def test_suspending_an_offline_node_closes_its_alert_without_recovery_email(
    session_factory, node_with_heartbeat_age, alert_admin, settings
):
    node_id, _ = node_with_heartbeat_age(3600)
    with session_factory() as s:
        alert = mark_offline(s, node_id=node_id, offline_after_seconds=THRESHOLD,
                             settings=settings, actor=Actor.system())
        s.get(Node, node_id).status = NodeStatus.SUSPENDED
        s.commit()
    with session_factory() as s:
        assert [(c.alert_id, c.reason) for c in find_closable_alerts(s)] == [
            (alert.id, CLOSE_NODE_SUSPENDED)
        ]
        assert close_alert(s, alert_id=alert.id, settings=settings, actor=Actor.system())
        s.commit()
        assert emails(s, "node_recovered") == []


def test_concurrent_health_runs_open_a_single_alert(
    session_factory, node_with_heartbeat_age, alert_admin, settings
):
    node_id, _ = node_with_heartbeat_age(3600)
    barrier = threading.Barrier(4)
    results: list = []
    errors: list = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            with session_factory() as s:
                alert = mark_offline(s, node_id=node_id, offline_after_seconds=THRESHOLD,
                                     settings=settings, actor=Actor.system())
                s.commit()
                results.append(alert is not None)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(results) == [False, False, False, True]
    with session_factory() as s:
        assert len(list(s.scalars(select(Alert)))) == 1
        assert len(emails(s, "node_offline")) == 2


# --- Dagster: sensor + job -------------------------------------------------------------------


def test_sensor_requests_each_incident_once_and_the_job_carries_it_out(
    db_url, session_factory, node_with_heartbeat_age, alert_admin
):
    stale_id, operator_email = node_with_heartbeat_age(3600)
    fresh_id, _ = node_with_heartbeat_age(5)

    first = sensor_tick(db_url, None)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    config = request.run_config["ops"]["apply_node_health_changes"]["config"]
    assert config == {"node_ids": None, "alert_ids": []}  # every node stale when the run starts
    assert request.run_key.startswith("node-health:")
    requested = json.loads(first.cursor)["requested"]
    beat = _last_beat(session_factory, stale_id)
    assert list(requested) == [f"offline:1:{beat}:{beat}"]

    # Same state, cursor carried over: nothing new to request.
    second = sensor_tick(db_url, first.cursor)
    assert second.run_requests == []
    assert "already requested" in second.skip_reason.skip_message
    assert second.cursor == first.cursor

    # The sensor never wrote anything.
    with session_factory() as s:
        assert s.get(Node, stale_id).status == NodeStatus.ONLINE
        assert open_alert_count(s) == 0

    result = run_job(db_url, request)
    assert result.success
    summary = result.output_for_node("apply_node_health_changes")
    assert summary["marked_offline"] == [stale_id]
    assert summary["emails_queued"] == 2

    # Running the same request again (a retry) changes nothing and sends nothing.
    again = run_job(db_url, request)
    assert again.success
    assert again.output_for_node("apply_node_health_changes")["marked_offline"] == []
    with session_factory() as s:
        assert s.get(Node, stale_id).status == NodeStatus.OFFLINE
        assert s.get(Node, fresh_id).status == NodeStatus.ONLINE
        assert len(emails(s, "node_offline")) == 2
        alert_id = s.scalar(select(Alert.id))

    idle = sensor_tick(db_url, second.cursor)
    assert idle.run_requests == []
    assert json.loads(idle.cursor)["requested"] == {}  # handled candidates leave the cursor

    # The node comes back: the next tick requests the alert's closing, with a different run key.
    heartbeat(session_factory, stale_id)
    recovery = sensor_tick(db_url, idle.cursor)
    assert len(recovery.run_requests) == 1
    close_request = recovery.run_requests[0]
    assert close_request.run_config["ops"]["apply_node_health_changes"]["config"] == {
        "node_ids": [], "alert_ids": None
    }
    assert close_request.run_key != request.run_key
    assert list(json.loads(recovery.cursor)["requested"]) == [f"close:1:{alert_id}:{alert_id}"]
    assert run_job(db_url, close_request).success
    assert run_job(db_url, close_request).success
    with session_factory() as s:
        recovered = emails(s, "node_recovered")
        assert sorted(m.payload["to"] for m in recovered) == sorted([operator_email, alert_admin])
        assert open_alert_count(s) == 0
    final = sensor_tick(db_url, recovery.cursor)
    assert final.run_requests == []
    assert "all online nodes reported" in final.skip_reason.skip_message


def test_sensor_requests_again_when_a_requested_run_never_acted(
    db_url, node_with_heartbeat_age
):
    stale_id, _ = node_with_heartbeat_age(3600)
    first = sensor_tick(db_url, None)
    # Pretend the first request was made long ago and its run failed (the node is still stale).
    requested = json.loads(first.cursor)["requested"]
    key = next(iter(requested))
    requested[key][0] = (utcnow() - timedelta(hours=1)).isoformat()
    retried = sensor_tick(db_url, json.dumps({"requested": requested}))
    assert len(retried.run_requests) == 1
    assert retried.run_requests[0].run_key != first.run_requests[0].run_key
    assert json.loads(retried.cursor)["requested"][key][1] == 2


def _last_beat(session_factory, node_id: str) -> str:
    with session_factory() as s:
        return s.get(Node, node_id).last_heartbeat_at.isoformat()
