"""The bonding gate on SQLite and PostgreSQL: the stake observer mirrors the chain in node_stakes,
and a node leases work only while its stake is bonded (403 naming what to do otherwise)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from noderr_core.chain.client import node_id_bytes32
from noderr_core.chain.deploy import DEFAULT_MIN_STAKE
from noderr_core.settings import Settings
from noderr_core.staking import node_stake_view, stake_allows_leasing
from noderr_core.staking.chain import StakeState, bond_stake, request_unbond
from noderr_core.staking.observer import sync_stakes
from noderr_core.tables import Operator
from noderr_core.tables.staking import StakeSyncCursor
from tests.support.chain import OPERATOR_KEYS
from tests.support.task_flow import submit

MIN = DEFAULT_MIN_STAKE


def _bonded_node(eth_chain, node_factory, key=OPERATOR_KEYS[0]):
    operator = eth_chain.client_for(key)
    node, api_key = node_factory(wallet=operator.address)
    platform = eth_chain.client
    platform.transact(platform.registry().functions.register_node(node_id_bytes32(node.id), operator.address))
    platform.transact(platform.token().functions.mint(operator.address, 3 * MIN))
    return node, api_key, operator


def test_observer_mirrors_bond_unbond_and_slash_and_the_gate_follows(engine, session_factory, node_factory, eth_chain):
    node, _, operator = _bonded_node(eth_chain, node_factory)
    other, _ = node_factory()
    # Nothing observed yet: the gate is closed.
    with session_factory() as s:
        assert stake_allows_leasing(s, node.id) is False
        assert node_stake_view(s, node.id).state == "unknown"

    bond_stake(operator, node.id, MIN)
    report = sync_stakes(engine, eth_chain.client)
    assert report.nodes_updated == [node.id] and report.events >= 1
    assert sync_stakes(engine, eth_chain.client) is None  # at the head: nothing to do
    with session_factory() as s:
        assert stake_allows_leasing(s, node.id) is True
        assert stake_allows_leasing(s, other.id) is False
        view = node_stake_view(s, node.id)
        assert (view.state, view.amount, view.min_stake, view.operator_wallet) == (
            StakeState.BONDED, MIN, MIN, operator.address)
        assert view.amount_tokens == "1000"
        cursor = s.scalar(select(StakeSyncCursor))
        assert cursor.contract == eth_chain.addresses.stake
        assert cursor.last_block == eth_chain.w3.eth.block_number

    # A slash below the minimum closes the gate until the operator tops the bond up.
    eth_chain.client.transact(eth_chain.client.stake().functions.slash(node_id_bytes32(node.id), b"\x01" * 32, 500))
    sync_stakes(engine, eth_chain.client)
    with session_factory() as s:
        assert node_stake_view(s, node.id).state == StakeState.BELOW_MINIMUM
        assert node_stake_view(s, node.id).amount == MIN - MIN // 20
        assert stake_allows_leasing(s, node.id) is False
    bond_stake(operator, node.id, MIN // 20)
    request_unbond(operator, node.id)
    sync_stakes(engine, eth_chain.client)
    with session_factory() as s:
        view = node_stake_view(s, node.id)
        assert view.state == StakeState.UNBONDING and view.withdrawable_at is not None
        assert stake_allows_leasing(s, node.id) is False


def test_observer_ignores_bonds_of_nodes_the_platform_does_not_know(engine, session_factory, eth_chain):
    operator = eth_chain.client_for(OPERATOR_KEYS[1])
    stranger_node = "node_ffffffffffff0001"
    platform = eth_chain.client
    platform.transact(platform.registry().functions.register_node(node_id_bytes32(stranger_node), operator.address))
    platform.transact(platform.token().functions.mint(operator.address, MIN))
    bond_stake(operator, stranger_node, MIN)
    report = sync_stakes(engine, eth_chain.client)
    assert report.unknown_nodes == 1 and report.nodes_updated == []


@pytest.fixture
def gate_settings(db_url, tmp_path) -> Settings:
    return Settings(env="test", database_url=db_url, state_dir=tmp_path / "state", stake_required=True)


def test_lease_is_refused_with_what_to_do_until_the_stake_is_bonded(
        gate_settings, engine, session_factory, task_world, eth_chain, node_factory):
    from api.main import create_app

    node, api_key, operator = _bonded_node(eth_chain, node_factory)
    submit(session_factory, task_world.client_id, 1)
    body = {"models": [{"name": "iris", "version": 1}], "max_tasks": 4, "lease_seconds": 60}
    headers = {"Authorization": f"Bearer {api_key}"}
    with TestClient(create_app(gate_settings)) as http:
        r = http.post("/v1/tasks/lease", headers=headers, json=body)
        assert r.status_code == 403
        assert "has no bonded stake" in r.json()["detail"] and "Stake.bond" in r.json()["detail"]

        bond_stake(operator, node.id, MIN)
        # Bonded on-chain but not yet observed: still refused (the gate never calls the chain).
        assert http.post("/v1/tasks/lease", headers=headers, json=body).status_code == 403
        sync_stakes(engine, eth_chain.client)
        r = http.post("/v1/tasks/lease", headers=headers, json=body)
        assert r.status_code == 200, r.text
        assert len(r.json()["tasks"]) == 1

        request_unbond(operator, node.id)
        sync_stakes(engine, eth_chain.client)
        r = http.post("/v1/tasks/lease", headers=headers, json=body)
        assert r.status_code == 403 and "unbonding" in r.json()["detail"]


def test_gate_is_off_in_local_and_test_and_on_elsewhere_unless_set():
    assert Settings(env="test").stake_gate_enabled is False
    assert Settings(env="local").stake_gate_enabled is False
    assert Settings(env="local", stake_required=True).stake_gate_enabled is True
    strict = Settings.model_construct(env="production", stake_required=None)
    assert strict.stake_gate_enabled is True
    assert Settings.model_construct(env="staging", stake_required=False).stake_gate_enabled is False


def test_operator_wallet_is_the_registered_one(session_factory, eth_chain, node_factory):
    node, _, operator = _bonded_node(eth_chain, node_factory)
    with session_factory() as s:
        assert s.get(Operator, node.operator_id).wallet_address == operator.address
