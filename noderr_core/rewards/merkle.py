"""A Merkle tree over (address, uint256) leaves, compatible with OpenZeppelin's StandardMerkleTree.

Same construction as `@openzeppelin/merkle-tree` 1.x, so its tooling (and `MerkleProof.verify`)
accepts our roots and proofs:
  leaf   = keccak256(keccak256(abi.encode(address, uint256)))   ("bytes.concat" of one hash)
  node   = keccak256(sorted(a, b))                                (commutative pair hash)
  layout = leaves sorted by hash, stored at the end of a flat array in reverse order,
           internal node i = hash(tree[2i+1], tree[2i+2]), root at index 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from eth_hash.auto import keccak
from eth_utils import to_canonical_address, to_checksum_address

UINT256_MAX = 2**256 - 1


class MerkleError(ValueError):
    pass


def leaf_hash(address: str, amount: int) -> bytes:
    if not 0 <= amount <= UINT256_MAX:
        raise MerkleError(f"amount {amount} does not fit in uint256")
    encoded = b"\0" * 12 + to_canonical_address(address) + amount.to_bytes(32, "big")
    return keccak(keccak(encoded))


def hash_pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


@dataclass
class MerkleTree:
    """The tree, with each value's position so a proof is a walk from leaf to root."""

    tree: list[bytes]
    values: list[tuple[str, int]]  # (checksum address, amount), in input order
    tree_index: list[int]  # values[i] sits at tree[tree_index[i]]
    _by_address: dict[str, int]

    @property
    def root(self) -> bytes:
        return self.tree[0]

    @property
    def root_hex(self) -> str:
        return "0x" + self.root.hex()

    def __len__(self) -> int:
        return len(self.values)

    def index_of(self, address: str) -> int:
        try:
            return self._by_address[to_checksum_address(address)]
        except KeyError:
            raise MerkleError(f"{address} is not in this tree") from None

    def proof(self, value_index: int) -> list[bytes]:
        i = self.tree_index[value_index]
        proof: list[bytes] = []
        while i > 0:
            sibling = i + 1 if i % 2 == 1 else i - 1
            proof.append(self.tree[sibling])
            i = (i - 1) // 2
        return proof

    def proof_hex(self, value_index: int) -> list[str]:
        return ["0x" + p.hex() for p in self.proof(value_index)]

    def proof_for(self, address: str) -> tuple[int, list[str]]:
        """(cumulative amount, proof) of one address."""
        idx = self.index_of(address)
        return self.values[idx][1], self.proof_hex(idx)


def build_tree(values: Iterable[tuple[str, int]]) -> MerkleTree:
    """Build the tree; addresses must be unique (one cumulative leaf per wallet)."""
    vals = [(to_checksum_address(addr), int(amount)) for addr, amount in values]
    if not vals:
        raise MerkleError("a Merkle tree needs at least one leaf")
    by_address: dict[str, int] = {}
    for i, (addr, _) in enumerate(vals):
        if addr in by_address:
            raise MerkleError(f"duplicate leaf for {addr}")
        by_address[addr] = i
    hashes = [leaf_hash(addr, amount) for addr, amount in vals]
    # StandardMerkleTree sorts leaves by hash (sortLeaves: true): the root is independent of input order.
    order = sorted(range(len(vals)), key=hashes.__getitem__)
    n = len(vals)
    size = 2 * n - 1
    tree: list[bytes] = [b""] * size
    tree_index = [0] * n
    for rank, value_idx in enumerate(order):
        pos = size - 1 - rank
        tree[pos] = hashes[value_idx]
        tree_index[value_idx] = pos
    for i in range(size - 1 - n, -1, -1):
        tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2])
    return MerkleTree(tree=tree, values=vals, tree_index=tree_index, _by_address=by_address)


def verify_proof(root: bytes | str, address: str, amount: int, proof: Iterable[bytes | str]) -> bool:
    """What the RewardDistributor contract checks, in Python."""
    computed = leaf_hash(address, amount)
    for sibling in proof:
        sib = bytes.fromhex(sibling[2:]) if isinstance(sibling, str) else sibling
        computed = hash_pair(computed, sib)
    want = bytes.fromhex(root[2:]) if isinstance(root, str) else root
    return computed == want
