# pragma version ~=0.4.3
"""
@title Stake
@notice Bonded stake per Noderr node, slashable on proven misbehaviour.
        The node's operator wallet (as recorded in the NodeRegistry) bonds at least `min_stake`
        of the token for the node. Unbonding is a request followed by `unbonding_delay` seconds:
        the stake stays slashable until the delay ends, then the operator withdraws it. Only the
        slasher role (the control plane's signer) slashes, a fraction in basis points per slashing
        case; each case slashes at most once, and the slashed tokens go to the treasury.
        Node ids are the registry's keys (the platform id as ASCII, right-padded to bytes32).
"""

from ethereum.ercs import IERC20

interface NodeRegistry:
    def operator_of(node_id: bytes32) -> address: view
    def is_active(node_id: bytes32) -> bool: view

event Bonded:
    node_id: indexed(bytes32)
    operator: indexed(address)
    amount: uint256
    total: uint256

event UnbondRequested:
    node_id: indexed(bytes32)
    operator: indexed(address)
    amount: uint256
    withdrawable_at: uint256

event Withdrawn:
    node_id: indexed(bytes32)
    operator: indexed(address)
    amount: uint256

event Slashed:
    node_id: indexed(bytes32)
    operator: indexed(address)
    case_id: indexed(bytes32)
    amount: uint256
    remaining: uint256

event SlasherChanged:
    previous: indexed(address)
    current: indexed(address)

event TreasuryChanged:
    previous: indexed(address)
    current: indexed(address)

event MinStakeChanged:
    previous: uint256
    current: uint256

struct Bond:
    operator: address
    amount: uint256
    # 0 while bonded; otherwise the time from which the operator may withdraw (and from which
    # the stake can no longer be slashed).
    withdrawable_at: uint256

MAX_BPS: constant(uint256) = 10000

owner: public(address)
slasher: public(address)
treasury: public(address)
token: public(IERC20)
registry: public(NodeRegistry)
min_stake: public(uint256)
unbonding_delay: public(uint256)
bonds: public(HashMap[bytes32, Bond])
# case id -> amount slashed under it (a case slashes once; the relay checks this before resending)
slashed_by_case: public(HashMap[bytes32, uint256])
total_bonded: public(uint256)
total_slashed: public(uint256)


@deploy
def __init__(token_: address, registry_: address, slasher_: address, treasury_: address,
             min_stake_: uint256, unbonding_delay_: uint256):
    assert token_ != empty(address), "token is the zero address"
    assert registry_ != empty(address), "registry is the zero address"
    assert slasher_ != empty(address), "slasher is the zero address"
    assert treasury_ != empty(address), "treasury is the zero address"
    assert min_stake_ > 0, "minimum stake must be positive"
    self.owner = msg.sender
    self.token = IERC20(token_)
    self.registry = NodeRegistry(registry_)
    self.slasher = slasher_
    self.treasury = treasury_
    self.min_stake = min_stake_
    self.unbonding_delay = unbonding_delay_


@external
def bond(node_id: bytes32, amount: uint256):
    """Bond `amount` more for the node, from the node's registered operator wallet."""
    assert staticcall self.registry.is_active(node_id), "node is not registered in the NodeRegistry"
    operator: address = staticcall self.registry.operator_of(node_id)
    assert msg.sender == operator, "only the node's registered operator wallet can bond for it"
    current: Bond = self.bonds[node_id]
    assert current.withdrawable_at == 0, "the stake is unbonding: withdraw it after the delay, then bond again"
    assert amount > 0, "amount is zero"
    if current.amount > 0:
        assert current.operator == operator, "the stake belongs to another operator: it must be withdrawn first"
    total: uint256 = current.amount + amount
    assert total >= self.min_stake, "below the minimum stake"
    assert extcall self.token.transferFrom(msg.sender, self, amount), "token transfer failed"
    self.bonds[node_id] = Bond(operator=operator, amount=total, withdrawable_at=0)
    self.total_bonded += amount
    log Bonded(node_id=node_id, operator=operator, amount=amount, total=total)


