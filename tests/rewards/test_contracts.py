"""Contract behaviour under eth-tester: roles, registry, cumulative claims, proofs."""

from __future__ import annotations

import pytest
from eth_account import Account

from noderr_core.chain.client import TransactionReverted, node_id_bytes32
from noderr_core.rewards.merkle import build_tree
from tests.support.chain import OPERATOR_KEYS

NODE = "node_0123456789abcdef"


def test_registrar_registers_and_deregisters_a_node(eth_chain):
    reg = eth_chain.client.registry()
    wallet = Account.from_key(OPERATOR_KEYS[0]).address
    eth_chain.client.transact(reg.functions.register_node(node_id_bytes32(NODE), wallet))
    assert reg.functions.is_active(node_id_bytes32(NODE)).call() is True
    assert reg.functions.operator_of(node_id_bytes32(NODE)).call() == wallet
    assert reg.functions.active_nodes().call() == 1

    with pytest.raises(TransactionReverted, match="node already registered"):
        eth_chain.client.transact(reg.functions.register_node(node_id_bytes32(NODE), wallet))

    eth_chain.client.transact(reg.functions.deregister_node(node_id_bytes32(NODE)))
    assert reg.functions.is_active(node_id_bytes32(NODE)).call() is False
    assert reg.functions.active_nodes().call() == 0
    with pytest.raises(TransactionReverted, match="node not registered"):
        eth_chain.client.transact(reg.functions.deregister_node(node_id_bytes32(NODE)))


def test_only_the_registrar_can_change_the_registry(eth_chain):
    outsider = eth_chain.client_for(OPERATOR_KEYS[0])
    reg = outsider.registry()
    with pytest.raises(TransactionReverted, match="only registrar"):
        outsider.transact(reg.functions.register_node(node_id_bytes32(NODE), outsider.address))
    eth_chain.client.transact(eth_chain.client.registry().functions.register_node(
        node_id_bytes32(NODE), outsider.address))
    with pytest.raises(TransactionReverted, match="only registrar"):
        outsider.transact(reg.functions.deregister_node(node_id_bytes32(NODE)))
    assert reg.functions.is_active(node_id_bytes32(NODE)).call() is True


def test_only_the_publisher_can_update_the_root(eth_chain):
    outsider = eth_chain.client_for(OPERATOR_KEYS[0])
    with pytest.raises(TransactionReverted, match="only publisher"):
        outsider.transact(outsider.distributor().functions.publish_root(20260101, b"\x01" * 32, 5))
    dist = eth_chain.client.distributor()
    eth_chain.client.transact(dist.functions.publish_root(20260101, b"\x01" * 32, 5))
    assert dist.functions.merkle_root().call() == b"\x01" * 32
    assert dist.functions.current_epoch().call() == 20260101
    with pytest.raises(TransactionReverted, match="epoch not after"):
        eth_chain.client.transact(dist.functions.publish_root(20251231, b"\x02" * 32, 5))
    with pytest.raises(TransactionReverted, match="cannot decrease"):
        eth_chain.client.transact(dist.functions.publish_root(20260102, b"\x02" * 32, 4))


def _publish(chain, values, epoch):
    tree = build_tree(values)
    chain.client.transact(chain.client.distributor().functions.publish_root(
        epoch, tree.root, sum(v for _, v in values)))
    return tree


def _proof(tree, wallet):
    amount, proof = tree.proof_for(wallet)
    return amount, [bytes.fromhex(p[2:]) for p in proof]


def test_claim_pays_the_difference_and_a_second_claim_pays_nothing_more(eth_chain):
    alice = Account.from_key(OPERATOR_KEYS[0]).address
    bob = Account.from_key(OPERATOR_KEYS[1]).address
    token = eth_chain.client.token()
    dist = eth_chain.client.distributor()

    tree = _publish(eth_chain, [(alice, 300), (bob, 700)], 20260101)
    amount, proof = _proof(tree, alice)
    # Anyone may submit the claim; the tokens go to the wallet in the leaf.
    eth_chain.client.transact(dist.functions.claim(alice, amount, proof))
    assert token.functions.balanceOf(alice).call() == 300
    assert dist.functions.claimed(alice).call() == 300

    with pytest.raises(TransactionReverted, match="nothing to claim"):
        eth_chain.client.transact(dist.functions.claim(alice, amount, proof))
    assert token.functions.balanceOf(alice).call() == 300

    # Next epoch: cumulative amounts grow; the claim pays only the new part.
    tree2 = _publish(eth_chain, [(alice, 450), (bob, 1550)], 20260102)
    amount2, proof2 = _proof(tree2, alice)
    eth_chain.client_for(OPERATOR_KEYS[0]).transact(dist.functions.claim(alice, amount2, proof2))
    assert token.functions.balanceOf(alice).call() == 450

    # Bob never claimed: one claim collects both epochs.
    amount_b, proof_b = _proof(tree2, bob)
    eth_chain.client.transact(dist.functions.claim(bob, amount_b, proof_b))
    assert token.functions.balanceOf(bob).call() == 1550


