"""The slashing monitor on SQLite and PostgreSQL, with real tasks judged by quorum, the Dagster
sensor (`build_sensor_context`: run requests and cursor), the job, the chain outbox relay and the
Stake contract on eth-tester.

A lying node's operator is slashed after the challenge window; an honest node that erred once, a
node reporting errors, results judged while the control plane was degraded, and a dismissed case
never slash anything.
"""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg
import pytest
from sqlalchemy import select

from noderr_core.audit import Actor
from noderr_core.chain.client import node_id_bytes32
from noderr_core.chain.deploy import DEFAULT_MIN_STAKE
from noderr_core.chain.relay import ChainHandler
from noderr_core.db import make_session_factory
from noderr_core.outbox import relay_due
from noderr_core.email import render_email
from noderr_core.settings import Settings
from noderr_core.slashing.cases import dismiss_case, due_case_ids, queue_slash
from noderr_core.slashing.evidence import SlashingPolicy, find_candidate_nodes, gather_evidence
from noderr_core.staking import node_stake_view, stake_allows_leasing
from noderr_core.staking.chain import StakeState, bond_stake, request_unbond, withdraw_stake
from noderr_core.staking.observer import sync_stakes
from noderr_core.tables import AuditLogEntry, Node, OutboxMessage
from noderr_core.tables.network import Alert
from noderr_core.tables.staking import SlashingCase
from noderr_core.telemetry import record_heartbeat
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.staking.jobs import slashing_job
from noderr_pipelines.defs.staking.resources import SlashingPolicyResource
from noderr_pipelines.defs.staking.sensors import slashing_monitor_sensor
from noderr_pipelines.resources import DatabaseResource
from noderr_protocol.work import HeartbeatIn
from tests.support.admin import admin_csrf
from tests.support.chain import OPERATOR_KEYS
from tests.support.task_flow import lease, report, submit

MIN = DEFAULT_MIN_STAKE
POLICY_3 = {"replicas": 3, "quorum": 2, "adaptive": False}


def heartbeat(session_factory, *nodes) -> None:
    with session_factory() as s:
        for node in nodes:
            record_heartbeat(s, s.get(Node, node.id), HeartbeatIn(uptime_seconds=5))
        s.commit()


def judged_round(session_factory, world, honest, other, *, n: int, wrong: int, error: bool = False):
    """n tasks replicated to two honest nodes and `other`; `other` answers `wrong` of them wrongly
    (or reports an error on them with error=True), the rest rightly."""
    ids = submit(session_factory, world.client_id, n, policy=POLICY_3)
    for node in (*honest, other):
        assert len(lease(session_factory, node, n).grants) == n
    for node in honest:
        report(session_factory, node, {tid: 0 for tid in ids})
    bad, good = ids[:wrong], ids[wrong:]
    if bad:
        if error:
            report(session_factory, other, {tid: None for tid in bad}, error="onnxruntime: out of memory")
        else:
            report(session_factory, other, {tid: 1 for tid in bad})
    if good:
        report(session_factory, other, {tid: 0 for tid in good})
    return ids


def policy_resource(**overrides) -> SlashingPolicyResource:
    return SlashingPolicyResource(**({"min_invalid": 3, "recent_results": 10, "challenge_seconds": 3600} | overrides))


def tick(db_url, cursor=None, **overrides):
    context = dg.build_sensor_context(cursor=cursor, resources={
        "database": DatabaseResource(database_url=db_url), "slashing_policy": policy_resource(**overrides)})
    return slashing_monitor_sensor(context)


def run_job(db_url, run_request, **overrides):
    result = slashing_job.execute_in_process(run_config=run_request.run_config, resources={
        "database": DatabaseResource(database_url=db_url), "slashing_policy": policy_resource(**overrides)})
    assert result.success
    return result.output_for_node("apply_slashing")


@pytest.fixture
def network(task_world, eth_chain):
    """Two honest nodes and a liar of three distinct operators; the liar is registered on-chain and
    has bonded the minimum stake from its operator's wallet."""
    a, _ = task_world.node()
    b, _ = task_world.node()
    operator = eth_chain.client_for(OPERATOR_KEYS[0])
    liar, _ = task_world.node(wallet=operator.address)
    platform = eth_chain.client
    platform.transact(platform.registry().functions.register_node(node_id_bytes32(liar.id), operator.address))
    platform.transact(platform.token().functions.mint(operator.address, MIN))
    bond_stake(operator, liar.id, MIN)
    return a, b, liar, operator


