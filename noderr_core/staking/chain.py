"""The Stake contract as the platform sees it: a node's bond read from chain, and the operator's
own transactions (approve + bond, request unbond, withdraw) for the CLI, the demo and tests.

The platform never signs an operator's bond: `bond_stake` takes a client built on the operator's
own key. Reads return a `ChainBond`, the one shape the observer stores in `node_stakes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from eth_utils import to_checksum_address

from noderr_core.chain.client import ChainClient, TxReceipt, node_id_bytes32

ZERO_ADDRESS = "0x" + "00" * 20


class StakeState:
    """What a node's bond is, as the gate and the pages name it."""

    NONE = "none"  # nothing bonded (never, or fully withdrawn)
    BONDED = "bonded"  # at least the minimum, not unbonding: the node may lease
    BELOW_MINIMUM = "below_minimum"  # bonded, but less than the minimum (e.g. after a slash)
    UNBONDING = "unbonding"  # unbond requested: still slashable until withdrawable_at
    WITHDRAWABLE = "withdrawable"  # the delay is over: no longer slashable, may be withdrawn


@dataclass(frozen=True)
class ChainBond:
    node_id: str
    operator_wallet: str | None
    amount: int
    withdrawable_at: datetime | None  # set while unbonding
    min_stake: int

    def state(self, now: datetime) -> str:
        if self.amount == 0:
            return StakeState.NONE
        if self.withdrawable_at is not None:
            return StakeState.WITHDRAWABLE if now >= self.withdrawable_at else StakeState.UNBONDING
        return StakeState.BONDED if self.amount >= self.min_stake else StakeState.BELOW_MINIMUM


def read_bond(client: ChainClient, node_id: str, *, min_stake: int | None = None) -> ChainBond:
    stake = client.stake()
    operator, amount, withdrawable_at = client.read(stake.functions.bonds(node_id_bytes32(node_id)))
    if min_stake is None:
        min_stake = client.read(stake.functions.min_stake())
    operator = to_checksum_address(operator)
    return ChainBond(
        node_id=node_id,
        operator_wallet=None if operator == to_checksum_address(ZERO_ADDRESS) else operator,
        amount=int(amount),
        withdrawable_at=datetime.fromtimestamp(withdrawable_at, UTC) if withdrawable_at else None,
        min_stake=int(min_stake),
    )


def bond_stake(operator_client: ChainClient, node_id: str, amount: int) -> TxReceipt:
    """Approve the Stake contract for `amount` and bond it for the node (two transactions)."""
    stake = operator_client.stake()
    token = operator_client.token()
    allowance = operator_client.read(token.functions.allowance(operator_client.address, stake.address))
    if allowance < amount:
        operator_client.transact(token.functions.approve(stake.address, amount))
    return operator_client.transact(stake.functions.bond(node_id_bytes32(node_id), amount))


def request_unbond(operator_client: ChainClient, node_id: str) -> TxReceipt:
    return operator_client.transact(operator_client.stake().functions.request_unbond(node_id_bytes32(node_id)))


def withdraw_stake(operator_client: ChainClient, node_id: str) -> TxReceipt:
    return operator_client.transact(operator_client.stake().functions.withdraw(node_id_bytes32(node_id)))
