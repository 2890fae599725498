"""Rewards: epoch scoring and split (in SQL), the cumulative Merkle tree, claims and earnings.

Modules:
  scoring   score weights and the largest-remainder split of a pool in integer base units
  epochs    compute one daily epoch from heartbeats and judged task results (SQL aggregation)
  merkle    StandardMerkleTree-compatible tree over (address, uint256) leaves, and proofs
  tree      the cumulative tree per epoch, publishing its root through the chain outbox
  claims    what a wallet can claim, with its proof and ready-made call data; earnings views
"""
