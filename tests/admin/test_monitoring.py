"""Monitoring pages and node actions: overview charts, node page, operator page, suspend/resume/
remove/rotate, models, clients and rewards pages — on live rows written by the real core code."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from noderr_core.audit import Actor
from noderr_core.tables import AuditLogEntry, Heartbeat, Node, NodeStatus, OutboxMessage
from noderr_core.tables.model_registry import ModelVersion
from noderr_core.tasks.clients import authenticate_client
from noderr_core.telemetry import record_heartbeat
from noderr_core.timeutil import utcnow
from tests.support.admin import admin_csrf
from tests.support.node import heartbeat_in
from tests.support.factories import make_node
from tests.support.tasks import publish_test_model

HTML = {"accept": "text/html"}


def _node_with_heartbeats(admin_db, minutes_ago=(50, 30, 10)) -> str:
    with admin_db() as s:
        node, _key = make_node(s, status=NodeStatus.PROVISIONED)
        for m in minutes_ago:
            record_heartbeat(s, node, heartbeat_in(latency_p50_ms=10 + m, latency_p95_ms=30 + m))
            beat = s.scalars(select(Heartbeat).where(Heartbeat.node_id == node.id)
                             .order_by(Heartbeat.id.desc())).first()
            beat.received_at = utcnow() - timedelta(minutes=m)
        s.commit()
        return node.id


def test_overview_shows_counts_and_charts_with_live_data(admin_client, admin_db):
    node_id = _node_with_heartbeats(admin_db)
    with admin_db() as s:
        make_node(s, status=NodeStatus.SUSPENDED)
        publish_test_model(s, "iris", 1, "active")
        s.commit()
    page = admin_client.get("/admin?window=1h")
    assert page.status_code == 200
    text = page.text
    assert re.search(r'id="nodes-online">1<', text) and re.search(r'id="nodes-suspended">1<', text)
    latency = re.search(r'<svg[^>]*data-points="(\d+)"[^>]*id="chart-latency"', text)
    assert latency and int(latency.group(1)) == 6  # 3 buckets with data x (p50, p95)
    online = re.search(r'<svg[^>]*data-points="(\d+)"[^>]*id="chart-online"', text)
    assert online and int(online.group(1)) >= 3
    assert "<polyline" in text
    assert "v1 on 1 node" in admin_client.get("/admin/models").text
    assert "iris" in text and "active: <strong>v1</strong>" in text
    bad = admin_client.get("/admin?window=1y", headers=HTML)
    assert bad.status_code == 422


def test_node_page_shows_heartbeat_timeline_and_actions(admin_client, admin_db):
    node_id = _node_with_heartbeats(admin_db)
    page = admin_client.get(f"/admin/nodes/{node_id}?window=1h")
    assert page.status_code == 200
    strip = re.search(r'data-buckets="(\d+)" data-reported="(\d+)" id="chart-heartbeats"', page.text)
    assert strip and int(strip.group(2)) == 3
    assert 'id="suspend"' in page.text and 'id="rotate-key"' in page.text
    assert node_id in admin_client.get("/admin/nodes?status=online").text
    assert node_id not in admin_client.get("/admin/nodes?status=offline").text
    assert admin_client.get("/admin/nodes/node_nope", headers=HTML).status_code == 404


def test_suspend_resume_remove_queue_chain_messages_and_audit(admin_client, admin_db):
    node_id = _node_with_heartbeats(admin_db, minutes_ago=(5,))
    csrf = admin_csrf(admin_client)
    no_reason = admin_client.post(f"/admin/nodes/{node_id}/suspend", data={"csrf_token": csrf},
                                  headers=HTML)
    assert no_reason.status_code == 400 and "reason is required" in no_reason.text

    r = admin_client.post(f"/admin/nodes/{node_id}/suspend",
                          data={"csrf_token": csrf, "reason": "serving bad results"})
    assert r.status_code == 200 and "suspended" in r.text and "serving bad results" in r.text
    again = admin_client.post(f"/admin/nodes/{node_id}/suspend",
                              data={"csrf_token": csrf, "reason": "x"}, headers=HTML)
    assert again.status_code == 409 and "already suspended" in again.text

    admin_client.post(f"/admin/nodes/{node_id}/resume", data={"csrf_token": csrf})
    admin_client.post(f"/admin/nodes/{node_id}/suspend", data={"csrf_token": csrf, "reason": "again"})
    admin_client.post(f"/admin/nodes/{node_id}/resume", data={"csrf_token": csrf})
    r = admin_client.post(f"/admin/nodes/{node_id}/remove", data={"csrf_token": csrf, "reason": "left"})
    assert r.status_code == 200 and "removed" in r.text

    with admin_db() as s:
        node = s.get(Node, node_id)
        assert node.status == NodeStatus.REMOVED
        keys = s.scalars(select(OutboxMessage.idempotency_key).where(
            OutboxMessage.kind == "chain").order_by(OutboxMessage.id)).all()
        actions = s.scalars(select(AuditLogEntry.action).where(
            AuditLogEntry.subject_type == "node", AuditLogEntry.subject_id == node_id)
            .order_by(AuditLogEntry.id)).all()
    assert keys == [f"chain:deregister_node:{node_id}:1", f"chain:register_node:{node_id}:2",
                    f"chain:deregister_node:{node_id}:2", f"chain:register_node:{node_id}:3",
                    f"chain:deregister_node:{node_id}:3"]
    assert actions[-5:] == ["node.suspended", "node.resumed", "node.suspended", "node.resumed",
                            "node.removed"]


def test_resumed_node_needs_a_heartbeat_to_be_online_again(admin_db):
    from noderr_core.nodes import resume_node, suspend_node

    node_id = _node_with_heartbeats(admin_db, minutes_ago=(1,))
    with admin_db() as s:
        suspend_node(s, node_id=node_id, actor=Actor.system(), reason="maintenance")
        node = resume_node(s, node_id=node_id, actor=Actor.system())
        assert node.status == NodeStatus.OFFLINE
        record_heartbeat(s, node, heartbeat_in())
        assert node.status == NodeStatus.ONLINE
        s.commit()


def test_operator_page_lists_nodes_and_applications(admin_client, admin_db):
    node_id = _node_with_heartbeats(admin_db, minutes_ago=(1,))
    with admin_db() as s:
        operator_id = s.get(Node, node_id).operator_id
    assert "Test Operator" in admin_client.get("/admin/operators").text
    page = admin_client.get(f"/admin/operators/{operator_id}").text
    assert node_id in page and "No rewards yet" in page


def test_models_page_promotes_to_canary_activates_and_rolls_back(admin_client, admin_db):
    with admin_db() as s:
        publish_test_model(s, "iris", 1, "active")
        publish_test_model(s, "iris", 2, "staged")
        s.commit()
    csrf = admin_csrf(admin_client)
    missing_pct = admin_client.post("/admin/models/iris/versions/2/promote",
                                    data={"csrf_token": csrf, "to_status": "canary"}, headers=HTML)
    assert missing_pct.status_code == 400
    r = admin_client.post("/admin/models/iris/versions/2/promote",
                          data={"csrf_token": csrf, "to_status": "canary", "rollout_percent": "20"})
    assert r.status_code == 200 and "iris v2 is now in canary at 20 %" in r.text
    assert "canary <strong>v2</strong> at 20 %" in admin_client.get("/admin").text
    r = admin_client.post("/admin/models/iris/versions/2/promote",
                          data={"csrf_token": csrf, "to_status": "active"})
    assert "iris v2 is now active" in r.text
    retire_active = admin_client.post("/admin/models/iris/versions/2/promote",
                                      data={"csrf_token": csrf, "to_status": "retired"}, headers=HTML)
    assert retire_active.status_code == 409
    # publish_test_model writes no activation time, so name the version (the "Roll back to v1" button)
    r = admin_client.post("/admin/models/iris/rollback", data={"csrf_token": csrf, "to_version": "1"})
    assert r.status_code == 200 and "v1 is active again" in r.text
    with admin_db() as s:
        status = dict(s.execute(select(ModelVersion.version, ModelVersion.status)).all())
        actions = s.scalars(select(AuditLogEntry.action).where(
            AuditLogEntry.subject_type == "model_version").order_by(AuditLogEntry.id)).all()
    assert status == {1: "active", 2: "retired"}
    assert actions == ["model.promote", "model.promote", "model.rollback"]


def test_clients_page_shows_the_key_once_and_revokes_it(admin_client, admin_db):
    csrf = admin_csrf(admin_client)
    r = admin_client.post("/admin/clients", data={"csrf_token": csrf, "name": "Acme Labs"})
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    key = re.search(r'id="new-key-value">(ck_[^<]+)<', r.text).group(1)
    with admin_db() as s:
        assert authenticate_client(s, key).name == "Acme Labs"
    listing = admin_client.get("/admin/clients").text
    assert "Acme Labs" in listing and key not in listing
    dup = admin_client.post("/admin/clients", data={"csrf_token": csrf, "name": "Acme Labs"},
                            headers=HTML)
    assert dup.status_code == 409 and "already exists" in dup.text
    key_id = key.split("_")[1]
    r = admin_client.post(f"/admin/clients/keys/{key_id}/revoke", data={"csrf_token": csrf})
    assert r.status_code == 200 and f"Key {key_id} revoked" in r.text
    with admin_db() as s:
        assert authenticate_client(s, key) is None
    audit = admin_client.get("/admin/audit?subject_type=client").text
    assert "client.created" in audit and "client.key_revoked" in audit


def test_rewards_page_renders_without_epochs(admin_client):
    page = admin_client.get("/admin/rewards")
    assert page.status_code == 200 and "No epoch computed yet" in page.text
