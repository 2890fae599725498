"""The onboarding journey through the Dagster sensors and jobs, on SQLite and PostgreSQL.

Sensors are evaluated with build_sensor_context (run requests AND cursor asserted), jobs are
executed in process with real resources, emails go through a real SMTP server, and the emailed
link downloads the bundle through the real portal routes.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import timedelta

import dagster as dg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from noderr_core.audit import Actor
from noderr_core.tables import (
    ApplicationStatus,
    AuditLogEntry,
    BundleDownload,
    DownloadToken,
    Node,
    Operator,
    OperatorApplication,
    OutboxMessage,
)
from noderr_core.onboarding.applications import DecisionError, decide_application
from noderr_core.onboarding.typeform import ingest_delivery, load_field_map
from noderr_core.security import api_key_matches
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.onboarding import defs as onboarding_defs
from noderr_pipelines.defs.onboarding.jobs import carry_out_decision_job, screen_application_job
from noderr_pipelines.defs.onboarding.resources import OnboardingSettings
from noderr_pipelines.defs.onboarding.sensors import (
    application_decision_sensor,
    application_screening_sensor,
)
from noderr_pipelines.defs.outbox import defs as outbox_defs
from noderr_pipelines.defs.outbox.jobs import relay_emails_job
from noderr_pipelines.defs.outbox.sensors import email_relay_sensor
from noderr_pipelines.resources import ChainResource, DatabaseResource
from noderr_demo.typeform_payloads import application_payload, encode


@pytest.fixture
def resources(db_url, smtp_server):
    return {"database": DatabaseResource(database_url=db_url),
            "onboarding_settings": OnboardingSettings(smtp_url=smtp_server.url,
                                                      public_base_url="http://testserver")}


def ingest(session_factory, **kwargs) -> int:
    with session_factory() as s:
        result = ingest_delivery(s, encode(application_payload(**kwargs)), load_field_map())
        s.commit()
    return result.application_id


def tick(sensor, resources, cursor=None):
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(cursor=cursor, instance=instance, resources=resources)
        result = sensor(ctx)
        return result, result.cursor


def run_requests(result) -> list[dg.RunRequest]:
    return list(result.run_requests or [])


def run_job(job, resources, application_id=None):
    config = None
    if application_id is not None:
        op = job.graph.node_defs[0].name
        config = {"ops": {op: {"config": {"application_id": application_id}}}}
    result = job.execute_in_process(run_config=config, resources=resources)
    assert result.success
    return result


def test_screening_sensor_requests_one_run_per_received_application(session_factory, resources):
    first, second = ingest(session_factory), ingest(session_factory)
    result, cursor = tick(application_screening_sensor, resources)
    reqs = run_requests(result)
    assert [r.run_key for r in reqs] == [f"screen:{first}:1", f"screen:{second}:1"]
    assert reqs[0].run_config == {"ops": {"screen_application_op": {"config": {"application_id": first}}}}
    assert sorted(json.loads(cursor)["requested"]) == sorted([f"screen:{first}:1", f"screen:{second}:1"])
    # Same state, same cursor: nothing new is requested.
    again, cursor2 = tick(application_screening_sensor, resources, cursor)
    assert run_requests(again) == [] and again.skip_reason is not None
    assert cursor2 == cursor
    # After screening the first, only the second remains in the cursor; a new one is requested.
    run_job(screen_application_job, resources, first)
    third = ingest(session_factory)
    later, cursor3 = tick(application_screening_sensor, resources, cursor2)
    assert [r.run_key for r in run_requests(later)] == [f"screen:{third}:1"]
    assert sorted(json.loads(cursor3)["requested"]) == sorted([f"screen:{second}:1", f"screen:{third}:1"])


def test_screening_sensor_asks_again_when_the_screening_run_failed_for_good(session_factory, resources):
    app_id = ingest(session_factory)
    first, cursor = tick(application_screening_sensor, resources)
    assert [r.run_key for r in run_requests(first)] == [f"screen:{app_id}:1"]
    # While the run may still be working, the sensor waits.
    waiting, cursor = tick(application_screening_sensor, resources, cursor)
    assert run_requests(waiting) == []
    # The run failed for good (retries exhausted): the application is still `received`. Once its
    # run had time to act (the cursor's request is aged past the re-ask delay), it is asked again
    # under a new run key, since Dagster would never launch a second run with the first key.
    with session_factory() as s:
        assert s.get(OperatorApplication, app_id).status == ApplicationStatus.RECEIVED
    ledger = json.loads(cursor)["requested"]
    ledger[f"screen:{app_id}:1"][0] = (utcnow() - timedelta(minutes=11)).isoformat()
    again, cursor = tick(application_screening_sensor, resources, json.dumps({"requested": ledger}))
    [request] = run_requests(again)
    assert request.run_key != f"screen:{app_id}:1" and request.run_key.startswith(f"screen:{app_id}:1")
    assert request.run_config == {"ops": {"screen_application_op": {"config": {"application_id": app_id}}}}
    assert json.loads(cursor)["requested"][f"screen:{app_id}:1"][1] == 2
    # The second request backs off longer before a third (the delay grows with each request).
    ledger = json.loads(cursor)["requested"]
    ledger[f"screen:{app_id}:1"][0] = (utcnow() - timedelta(minutes=11)).isoformat()
    assert run_requests(tick(application_screening_sensor, resources, json.dumps({"requested": ledger}))[0]) == []
    # Once screened, it leaves the cursor.
    run_job(screen_application_job, resources, app_id)
    done, cursor = tick(application_screening_sensor, resources, cursor)
    assert run_requests(done) == [] and json.loads(cursor)["requested"] == {}


def test_idle_sensors_skip_with_a_reason(resources):
    for sensor in (application_screening_sensor, application_decision_sensor, email_relay_sensor):
        result, _ = tick(sensor, resources)
        assert run_requests(result) == [] and result.skip_reason.skip_message


def test_screening_outcomes(session_factory, resources):
    good = ingest(session_factory)
    lower = ingest(session_factory, wallet="0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed")
    bad_checksum = ingest(session_factory, wallet="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD")
    bad_email = ingest(session_factory, email="not-an-email")
    for app_id in (good, lower, bad_checksum, bad_email):
        run_job(screen_application_job, resources, app_id)
    with session_factory() as s:
        apps = {a.id: a for a in s.scalars(select(OperatorApplication))}
    assert apps[good].status == "pending_review" and apps[good].status_version == 2
    assert apps[lower].status == "pending_review"
    assert apps[lower].wallet_address == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # checksummed
    assert any("no EIP-55 checksum" in n["message"] for n in apps[lower].screening_notes)
    assert apps[bad_checksum].status == "rejected"
    assert "EIP-55 checksum" in apps[bad_checksum].decision_reason
    assert apps[bad_email].status == "rejected" and "not valid" in apps[bad_email].decision_reason
    # Re-running a screening changes nothing.
    run_job(screen_application_job, resources, good)
    with session_factory() as s:
        assert s.get(OperatorApplication, good).status_version == 2


def test_duplicate_operator_rules(session_factory, resources):
    with session_factory() as s:
        s.add(Operator(email="known@example.com", wallet_address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"))
        s.commit()
    same = ingest(session_factory, email="known@example.com", wallet="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
    other_wallet = ingest(session_factory, email="known@example.com")
    taken_wallet = ingest(session_factory, wallet="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed")
    for app_id in (same, other_wallet, taken_wallet):
        run_job(screen_application_job, resources, app_id)
    with session_factory() as s:
        apps = {a.id: a for a in s.scalars(select(OperatorApplication))}
    assert apps[same].status == "pending_review"
    assert any("existing operator" in n["message"] for n in apps[same].screening_notes)
    assert apps[other_wallet].status == "rejected" and "another wallet" in apps[other_wallet].decision_reason
    assert apps[taken_wallet].status == "rejected" and "already belongs" in apps[taken_wallet].decision_reason


def test_decisions_are_validated(session_factory, resources):
    app_id = ingest(session_factory)
    actor = Actor.system("test")
    with session_factory() as s, pytest.raises(DecisionError, match="not pending review"):
        decide_application(s, application_id=app_id, actor=actor, decision="approve", reason=None)
    run_job(screen_application_job, resources, app_id)
    with session_factory() as s, pytest.raises(DecisionError, match="needs a reason"):
        decide_application(s, application_id=app_id, actor=actor, decision="reject", reason="  ")
    with session_factory() as s:
        decide_application(s, application_id=app_id, actor=actor, decision="approve", reason=None)
        s.commit()
    with session_factory() as s, pytest.raises(DecisionError, match="approved, not pending review"):
        decide_application(s, application_id=app_id, actor=actor, decision="approve", reason=None)
    with session_factory() as s:
        actions = s.scalars(select(AuditLogEntry.action).where(AuditLogEntry.subject_id == str(app_id))).all()
        assert "application.approved" in actions


def test_rejection_flows_to_the_applicant(session_factory, resources, smtp_server):
    app_id = ingest(session_factory, wallet="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", email="rej@example.com")
    run_job(screen_application_job, resources, app_id)
    result, cursor = tick(application_decision_sensor, resources)
    [req] = run_requests(result)
    assert req.run_key == f"decide:{app_id}:2"
    run_job(carry_out_decision_job, resources, app_id)
    run_job(carry_out_decision_job, resources, app_id)  # re-run: no second email
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    run_job(relay_emails_job, resources)
    [mail] = smtp_server.messages()
    assert mail.to == ["rej@example.com"] and "EIP-55 checksum" in mail.text
    # Carried out: the sensor has nothing left.
    after, _ = tick(application_decision_sensor, resources, cursor)
    assert run_requests(after) == []


def test_approval_provisions_once_and_the_emailed_link_downloads_the_bundle(
        session_factory, resources, smtp_server, settings):
    app_id = ingest(session_factory, name="Grace Operator", email="grace@example.com")
    run_job(screen_application_job, resources, app_id)
    with session_factory() as s:
        decide_application(s, application_id=app_id, actor=Actor.system("test"), decision="approve", reason=None)
        s.commit()
    result, _ = tick(application_decision_sensor, resources)
    assert [r.run_key for r in run_requests(result)] == [f"decide:{app_id}:3"]
    run_job(carry_out_decision_job, resources, app_id)
    run_job(carry_out_decision_job, resources, app_id)  # idempotent
    with session_factory() as s:
        app = s.get(OperatorApplication, app_id)
        assert app.status == "provisioned" and app.processed_at is not None
        node = s.scalars(select(Node)).one()
        token_row = s.scalars(select(DownloadToken)).one()
        outbox = {m.idempotency_key: m for m in s.scalars(select(OutboxMessage))}
    assert node.application_id == app_id and node.status == "provisioned"
    assert set(outbox) == {f"email:approval:{app_id}", f"chain:register_node:{node.id}"}
    chain = outbox[f"chain:register_node:{node.id}"]
    assert chain.kind == "chain" and chain.payload == {
        "action": "register_node", "node_id": node.id,
        "operator_wallet": app.wallet_address}
    assert token_row.sealed_api_key and len(token_row.token_hash) == 64

    relay_result, _ = tick(email_relay_sensor, resources)
    [relay_req] = run_requests(relay_result)
    assert relay_req.run_key.startswith("email-relay:")
    run_job(relay_emails_job, resources)
    [mail] = smtp_server.messages()
    assert mail.to == ["grace@example.com"] and node.id in mail.subject
    [link] = [u for u in mail.links if "/portal/download/" in u]
    path = link.removeprefix("http://testserver")

    with TestClient(create_app(settings)) as client:
        page = client.get(path)
        assert page.status_code == 200 and node.id in page.text and "Download" in page.text
        assert client.get(path).status_code == 200  # GET never consumes
        nonce = page.text.split('name="nonce" value="')[1].split('"')[0]
        resp = client.post(path, data={"nonce": nonce}, headers={"Origin": "http://testserver"})
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == "application/zip"
        used = client.post(path, data={"nonce": nonce})
        assert used.status_code == 410 and "already used" in used.text
        assert client.get(path).status_code == 410

    files = zipfile.ZipFile(io.BytesIO(resp.content))
    prefix = f"noderr-{node.id}/"
    assert sorted(files.namelist()) == sorted(prefix + n for n in (".env", "docker-compose.yml", "README.md"))
    env = dict(line.split("=", 1) for line in files.read(prefix + ".env").decode().splitlines()
               if line and not line.startswith("#"))
    assert env["NODERR_NODE_ID"] == node.id
    assert api_key_matches(env["NODERR_NODE_API_KEY"], node.api_key_hash)
    assert env["NODERR_API_URL"] == "http://testserver"
    assert len(env["NODERR_MODEL_PUBLIC_KEY"]) == 64
    compose = files.read(prefix + "docker-compose.yml").decode()
    assert "127.0.0.1:${NODERR_NODE_PORT}:${NODERR_NODE_PORT}" in compose
    assert "/readyz" in compose and "env_file: .env" in compose
    with session_factory() as s:
        token_row = s.get(DownloadToken, token_row.id)
        assert token_row.used_at is not None and token_row.sealed_api_key is None  # key wiped
        assert s.scalar(select(func.count()).select_from(BundleDownload)) == 1


def test_whole_definitions_load():
    defs = dg.Definitions.merge(onboarding_defs, outbox_defs, dg.Definitions(
        resources={"database": DatabaseResource(), "chain": ChainResource()}))
    repo = defs.get_repository_def()
    assert {"screen_application_job", "carry_out_decision_job", "relay_emails_job"} <= {
        j.name for j in repo.get_all_jobs()}