def test_wrong_proof_or_inflated_amount_reverts(eth_chain):
    alice = Account.from_key(OPERATOR_KEYS[0]).address
    bob = Account.from_key(OPERATOR_KEYS[1]).address
    dist = eth_chain.client.distributor()
    tree = _publish(eth_chain, [(alice, 300), (bob, 700), ("0x" + "33" * 20, 5)], 20260101)
    amount, proof = _proof(tree, alice)
    _, bob_proof = _proof(tree, bob)
    with pytest.raises(TransactionReverted, match="invalid proof"):
        eth_chain.client.transact(dist.functions.claim(alice, amount + 1, proof))
    with pytest.raises(TransactionReverted, match="invalid proof"):
        eth_chain.client.transact(dist.functions.claim(alice, amount, bob_proof))
    with pytest.raises(TransactionReverted, match="invalid proof"):
        eth_chain.client.transact(dist.functions.claim(bob, amount, proof))
    assert eth_chain.client.token().functions.balanceOf(alice).call() == 0
    assert dist.functions.verify(alice, amount, proof).call() is True


def _exactly_funded(chain, funding):
    """A fresh deployment whose distributor holds exactly `funding` (own client: the session's
    eth_chain client keeps the snapshot's addresses)."""
    from noderr_core.chain.client import ChainClient
    from noderr_core.chain.deploy import deploy_contracts
    from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY

    client = ChainClient(chain.w3, LOCAL_CHAIN_SIGNER_KEY, receipt_timeout=15, poll_latency=0.01)
    client.addresses = deploy_contracts(client, funding=funding)
    return client


def test_a_root_above_balance_plus_claimed_is_refused_and_claims_never_exceed_the_total(eth_chain):
    alice = Account.from_key(OPERATOR_KEYS[0]).address
    bob = Account.from_key(OPERATOR_KEYS[1]).address
    client = _exactly_funded(eth_chain, 1_000)
    dist = client.distributor()
    with pytest.raises(TransactionReverted, match="total exceeds funding"):
        client.transact(dist.functions.publish_root(20260101, b"\x01" * 32, 1_001))
    tree = build_tree([(alice, 400), (bob, 600)])
    client.transact(dist.functions.publish_root(20260101, tree.root, 1_000))
    amount, proof = _proof(tree, alice)
    client.transact(dist.functions.claim(alice, amount, proof))
    # Balance 600 + claimed 400 = 1000: a total of 1001 is still refused, 1000 is fine.
    with pytest.raises(TransactionReverted, match="total exceeds funding"):
        client.transact(dist.functions.publish_root(20260102, b"\x02" * 32, 1_001))
    # A root whose leaves sum to more than its declared total cannot pay past the total.
    bad = build_tree([(alice, 400), (bob, 700)])
    client.transact(dist.functions.publish_root(20260102, bad.root, 1_000))
    amount_b, proof_b = _proof(bad, bob)
    with pytest.raises(TransactionReverted, match="claims exceed the published total"):
        client.transact(dist.functions.claim(bob, amount_b, proof_b))
    assert dist.functions.total_claimed().call() == 400
    assert client.token().functions.balanceOf(dist.address).call() == 600


def test_the_same_epoch_cannot_be_published_twice(eth_chain):
    dist = eth_chain.client.distributor()
    eth_chain.client.transact(dist.functions.publish_root(20260101, b"\x01" * 32, 5))
    with pytest.raises(TransactionReverted, match="epoch not after"):
        eth_chain.client.transact(dist.functions.publish_root(20260101, b"\x02" * 32, 9))
    assert dist.functions.merkle_root().call() == b"\x01" * 32


def test_the_pauser_stops_and_resumes_claims(eth_chain):
    alice = Account.from_key(OPERATOR_KEYS[0]).address
    dist = eth_chain.client.distributor()
    tree = _publish(eth_chain, [(alice, 300), ("0x" + "22" * 20, 1)], 20260101)
    amount, proof = _proof(tree, alice)
    outsider = eth_chain.client_for(OPERATOR_KEYS[0])
    with pytest.raises(TransactionReverted, match="only pauser"):
        outsider.transact(outsider.distributor().functions.pause())
    eth_chain.client.transact(dist.functions.pause())
    with pytest.raises(TransactionReverted, match="claims are paused"):
        eth_chain.client.transact(dist.functions.claim(alice, amount, proof))
    # Publishing stays possible while paused (to replace a bad root).
    tree = _publish(eth_chain, [(alice, 350), ("0x" + "22" * 20, 1)], 20260102)
    eth_chain.client.transact(dist.functions.unpause())
    amount, proof = _proof(tree, alice)
    eth_chain.client.transact(dist.functions.claim(alice, amount, proof))
    assert eth_chain.client.token().functions.balanceOf(alice).call() == 350
    # The owner hands the role over; the old pauser loses it.
    eth_chain.client.transact(dist.functions.set_pauser(outsider.address))
    with pytest.raises(TransactionReverted, match="only pauser"):
        eth_chain.client.transact(dist.functions.pause())
    outsider.transact(outsider.distributor().functions.pause())
    assert dist.functions.paused().call() is True
