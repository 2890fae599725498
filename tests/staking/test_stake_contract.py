"""The Stake contract on eth-tester and on the Ganache dev chain: bonding from the registered
operator wallet, the minimum, the unbonding delay, slashing by the slasher only, and refusals."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from eth_account import Account

from noderr_core.chain.client import ChainClient, TransactionReverted, make_web3, node_id_bytes32
from noderr_core.chain.deploy import DEFAULT_MIN_STAKE, DEFAULT_UNBONDING_DELAY_SECONDS
from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY
from noderr_core.staking.chain import StakeState, bond_stake, read_bond, request_unbond, withdraw_stake
from noderr_core.timeutil import utcnow
from tests.support.chain import OPERATOR_KEYS

NODE = "node_5a4e000000000001"
MIN = DEFAULT_MIN_STAKE
CASE = b"\x11" * 32


def _setup(platform: ChainClient, operator: ChainClient, node_id: str = NODE, tokens: int = 5 * MIN) -> None:
    platform.transact(platform.registry().functions.register_node(node_id_bytes32(node_id), operator.address))
    platform.transact(platform.token().functions.mint(operator.address, tokens))


def _balance(client: ChainClient, address: str) -> int:
    return client.token().functions.balanceOf(address).call()


def test_operator_bonds_at_least_the_minimum_from_the_registered_wallet(eth_chain):
    platform = eth_chain.client
    operator = eth_chain.client_for(OPERATOR_KEYS[0])
    stranger = eth_chain.client_for(OPERATOR_KEYS[1])
    _setup(platform, operator)
    platform.transact(platform.token().functions.mint(stranger.address, 5 * MIN))

    with pytest.raises(TransactionReverted, match="below the minimum stake"):
        bond_stake(operator, NODE, MIN - 1)
    with pytest.raises(TransactionReverted, match="only the node's registered operator wallet"):
        bond_stake(stranger, NODE, MIN)
    with pytest.raises(TransactionReverted, match="not registered"):
        bond_stake(operator, "node_5a4e00000000ffff", MIN)
    assert read_bond(platform, NODE).amount == 0

    bond_stake(operator, NODE, MIN)
    stake = platform.stake()
    assert stake.functions.is_bonded(node_id_bytes32(NODE)).call() is True
    bond = read_bond(platform, NODE)
    assert (bond.operator_wallet, bond.amount) == (operator.address, MIN)
    assert _balance(platform, operator.address) == 4 * MIN
    # A top-up below the minimum is fine once the total is above it.
    bond_stake(operator, NODE, 1)
    assert read_bond(platform, NODE).amount == MIN + 1
    assert stake.functions.total_bonded().call() == MIN + 1


def test_unbonding_waits_for_the_delay_and_stays_slashable_until_it_ends(eth_chain, _eth_tester_session):
    tester = _eth_tester_session[0]
    platform = eth_chain.client
    operator = eth_chain.client_for(OPERATOR_KEYS[0])
    _setup(platform, operator)
    bond_stake(operator, NODE, 2 * MIN)
    stake = platform.stake()
    key = node_id_bytes32(NODE)

    with pytest.raises(TransactionReverted, match="request_unbond first"):
        withdraw_stake(operator, NODE)
    request_unbond(operator, NODE)
    assert stake.functions.is_bonded(key).call() is False
    bond = read_bond(platform, NODE)
    assert bond.withdrawable_at is not None
    assert bond.state(bond.withdrawable_at - timedelta(seconds=1)) == StakeState.UNBONDING
    with pytest.raises(TransactionReverted, match="unbonding delay is not over"):
        withdraw_stake(operator, NODE)
    with pytest.raises(TransactionReverted, match="the stake is unbonding"):
        bond_stake(operator, NODE, MIN)

    # During the delay a slash still lands: 10% of 2*MIN goes to the treasury (the deployer).
    treasury = stake.functions.treasury().call()
    before = _balance(platform, treasury)
    platform.transact(stake.functions.slash(key, CASE, 1_000))
    assert _balance(platform, treasury) - before == 2 * MIN // 10
    assert read_bond(platform, NODE).amount == 2 * MIN - 2 * MIN // 10
    assert stake.functions.slashed_by_case(CASE).call() == 2 * MIN // 10
    with pytest.raises(TransactionReverted, match="already slashed"):
        platform.transact(stake.functions.slash(key, CASE, 1_000))

    tester.time_travel(int(bond.withdrawable_at.timestamp()) + 1)
    # The delay is over: the stake can no longer be slashed, only withdrawn.
    with pytest.raises(TransactionReverted, match="unbonding delay is over"):
        platform.transact(stake.functions.slash(key, b"\x22" * 32, 1_000))
    withdraw_stake(operator, NODE)
    assert _balance(platform, operator.address) == 5 * MIN - 2 * MIN // 10
    assert read_bond(platform, NODE).state(bond.withdrawable_at) == StakeState.NONE
    with pytest.raises(TransactionReverted, match="fully withdrawn"):
        platform.transact(stake.functions.slash(key, b"\x33" * 32, 1_000))
    assert stake.functions.total_bonded().call() == 0


def test_only_the_slasher_slashes_and_fractions_are_bounded(eth_chain):
    platform = eth_chain.client
    operator = eth_chain.client_for(OPERATOR_KEYS[0])
    _setup(platform, operator)
    bond_stake(operator, NODE, MIN)
    key = node_id_bytes32(NODE)
    with pytest.raises(TransactionReverted, match="only slasher"):
        operator.transact(operator.stake().functions.slash(key, CASE, 1_000))
    stake = platform.stake()
    for bad in (0, 10_001):
        with pytest.raises(TransactionReverted, match="basis points"):
            platform.transact(stake.functions.slash(key, CASE, bad))
    with pytest.raises(TransactionReverted, match="never bonded or fully withdrawn"):
        platform.transact(stake.functions.slash(node_id_bytes32("node_5a4e00000000ffff"), CASE, 1_000))
    with pytest.raises(TransactionReverted, match="only owner"):
        operator.transact(operator.stake().functions.set_slasher(operator.address))
    assert read_bond(platform, NODE).amount == MIN
    # A slash below the minimum leaves the node bonded but short: it may not lease until topped up.
    platform.transact(stake.functions.slash(key, CASE, 5_000))
    bond = read_bond(platform, NODE)
    assert bond.amount == MIN // 2 and bond.state(utcnow()) == StakeState.BELOW_MINIMUM
    assert stake.functions.is_bonded(key).call() is False


@pytest.mark.slow
def test_bond_unbond_slash_and_withdraw_on_the_dev_chain(ganache_deployed):
    ganache, addresses, _ = ganache_deployed
    w3 = make_web3(ganache.url)
    platform = ChainClient(w3, LOCAL_CHAIN_SIGNER_KEY, addresses, poll_latency=0.05)
    operator = ChainClient(w3, OPERATOR_KEYS[1], addresses, poll_latency=0.05)
    node = "node_5a4e0000000000d1"
    _setup(platform, operator, node)
    with pytest.raises(TransactionReverted, match="below the minimum stake"):
        bond_stake(operator, node, MIN - 1)
    bond_stake(operator, node, MIN)
    stake = platform.stake()
    key = node_id_bytes32(node)
    assert stake.functions.is_bonded(key).call() is True
    request_unbond(operator, node)
    with pytest.raises(TransactionReverted, match="unbonding delay is not over"):
        withdraw_stake(operator, node)
    platform.transact(stake.functions.slash(key, b"\x44" * 32, 1_000))
    assert read_bond(platform, node).amount == MIN - MIN // 10

    def rpc(method, params):
        return httpx.post(ganache.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).json()

    rpc("evm_increaseTime", [DEFAULT_UNBONDING_DELAY_SECONDS + 1])
    rpc("evm_mine", [])
    with pytest.raises(TransactionReverted, match="unbonding delay is over"):
        platform.transact(stake.functions.slash(key, b"\x55" * 32, 1_000))
    withdraw_stake(operator, node)
    with pytest.raises(TransactionReverted, match="fully withdrawn"):
        platform.transact(stake.functions.slash(key, b"\x66" * 32, 1_000))
    assert Account.from_key(OPERATOR_KEYS[1]).address == operator.address
    assert platform.token().functions.balanceOf(operator.address).call() == 5 * MIN - MIN // 10
