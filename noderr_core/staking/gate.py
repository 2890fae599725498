"""The bonding gate: a node may lease work only while its operator's stake for it is bonded.

`stake_allows_leasing(session, node_id)` is one primary-key read of `node_stakes` (the observer's
copy of the chain), so the lease hot path never makes an RPC. It is called once at the start of
`POST /v1/tasks/lease` (api/routes/tasks.py, `post_lease`) when `Settings.stake_gate_enabled`
(NODERR_STAKE_REQUIRED; on outside local/test). A refusal is a 403 whose detail, from
`stake_refusal_detail`, says what the operator has to do.

`node_stake_view` is the read the admin's node page and the operator's pages show.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from noderr_core.staking.chain import StakeState
from noderr_core.tables.staking import NodeStake
from noderr_core.tasks.bulk import driver_rows

TOKEN_DECIMALS = 18


# Built once and run through the driver (noderr_core.tasks.bulk.driver_rows): it precedes every lease.
_STAKE = select(NodeStake.state, NodeStake.amount, NodeStake.min_stake).where(
    NodeStake.node_id == bindparam("node_id"))


def stake_allows_leasing(session: Session, node_id: str) -> bool:
    rows = driver_rows(session, _STAKE, {"node_id": node_id})
    if not rows:
        return False
    row = rows[0]
    return row["state"] == StakeState.BONDED and row["amount"] >= row["min_stake"] > 0


def format_tokens(amount: int) -> str:
    """Base units as a decimal token amount, exactly (no float): 1500000000000000000 -> '1.5'."""
    whole, frac = divmod(int(amount), 10**TOKEN_DECIMALS)
    if not frac:
        return str(whole)
    return f"{whole}.{str(frac).rjust(TOKEN_DECIMALS, '0').rstrip('0')}"


@dataclass(frozen=True)
class NodeStakeView:
    node_id: str
    state: str  # StakeState, or "unknown" before the observer has seen the node
    amount: int
    min_stake: int
    operator_wallet: str | None
    withdrawable_at: datetime | None
    observed_block: int | None
    updated_at: datetime | None

    @property
    def allows_leasing(self) -> bool:
        return self.state == StakeState.BONDED and self.amount >= self.min_stake > 0

    @property
    def amount_tokens(self) -> str:
        return format_tokens(self.amount)

    @property
    def min_stake_tokens(self) -> str:
        return format_tokens(self.min_stake)


UNKNOWN = "unknown"


def node_stake_view(session: Session, node_id: str) -> NodeStakeView:
    row = session.get(NodeStake, node_id)
    if row is None:
        return NodeStakeView(node_id, UNKNOWN, 0, 0, None, None, None, None)
    return NodeStakeView(node_id, row.state, row.amount, row.min_stake, row.operator_wallet,
                         row.withdrawable_at, row.observed_block, row.updated_at)


def stake_refusal_detail(session: Session, node_id: str) -> str:
    """Why the gate refused, and what to do (only computed on the refusal path)."""
    view = node_stake_view(session, node_id)
    how = (f"bond at least the minimum stake for node {node_id} from its registered payout wallet "
           "with Stake.bond(node_id, amount) (see the bundle README, 'Bond stake')")
    if view.state == UNKNOWN or view.state == StakeState.NONE:
        return f"node {node_id} has no bonded stake: {how}; leasing starts once the bond is observed on-chain"
    if view.state == StakeState.BELOW_MINIMUM:
        return (f"node {node_id} has {view.amount_tokens} tokens bonded, below the minimum "
                f"{view.min_stake_tokens} (after a slash?): top it up with Stake.bond(node_id, amount)")
    if view.state in (StakeState.UNBONDING, StakeState.WITHDRAWABLE):
        return (f"node {node_id}'s stake is unbonding: an unbonding node leases no work; withdraw it "
                f"after {view.withdrawable_at.isoformat() if view.withdrawable_at else 'the delay'} and bond again")
    return f"node {node_id} may not lease work: its stake is {view.state}; {how}"
