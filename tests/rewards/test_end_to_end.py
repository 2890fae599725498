"""End to end on a real Ganache process: an approved node is registered, the daily assets compute
and queue the root, the Dagster relay job publishes it, and the operator claims with the call data
the public API hands out. Also: the Dagster definitions and the chain outbox sensor."""

from __future__ import annotations

import json
from datetime import timedelta

import dagster as dg
import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from noderr_core.chain.addresses import save_addresses
from noderr_core.chain.claims import submit_claim
from noderr_core.chain.client import ChainClient, make_web3, node_id_bytes32
from noderr_core.chain.deploy import deploy_contracts
from noderr_core.tables import Node, OutboxMessage
from noderr_core.tables.rewards import EpochStatus, RewardEpoch
from noderr_core.outbox import enqueue
from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY, Settings
from noderr_pipelines.definitions import defs as reward_defs
from noderr_pipelines.defs.rewards.assets import reward_epoch, reward_merkle_root, reward_root_publication
from noderr_pipelines.defs.outbox.jobs import chain_relay_job
from noderr_pipelines.defs.outbox.sensors import chain_outbox_sensor
from noderr_pipelines.resources import ChainResource, DatabaseResource
from tests.support.chain import OPERATOR_KEYS
from tests.support.rewards import add_heartbeats, add_judged_results, day_start, make_operator, make_reward_node


@pytest.fixture
def local_chain(ganache, tmp_path):
    """Fresh contracts on the session's Ganache (roots only move forward: one deployment per test)."""
    client = ChainClient(make_web3(ganache.url), LOCAL_CHAIN_SIGNER_KEY, poll_latency=0.05)
    client.addresses = deploy_contracts(client)
    path = tmp_path / "chain.json"
    save_addresses(path, client.addresses)
    return client, path


def _relay(db_url, ganache, path):
    return chain_relay_job.execute_in_process(
        resources={"database": DatabaseResource(database_url=db_url),
                   "chain": ChainResource(rpc_url=ganache.url, addresses_file=str(path))},
        raise_on_error=False,
    )