def test_a_lying_node_is_slashed_after_the_challenge_window(db_url, engine, session_factory, task_world,
                                                            network, eth_chain):
    a, b, liar, operator = network
    sync_stakes(engine, eth_chain.client)
    heartbeat(session_factory, a, b)
    judged_round(session_factory, task_world, (a, b), liar, n=4, wrong=4)

    # The sensor asks for one run that opens a case for the liar, and remembers it in its cursor.
    result = tick(db_url)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.run_key.startswith(f"slashing:open:{liar.id}:")
    assert request.run_config == {"ops": {"apply_slashing": {"config": {"node_ids": [liar.id], "case_ids": []}}}}
    cursor = json.loads(result.cursor)
    assert list(cursor["requested"]) == [request.run_key]
    # Next tick with that cursor: nothing new is requested, and the cursor is kept.
    again = tick(db_url, cursor=result.cursor)
    assert again.run_requests == [] and "already requested" in again.skip_reason.skip_message
    assert json.loads(again.cursor) == cursor

    out = run_job(db_url, request)
    assert len(out["opened"]) == 1
    case_id = out["opened"][0]
    with session_factory() as s:
        case = s.get(SlashingCase, case_id)
        assert (case.node_id, case.status, case.invalid_count, case.judged_count) == (liar.id, "open", 4, 4)
        assert case.fraction_bps == 1_000
        for item in case.evidence:
            assert item["kind"] == "quorum"
            assert sorted(item["agreeing_node_ids"]) == sorted([a.id, b.id])
            assert item["node_result"] == {"label": [1]} and item["validated_result"] == {"label": [0]}
        mail = s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "email", OutboxMessage.subject_id == liar.id))
        assert mail.payload["template"] == "slashing_case" and mail.payload["context"]["event"] == "opened"
        rendered = render_email("slashing_case", mail.payload["context"])
        assert f"case (#{case_id})" in rendered.text and "10%" in rendered.text
        assert "slashing.case_opened" in set(s.scalars(select(AuditLogEntry.action)))
    # A repeated run opens nothing more (the same evidence, one case per node at a time).
    assert run_job(db_url, request)["opened"] == []

    # The window (3600 s here) is over: the sensor requests the slash, the job queues it.
    assert tick(db_url, cursor=result.cursor).run_requests == []  # not before the window ends
    with session_factory() as s:
        s.get(SlashingCase, case_id).challenge_ends_at = utcnow() - timedelta(seconds=1)
        s.commit()
    due = tick(db_url, cursor=result.cursor)
    assert [r.run_key for r in due.run_requests] == [f"slashing:slash:{case_id}"]
    assert f"slashing:slash:{case_id}" in json.loads(due.cursor)["requested"]
    assert run_job(db_url, due.run_requests[0])["slashes_queued"] == [case_id]
    assert run_job(db_url, due.run_requests[0])["slashes_queued"] == []  # once

    treasury = eth_chain.client.stake().functions.treasury().call()
    before = eth_chain.client.token().functions.balanceOf(treasury).call()
    relayed = relay_due(make_session_factory(engine), ChainHandler(Settings(env="test"), client=eth_chain.client))
    assert relayed.outcomes["mined"] == 1, relayed.messages
    assert eth_chain.client.token().functions.balanceOf(treasury).call() - before == MIN // 10
    with session_factory() as s:
        case = s.get(SlashingCase, case_id)
        assert (case.status, case.slashed_amount) == ("slashed", MIN // 10)
        assert case.tx_hash and case.tx_hash.startswith("0x")
        actions = list(s.scalars(select(AuditLogEntry.action).where(AuditLogEntry.subject_id == liar.id)
                                 .order_by(AuditLogEntry.id)))
        assert [x for x in actions if x.startswith("slashing.")] == [
            "slashing.case_opened", "slashing.slash_queued", "slashing.slashed"]
        events = [m.payload["context"]["event"] for m in s.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "email", OutboxMessage.subject_id == liar.id).order_by(OutboxMessage.id))]
        assert events == ["opened", "slashed"]
    # The observer sees the slash: below the minimum, the liar may no longer lease.
    sync_stakes(engine, eth_chain.client)
    with session_factory() as s:
        assert node_stake_view(s, liar.id).state == StakeState.BELOW_MINIMUM
        assert stake_allows_leasing(s, liar.id) is False
    # The honest nodes never had a case.
    with session_factory() as s:
        assert set(s.scalars(select(SlashingCase.node_id))) == {liar.id}