@external
def request_unbond(node_id: bytes32):
    """Start the unbonding delay; the node no longer counts as bonded from now on."""
    current: Bond = self.bonds[node_id]
    assert current.amount > 0, "nothing is bonded for this node"
    assert msg.sender == current.operator, "only the operator who bonded can unbond"
    assert current.withdrawable_at == 0, "unbonding already requested"
    withdrawable_at: uint256 = block.timestamp + self.unbonding_delay
    self.bonds[node_id].withdrawable_at = withdrawable_at
    log UnbondRequested(node_id=node_id, operator=current.operator, amount=current.amount,
                        withdrawable_at=withdrawable_at)


@external
def withdraw(node_id: bytes32):
    """Pay an unbonded stake back to its operator once the delay is over."""
    current: Bond = self.bonds[node_id]
    assert current.amount > 0, "nothing is bonded for this node"
    assert msg.sender == current.operator, "only the operator who bonded can withdraw"
    assert current.withdrawable_at != 0, "request_unbond first"
    assert block.timestamp >= current.withdrawable_at, "the unbonding delay is not over"
    self.bonds[node_id] = empty(Bond)
    self.total_bonded -= current.amount
    assert extcall self.token.transfer(current.operator, current.amount), "token transfer failed"
    log Withdrawn(node_id=node_id, operator=current.operator, amount=current.amount)


@external
def slash(node_id: bytes32, case_id: bytes32, fraction_bps: uint256) -> uint256:
    """Slash `fraction_bps`/10000 of the node's stake under `case_id` and send it to the treasury."""
    assert msg.sender == self.slasher, "only slasher"
    assert fraction_bps > 0 and fraction_bps <= MAX_BPS, "fraction must be 1..10000 basis points"
    assert self.slashed_by_case[case_id] == 0, "this case was already slashed"
    current: Bond = self.bonds[node_id]
    assert current.amount > 0, "nothing to slash: the node has no stake (never bonded or fully withdrawn)"
    if current.withdrawable_at != 0:
        assert block.timestamp < current.withdrawable_at, "nothing to slash: the unbonding delay is over"
    amount: uint256 = current.amount * fraction_bps // MAX_BPS
    assert amount > 0, "the stake is too small to slash this fraction"
    remaining: uint256 = current.amount - amount
    self.bonds[node_id].amount = remaining
    self.slashed_by_case[case_id] = amount
    self.total_bonded -= amount
    self.total_slashed += amount
    assert extcall self.token.transfer(self.treasury, amount), "token transfer failed"
    log Slashed(node_id=node_id, operator=current.operator, case_id=case_id, amount=amount,
                remaining=remaining)
    return amount


@view
@external
def is_bonded(node_id: bytes32) -> bool:
    """True when the node's stake is at least the minimum and not unbonding."""
    current: Bond = self.bonds[node_id]
    return current.withdrawable_at == 0 and current.amount >= self.min_stake


@external
def set_slasher(new_slasher: address):
    assert msg.sender == self.owner, "only owner"
    assert new_slasher != empty(address), "slasher is the zero address"
    log SlasherChanged(previous=self.slasher, current=new_slasher)
    self.slasher = new_slasher


@external
def set_treasury(new_treasury: address):
    assert msg.sender == self.owner, "only owner"
    assert new_treasury != empty(address), "treasury is the zero address"
    log TreasuryChanged(previous=self.treasury, current=new_treasury)
    self.treasury = new_treasury


@external
def set_min_stake(new_min_stake: uint256):
    assert msg.sender == self.owner, "only owner"
    assert new_min_stake > 0, "minimum stake must be positive"
    log MinStakeChanged(previous=self.min_stake, current=new_min_stake)
    self.min_stake = new_min_stake
