"""The operator's own pages and actions through the real app: their nodes (status, heartbeat,
models, suspend reason, alerts, earnings), nothing of anyone else's, key rotation by e-mail, a
request for another node that the admin decides like any application, and a wallet change signed
by the old wallet."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from eth_account import Account
from sqlalchemy import select

from noderr_core.audit import Actor
from noderr_core.onboarding.applications import decide_application
from noderr_core.onboarding.screening import screen_application
from noderr_core.security import unseal
from noderr_core.tables import (
    ApplicationStatus,
    AuditLogEntry,
    Node,
    NodeStatus,
    Operator,
    OperatorApplication,
    OutboxMessage,
)
from noderr_core.tables.network import Alert
from noderr_core.tables.rewards import NodeReward, RewardEpoch
from noderr_core.telemetry import record_heartbeat
from noderr_protocol.work import HeartbeatIn
from tests.support.admin import admin_login, csrf_from, provision
from tests.support.factories import make_node
from tests.support.operators import operator_csrf, operator_sign_in, sign_text

KEY = "0x6370fd033278c143179d81c5526140625662b8daa446c22ee2d73db3707e620c"
WALLET = Account.from_key(KEY).address
HTML = {"accept": "text/html"}


def _world(portal_db) -> dict:
    """Ada (wallet KEY) with an online node (heartbeat, earnings) and a suspended offline one;
    Bob with a node of his own."""
    with portal_db() as s:
        ada = Operator(email="ada@example.com", full_name="Ada Lovelace", wallet_address=WALLET)
        s.add(ada)
        s.flush()
        online, _ = make_node(s, operator=ada, status=NodeStatus.PROVISIONED)
        record_heartbeat(s, online, HeartbeatIn(uptime_seconds=60, model_versions={"iris-classifier": 3}))
        suspended, _ = make_node(s, operator=ada, status=NodeStatus.SUSPENDED)
        suspended.status_reason = "returned wrong answers to 12 challenge tasks"
        s.add(Alert(kind="node_offline", node_id=suspended.id,
                    details={"last_heartbeat_at": "2026-11-29T10:00:00+00:00", "offline_after_seconds": 120}))
        bob_node, _ = make_node(s, email="bob@example.com")
        for day, amount in ((1, 5 * 10**18), (2, 7 * 10**18)):
            start = datetime(2026, 11, day, tzinfo=UTC)
            epoch = RewardEpoch(epoch_date=start.date(), starts_at=start, ends_at=start + timedelta(days=1),
                                pool_amount=100 * 10**18, distributed_amount=amount, node_count=1,
                                operator_count=1, total_score=100, scoring={}, status="published")
            s.add(epoch)
            s.flush()
            s.add(NodeReward(epoch_id=epoch.id, node_id=online.id, operator_wallet=WALLET,
                             heartbeat_count=10, uptime_slots=200, eligible_slots=288, tasks_valid=30,
                             tasks_invalid=1, tasks_error=0, uptime_points=2000, task_points=150,
                             invalid_penalty=25, downtime_penalty=440, score=1685, amount=amount))
        s.commit()
        return {"ada": ada.id, "online": online.id, "suspended": suspended.id, "bob_node": bob_node.id}


def test_the_operator_sees_their_nodes_and_nothing_else(portal_client, portal_db):
    w = _world(portal_db)
    assert operator_sign_in(portal_client, KEY).status_code == 200
    page = portal_client.get("/operator", headers=HTML).text
    assert w["online"] in page and w["suspended"] in page and w["bob_node"] not in page
    assert "iris-classifier v3" in page
    assert "returned wrong answers to 12 challenge tasks" in page  # the suspend reason
    assert "no heartbeat since 2026-11-29T10:00:00+00:00 (threshold 120 s)" in page  # open alert
    assert "12.0000" in page  # 5 + 7 NDR earned
    assert 'id="chart-earnings"' in page and 'data-points="2"' in page

    node_page = portal_client.get(f"/operator/nodes/{w['online']}", headers=HTML)
    assert node_page.status_code == 200
    assert 'id="chart-node-earnings"' in node_page.text and "11-02" in node_page.text
    assert "200/288" in node_page.text and "30 / 1" in node_page.text
    # Stake and slashing as the operator sees them: nothing bonded yet, no case.
    assert 'data-testid="operator-stake"' in node_page.text and "may not lease work" in node_page.text
    assert 'data-testid="operator-slashing-cases"' in node_page.text

    other = portal_client.get(f"/operator/nodes/{w['bob_node']}", headers=HTML)
    assert other.status_code == 404 and "not one of your nodes" in other.text
    csrf = operator_csrf(portal_client)
    r = portal_client.post(f"/operator/nodes/{w['bob_node']}/rotate-key", data={"csrf_token": csrf},
                           headers=HTML)
    assert r.status_code == 404
    with portal_db() as s:
        assert s.get(Node, w["bob_node"]).api_key_version == 1


def test_rotating_a_key_emails_a_new_single_use_bundle_link(portal_client, portal_db, portal_settings):
    w = _world(portal_db)
    operator_sign_in(portal_client, KEY)
    node_id = w["online"]
    # Without the CSRF token nothing happens.
    refused = portal_client.post(f"/operator/nodes/{node_id}/rotate-key", data={}, headers=HTML)
    assert refused.status_code == 403 and "CSRF" in refused.text
    r = portal_client.post(f"/operator/nodes/{node_id}/rotate-key",
                           data={"csrf_token": operator_csrf(portal_client)}, headers=HTML)
    assert r.status_code == 200 and "has a new API key" in r.text
    with portal_db() as s:
        node = s.get(Node, node_id)
        assert node.api_key_version == 2
        mail = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")).one()
        entry = s.scalars(select(AuditLogEntry).where(AuditLogEntry.action == "node.download_link_reissued")).one()
    assert mail.payload["to"] == "ada@example.com" and mail.payload["template"] == "download_link"
    assert mail.payload["context"]["operator_pages_url"] == "http://testserver/operator"
    link = json.loads(unseal(mail.payload["sealed_context"], portal_settings.secret_key.get_secret_value()))
    assert link["portal_url"].startswith("http://testserver/portal/download/")
    assert portal_client.get(link["portal_url"].removeprefix("http://testserver")).status_code == 200
    assert entry.actor_type == "operator" and entry.actor_id == str(w["ada"])


def test_a_further_node_is_an_application_the_admin_decides(portal_client, portal_db, portal_settings):
    w = _world(portal_db)
    operator_sign_in(portal_client, KEY)
    csrf = operator_csrf(portal_client)
    r = portal_client.post("/operator/node-requests", headers=HTML,
                           data={"csrf_token": csrf, "region": "eu-west", "tier": "gpu-small", "note": "second site"})
    assert r.status_code == 200 and "for another node was sent to the admins" in r.text
    again = portal_client.post("/operator/node-requests", headers=HTML,
                               data={"csrf_token": csrf, "region": "us-east"})
    assert again.status_code == 409 and "still received" in again.text
    with portal_db() as s:
        app = s.scalars(select(OperatorApplication)).one()
        assert (app.email, app.wallet_address, app.region, app.node_tier) == (
            "ada@example.com", WALLET, "eu-west", "gpu-small")
        screen_application(s, app.id, Actor.pipeline("test"))
        decide_application(s, application_id=app.id, actor=Actor.system("test-admin"), decision="approve",
                           reason=None)
        s.commit()
        app_id = app.id
    # The admin sees it on the dashboard like any application, with the operator's note.
    admin_login(portal_client, email=portal_settings.bootstrap_admin_email,
                password=portal_settings.bootstrap_admin_password.get_secret_value())
    detail = portal_client.get(f"/admin/applications/{app_id}", headers=HTML)
    assert detail.status_code == 200 and "second site" in detail.text and "ada@example.com" in detail.text
    outcome = provision(portal_db, portal_settings, app_id)
    assert outcome.action == "provisioned" and outcome.operator_id == w["ada"]
    page = portal_client.get("/operator", headers=HTML).text
    assert outcome.node_id in page


def test_a_wallet_change_needs_the_old_wallets_signature(portal_client, portal_db):
    w = _world(portal_db)
    operator_sign_in(portal_client, KEY)
    csrf = {"X-CSRF-Token": operator_csrf(portal_client)}
    new = Account.create()
    # Not without the CSRF header; not to a malformed address; not to another operator's wallet.
    assert portal_client.post("/operator/wallet/challenge", json={"new_wallet": new.address}).status_code == 403
    bad = portal_client.post("/operator/wallet/challenge", json={"new_wallet": "0xabc"}, headers=csrf)
    assert bad.status_code == 400
    with portal_db() as s:
        bob_wallet = s.get(Operator, s.get(Node, w["bob_node"]).operator_id).wallet_address
    taken = portal_client.post("/operator/wallet/challenge", json={"new_wallet": bob_wallet}, headers=csrf)
    assert taken.status_code == 409 and "another operator" in taken.json()["detail"]

    challenge = portal_client.post("/operator/wallet/challenge", json={"new_wallet": new.address}, headers=csrf).json()
    assert challenge["sign_with"] == WALLET and new.address in challenge["message"]
    # Signed by the NEW wallet: refused (the message names the old one), nothing changes.
    forged = portal_client.post("/operator/wallet", headers=csrf, json={
        "message": challenge["message"], "signature": sign_text(new.key.hex(), challenge["message"])})
    assert forged.status_code == 401 and "signature was made by" in forged.json()["detail"]
    with portal_db() as s:
        assert s.get(Operator, w["ada"]).wallet_address == WALLET
    done = portal_client.post("/operator/wallet", headers=csrf, json={
        "message": challenge["message"], "signature": sign_text(KEY, challenge["message"])})
    assert done.status_code == 200 and done.json()["wallet"] == new.address
    with portal_db() as s:
        ada = s.get(Operator, w["ada"])
        assert ada.wallet_address == new.address and ada.wallet_proven_at is None
        entry = s.scalars(select(AuditLogEntry).where(AuditLogEntry.action == "operator.wallet_changed")).one()
        assert entry.details["old_wallet"] == WALLET and entry.details["proof"] == "signature of the old wallet"
    # Every session of the operator ended; the old wallet cannot sign in any more, the new one can.
    assert portal_client.get("/operator", headers={"accept": "application/json"}).status_code == 401
    old = portal_client.post("/operator/sign-in/challenge", json={"address": WALLET})
    assert old.status_code == 403
    assert operator_sign_in(portal_client, new.key.hex()).json()["wallet_proven_now"] is True


def test_an_admin_can_change_a_wallet_with_a_reason_on_record(portal_client, portal_db, portal_settings):
    w = _world(portal_db)
    new = Account.create().address
    admin_login(portal_client, email=portal_settings.bootstrap_admin_email,
                password=portal_settings.bootstrap_admin_password.get_secret_value())
    page = portal_client.get(f"/admin/operators/{w['ada']}", headers=HTML).text
    csrf = csrf_from(page)
    assert "not proven yet" in page
    refused = portal_client.post(f"/admin/operators/{w['ada']}/wallet", headers=HTML,
                                 data={"csrf_token": csrf, "new_wallet": new, "reason": " "})
    assert refused.status_code == 400 and "needs a reason" in refused.text
    done = portal_client.post(f"/admin/operators/{w['ada']}/wallet", headers=HTML,
                              data={"csrf_token": csrf, "new_wallet": new,
                                    "reason": "old key lost; identity checked by video call"})
    assert done.status_code == 200 and f"now go to {new}" in done.text
    with portal_db() as s:
        entry = s.scalars(select(AuditLogEntry).where(AuditLogEntry.action == "operator.wallet_changed")).one()
        assert entry.actor_type == "admin" and entry.details["proof"] == "admin action"
        assert "video call" in entry.details["reason"] and entry.details["old_wallet"] == WALLET
        assert s.get(Operator, w["ada"]).wallet_address == new