def test_an_honest_node_that_erred_once_or_reports_errors_is_never_slashed(db_url, session_factory, task_world):
    a, _ = task_world.node()
    b, _ = task_world.node()
    erred, _ = task_world.node()
    failing, _ = task_world.node()
    heartbeat(session_factory, a, b)
    judged_round(session_factory, task_world, (a, b), erred, n=8, wrong=1)
    judged_round(session_factory, task_world, (a, b), failing, n=8, wrong=8, error=True)
    policy = SlashingPolicy.from_settings(Settings(env="test", slashing_min_invalid=2, slashing_recent_results=10))
    with session_factory() as s:
        assert find_candidate_nodes(s, policy, utcnow()) == []
    result = tick(db_url, min_invalid=2)
    assert result.run_requests == []
    assert "no node has 2+ proven invalid results" in result.skip_reason.skip_message
    # K is at least 2 by setting: a single disagreement can never be the threshold.
    with pytest.raises(ValueError):
        Settings(env="test", slashing_min_invalid=1)


def test_no_case_from_results_judged_while_the_control_plane_was_degraded(db_url, session_factory, task_world):
    a, _ = task_world.node()
    b, _ = task_world.node()
    liar, _ = task_world.node()
    # Each round: two proven lies and one right answer (so the reliability rules do not block it).
    # No heartbeat was processed at all: the platform was not hearing its nodes.
    judged_round(session_factory, task_world, (a, b), liar, n=3, wrong=2)
    policy = SlashingPolicy.from_settings(Settings(env="test", slashing_min_invalid=2))
    with session_factory() as s:
        assert find_candidate_nodes(s, policy, utcnow()) == [liar.id]
        assert gather_evidence(s, liar.id, policy, utcnow()) is None
    assert tick(db_url, min_invalid=2).run_requests == []

    # Heartbeats flow again, but half the network is offline (open alerts): still a platform outage.
    heartbeat(session_factory, a, b)
    with session_factory() as s:
        for node in (a, liar):
            s.add(Alert(kind="node_offline", node_id=node.id, opened_at=utcnow() - timedelta(minutes=5), details={}))
        s.commit()
    judged_round(session_factory, task_world, (a, b), liar, n=3, wrong=2)
    with session_factory() as s:
        assert gather_evidence(s, liar.id, policy, utcnow()) is None
    assert tick(db_url, min_invalid=2).run_requests == []

    # Once the outage is over, new proven lies do count; the earlier ones stay discarded.
    with session_factory() as s:
        for alert in s.scalars(select(Alert)):
            alert.closed_at = utcnow()
        s.commit()
    heartbeat(session_factory, a, b)
    judged_round(session_factory, task_world, (a, b), liar, n=3, wrong=2)
    with session_factory() as s:
        evidence = gather_evidence(s, liar.id, policy, utcnow())
    assert evidence is not None and len(evidence.items) == 2 and evidence.judged_count == 9
    assert len(evidence.discarded) == 4
    assert {d["why"].split(":")[0] for d in evidence.discarded} == {"control plane degraded"}
    assert len(tick(db_url, min_invalid=2).run_requests) == 1


