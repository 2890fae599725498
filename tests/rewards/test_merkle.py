"""Our Merkle tree against @openzeppelin/merkle-tree (run under Node) and the pool split."""

from __future__ import annotations

import json
import random
import subprocess

import pytest
from eth_account import Account

from noderr_core.rewards.merkle import MerkleError, build_tree, verify_proof
from noderr_core.rewards.scoring import largest_remainder_split, score_node
from noderr_core.settings import PROJECT_ROOT

OZ_SCRIPT = """
const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");
const values = JSON.parse(require("fs").readFileSync(0, "utf8"));
const tree = StandardMerkleTree.of(values, ["address", "uint256"]);
const proofs = values.map((v, i) => tree.getProof(i));
console.log(JSON.stringify({ root: tree.root, proofs }));
"""


def openzeppelin_tree(values: list[tuple[str, int]]) -> dict:
    out = subprocess.run(
        ["node", "-e", OZ_SCRIPT],
        input=json.dumps([[a, str(v)] for a, v in values]),
        capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=60, check=True,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 257])
def test_root_and_proofs_match_openzeppelin_standard_merkle_tree(size):
    rng = random.Random(size)
    values = [(Account.create().address, rng.randrange(0, 10**24)) for _ in range(size)]
    values[0] = (values[0][0], 2**256 - 1)  # the largest uint256 encodes like OZ's
    ours = build_tree(values)
    theirs = openzeppelin_tree(values)
    assert ours.root_hex == theirs["root"]
    for i, (address, amount) in enumerate(values):
        assert ours.proof_hex(i) == theirs["proofs"][i]
        assert verify_proof(ours.root_hex, address, amount, ours.proof_hex(i))


def test_proofs_reject_wrong_amounts_and_addresses():
    values = [(Account.create().address, 10 * i + 1) for i in range(5)]
    tree = build_tree(values)
    addr, amount = values[2]
    proof = tree.proof_hex(2)
    assert verify_proof(tree.root, addr, amount, proof)
    assert not verify_proof(tree.root, addr, amount + 1, proof)
    assert not verify_proof(tree.root, values[3][0], amount, proof)


def test_tree_refuses_empty_duplicate_and_oversized_leaves():
    addr = Account.create().address
    with pytest.raises(MerkleError):
        build_tree([])
    with pytest.raises(MerkleError, match="duplicate"):
        build_tree([(addr, 1), (addr.lower(), 2)])
    with pytest.raises(MerkleError, match="uint256"):
        build_tree([(addr, 2**256)])


def test_root_does_not_depend_on_input_order():
    values = [(Account.create().address, i + 1) for i in range(20)]
    shuffled = values[:]
    random.Random(1).shuffle(shuffled)
    assert build_tree(values).root == build_tree(shuffled).root


def test_largest_remainder_split_sums_to_the_pool_exactly_and_is_deterministic():
    rng = random.Random(7)
    pool = 1_000 * 10**18 + 7
    weights = [(f"node_{i:04d}", rng.randrange(0, 5000)) for i in range(333)]
    amounts = largest_remainder_split(pool, weights)
    assert sum(amounts.values()) == pool
    assert amounts == largest_remainder_split(pool, list(reversed(weights)))
    for key, w in weights:
        total = sum(x for _, x in weights)
        exact = pool * w / total
        assert abs(amounts[key] - exact) < 1 + 1e-6 * exact


def test_split_ties_go_to_the_smaller_id_and_zero_scores_get_nothing():
    assert largest_remainder_split(10, [("b", 1), ("a", 1), ("c", 1)]) == {"a": 4, "b": 3, "c": 3}
    assert largest_remainder_split(10, [("a", 0), ("b", 0)]) == {"a": 0, "b": 0}
    assert largest_remainder_split(5, [("a", 0), ("b", 3)]) == {"a": 0, "b": 5}


def test_score_v2_pays_proven_slots_and_work_and_penalises_invalid_and_error_results():
    full = score_node(proven_slots=288, tasks_valid=100, tasks_invalid=0, tasks_error=0)
    half = score_node(proven_slots=144, tasks_valid=100, tasks_invalid=0, tasks_error=0)
    cheat = score_node(proven_slots=288, tasks_valid=100, tasks_invalid=40, tasks_error=0)
    flaky = score_node(proven_slots=288, tasks_valid=100, tasks_invalid=0, tasks_error=30)
    assert full.score > half.score > 0
    assert cheat.invalid_penalty == 40 * 25 and cheat.score < full.score
    assert flaky.error_penalty == 30 * 10 and flaky.score < full.score
    # Heartbeats are not an input at all: no proof, no work -> nothing.
    assert score_node(proven_slots=0, tasks_valid=0, tasks_invalid=9, tasks_error=0).score == 0