@pytest.mark.slow
def test_register_compute_publish_and_claim_through_the_local_chain(
    db_url, session_factory, ganache, local_chain, past_days, tmp_path
):
    client, path = local_chain
    operator_key = OPERATOR_KEYS[0]
    wallet = Account.from_key(operator_key).address
    day = past_days[-1]
    with session_factory() as s:
        op = make_operator(s, wallet)
        node = make_reward_node(s, op, day_start(day) - timedelta(days=3))
        other = make_reward_node(s, make_operator(s), day_start(day) - timedelta(days=3))
        # What provisioning queues for an approved node.
        for n, w in ((node, wallet), (other, s.get(type(op), other.operator_id).wallet_address)):
            enqueue(s, kind="chain", idempotency_key=f"chain:register_node:{n.id}",
                    payload={"action": "register_node", "node_id": n.id, "operator_wallet": w},
                    subject_type="node", subject_id=n.id)
        add_heartbeats(s, node.id, day_start(day), day_start(day) + timedelta(days=1), timedelta(minutes=2))
        add_heartbeats(s, other.id, day_start(day), day_start(day) + timedelta(hours=20), timedelta(minutes=5))
        add_judged_results(s, node, day_start(day) + timedelta(hours=2), valid=12, invalid=1)
        s.commit()

    # The sensor sees due rows and asks for one relay run; the same state asks for nothing more.
    db = DatabaseResource(database_url=db_url)
    result = chain_outbox_sensor(dg.build_sensor_context(cursor=None, resources={"database": db}))
    assert len(result.run_requests) == 1 and result.run_requests[0].run_key.startswith("chain-relay:")
    assert len(json.loads(result.cursor)["requested"]) == 2  # both due rows handed to that run
    again = chain_outbox_sensor(dg.build_sensor_context(cursor=result.cursor, resources={"database": db}))
    assert isinstance(again, dg.SkipReason)

    assert _relay(db_url, ganache, path).success
    assert client.registry().functions.operator_of(node_id_bytes32(node.id)).call() == wallet
    with session_factory() as s:
        assert s.get(Node, node.id).chain_registered_at is not None

    # The daily partition, as the schedule (or a backfill) materializes it.
    mat = dg.materialize([reward_epoch, reward_merkle_root, reward_root_publication], partition_key=day.isoformat(),
                         resources={"database": db})
    assert mat.success
    assert _relay(db_url, ganache, path).success
    with session_factory() as s:
        epoch = s.scalar(select(RewardEpoch))
        assert epoch.status == EpochStatus.PUBLISHED
        assert "0x" + client.distributor().functions.merkle_root().call().hex() == epoch.merkle_root

    settings = Settings(env="test", database_url=db_url, state_dir=tmp_path, chain_rpc_url=ganache.url,
                        chain_addresses_file=path)
    app_client = TestClient(__import__("api.main", fromlist=["create_app"]).create_app(settings))
    with app_client as http:
        doc = http.get(f"/v1/rewards/epochs/{day.isoformat()}").json()
        assert doc["merkle_root"] == epoch.merkle_root
        assert sum(int(s["amount"]) for s in doc["shares"]) == int(doc["pool_amount"])
        claim = http.get(f"/v1/rewards/claims/{wallet.lower()}").json()
        assert claim["wallet"] == wallet and claim["claimable_now"] == claim["cumulative_amount"]
        assert int(claim["cumulative_amount"]) > 0 and claim["claim"]["to"] == client.addresses.reward_distributor

        # The operator sends the ready-made call data from their own wallet.
        w3 = client.w3
        signed = Account.from_key(operator_key).sign_transaction({
            "to": claim["claim"]["to"], "data": claim["claim"]["data"], "chainId": claim["claim"]["chain_id"],
            "nonce": w3.eth.get_transaction_count(wallet), "gas": 300_000,
            "maxFeePerGas": w3.eth.gas_price * 2, "maxPriorityFeePerGas": 1,
        })
        receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(signed.raw_transaction))
        assert receipt["status"] == 1
        assert client.token().functions.balanceOf(wallet).call() == int(claim["cumulative_amount"])

        after = http.get(f"/v1/rewards/claims/{wallet}").json()
        assert after["claimable_now"] == "0" and after["claimed_onchain"] == claim["cumulative_amount"]
        page = http.get(f"/rewards/{wallet}")
        assert page.status_code == 200 and claim["claim"]["data"] in page.text and "12" in page.text

    # A second claim pays nothing more.
    second = submit_claim(__import__("noderr_core.db", fromlist=["make_engine"]).make_engine(db_url), settings,
                          wallet=wallet, signer_key=operator_key)
    assert second["status"] == "nothing_to_claim"
    assert client.token().functions.balanceOf(wallet).call() == int(claim["cumulative_amount"])

    # Re-materializing the partition (a retry) queues nothing new and sends no transaction.
    block = client.w3.eth.block_number
    assert dg.materialize([reward_epoch, reward_merkle_root, reward_root_publication], partition_key=day.isoformat(),
                          resources={"database": db}).success
    assert _relay(db_url, ganache, path).success
    assert client.w3.eth.block_number == block
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 3


def test_a_failed_chain_row_fails_the_dagster_run_visibly(db_url, session_factory, ganache, local_chain):
    _, path = local_chain
    with session_factory() as s:
        enqueue(s, kind="chain", idempotency_key="chain:deregister_node:node_zz:1",
                payload={"action": "deregister_node"})
        s.commit()
    result = _relay(db_url, ganache, path)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "payload has no 'node_id'" in failure.step_failure_data.error.message or \
        "payload has no 'node_id'" in str(failure.step_failure_data.user_failure_data.description)


def test_the_rewards_definitions_load_with_a_daily_schedule():
    job = reward_defs.resolve_job_def("reward_epoch_job")
    assert job.partitions_def.get_partition_keys()[0] == "2026-11-01"
    schedule = reward_defs.resolve_schedule_def("reward_epoch_job_schedule")
    assert schedule.cron_schedule == "15 0 * * *"


def test_public_routes_reject_bad_input_precisely(db_url, tmp_path):
    from api.main import create_app

    settings = Settings(env="test", database_url=db_url, state_dir=tmp_path)
    with TestClient(create_app(settings)) as http:
        r = http.get("/v1/rewards/epochs/yesterday")
        assert r.status_code == 422 and "YYYY-MM-DD" in r.json()["detail"][0]["msg"]
        r = http.get("/v1/rewards/epochs/2026-01-01")
        assert r.status_code == 404 and "not been computed" in r.json()["detail"]
        r = http.get("/v1/rewards/claims/0x1234")
        assert r.status_code == 422 and "not an Ethereum address" in r.json()["detail"][0]["msg"]
        r = http.get("/rewards/not-a-wallet")
        assert r.status_code == 422 and "not an Ethereum address" in r.text
        wallet = Account.create().address
        r = http.get(f"/v1/rewards/claims/{wallet}")
        assert r.status_code == 200 and r.json()["proof"] is None and r.json()["claim"] is None
        page = http.get(f"/rewards/{wallet}")
        assert page.status_code == 200 and "No rewards yet" in page.text