def test_a_dismissed_case_does_not_slash(db_url, session_factory, task_world, admin_client):
    a, _ = task_world.node()
    b, _ = task_world.node()
    liar, _ = task_world.node()
    heartbeat(session_factory, a, b)
    judged_round(session_factory, task_world, (a, b), liar, n=3, wrong=3)
    [request] = tick(db_url).run_requests
    [case_id] = run_job(db_url, request)["opened"]

    page = admin_client.get(f"/admin/nodes/{liar.id}")
    assert f'id="dismiss-case-{case_id}"' in page.text and "proven invalid of 3 judged" in page.text
    url = f"/admin/slashing/{case_id}/dismiss"
    assert admin_client.post(url, data={"reason": "model cache bug"}, follow_redirects=False).status_code == 403
    token = admin_csrf(admin_client)
    assert admin_client.post(url, data={"reason": " ", "csrf_token": token}, follow_redirects=False).status_code == 400
    r = admin_client.post(url, data={"reason": "model cache bug, fixed", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/admin/nodes/{liar.id}#stake"
    r = admin_client.post(url, data={"reason": "again", "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 409 and "dismissed" in r.json()["detail"]

    later = utcnow() + timedelta(days=10)
    with session_factory() as s:
        assert due_case_ids(s, later) == []
        assert queue_slash(s, case_id, actor=Actor.system("test"), now=later) is None
        s.commit()
        case = s.get(SlashingCase, case_id)
        assert (case.status, case.dismiss_reason) == ("dismissed", "model cache bug, fixed")
        assert s.scalar(select(OutboxMessage).where(OutboxMessage.kind == "chain")) is None
        entry = s.scalar(select(AuditLogEntry).where(AuditLogEntry.action == "slashing.case_dismissed"))
        assert entry.actor_type == "admin" and entry.details["reason"] == "model cache bug, fixed"
    assert tick(db_url, challenge_seconds=0).run_requests == []
    # The dismissed evidence never opens a new case; only new lies could.
    assert "dismissed" in admin_client.get(f"/admin/nodes/{liar.id}").text


def test_a_slash_after_the_stake_was_withdrawn_is_refused_and_the_case_fails(
        db_url, engine, session_factory, task_world, network, eth_chain, _eth_tester_session):
    a, b, liar, operator = network
    heartbeat(session_factory, a, b)
    judged_round(session_factory, task_world, (a, b), liar, n=3, wrong=3)
    [request] = tick(db_url).run_requests
    [case_id] = run_job(db_url, request)["opened"]
    # The operator runs: unbonds and withdraws once the delay is over, before the window ends.
    request_unbond(operator, liar.id)
    withdrawable = eth_chain.client.stake().functions.bonds(node_id_bytes32(liar.id)).call()[2]
    _eth_tester_session[0].time_travel(withdrawable + 1)
    withdraw_stake(operator, liar.id)
    with session_factory() as s:
        assert queue_slash(s, case_id, actor=Actor.system("test"), now=utcnow() + timedelta(hours=2))
        s.commit()
    relayed = relay_due(make_session_factory(engine), ChainHandler(Settings(env="test"), client=eth_chain.client))
    assert len(relayed.failed) == 1
    with session_factory() as s:
        case = s.get(SlashingCase, case_id)
        assert case.status == "failed" and "fully withdrawn" in case.failure_reason
        assert "slashing.slash_failed" in set(s.scalars(select(AuditLogEntry.action)))


def test_dismiss_needs_an_open_case(session_factory, task_world):
    with session_factory() as s, pytest.raises(LookupError):
        dismiss_case(s, 999, actor=Actor.system("test"), reason="x", settings=Settings(env="test"))


def test_a_window_shortened_by_setting_slashes_on_the_next_tick(db_url, engine, session_factory, task_world,
                                                                 network, eth_chain):
    a, b, liar, _ = network
    heartbeat(session_factory, a, b)
    judged_round(session_factory, task_world, (a, b), liar, n=3, wrong=3)
    [opening] = tick(db_url, challenge_seconds=0).run_requests
    [case_id] = run_job(db_url, opening, challenge_seconds=0)["opened"]
    [slash] = tick(db_url, challenge_seconds=0).run_requests
    assert slash.run_key == f"slashing:slash:{case_id}"
    assert run_job(db_url, slash, challenge_seconds=0)["slashes_queued"] == [case_id]
    assert relay_due(make_session_factory(engine), ChainHandler(Settings(env="test"), client=eth_chain.client)).outcomes["mined"] == 1
    with session_factory() as s:
        assert s.get(SlashingCase, case_id).status == "slashed"
