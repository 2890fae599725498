"""Bonded stake: the Stake contract's bonds, mirrored in `node_stakes`, and the bonding gate.

Modules:
  chain     read a bond from the contract; the operator's own bond/unbond/withdraw transactions
  observer  the stake observer: applies Stake events to `node_stakes` (run by a Dagster job)
  gate      `stake_allows_leasing`: the one cheap check at the start of a lease (a primary-key
            read of `node_stakes`, never an RPC), and `node_stake_view` for the pages
"""

from noderr_core.staking.gate import (
    NodeStakeView,
    node_stake_view,
    stake_allows_leasing,
    stake_refusal_detail,
)

__all__ = ["NodeStakeView", "node_stake_view", "stake_allows_leasing", "stake_refusal_detail"]
