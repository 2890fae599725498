# pragma version ~=0.4.3
"""
@title RewardDistributor
@notice Pays Noderr rewards against a cumulative Merkle root.
        Each leaf is (operator wallet, cumulative amount earned over all epochs so far), encoded
        like OpenZeppelin's StandardMerkleTree: keccak256(keccak256(abi.encode(address, uint256))),
        internal nodes hash the sorted pair. `claim` pays the difference between the cumulative
        amount and what the wallet already claimed, so one claim collects every epoch so far and a
        repeated claim pays nothing more. Only the publisher role updates the root.
        Guards: a root's epoch must be later than the current one; its cumulative total may not
        decrease nor exceed what the distributor holds plus what it already paid out (it can
        always pay every leaf); all claims together never exceed the published total; the pauser
        role can stop claims (publishing stays possible, to replace a bad root).
"""

from ethereum.ercs import IERC20

event RootPublished:
    epoch: indexed(uint256)
    root: bytes32
    total_cumulative: uint256

event Claimed:
    account: indexed(address)
    amount: uint256
    cumulative_amount: uint256

event PublisherChanged:
    previous: indexed(address)
    current: indexed(address)

event PauserChanged:
    previous: indexed(address)
    current: indexed(address)

event Paused:
    by: indexed(address)

event Unpaused:
    by: indexed(address)

MAX_PROOF_DEPTH: constant(uint256) = 64

owner: public(address)
publisher: public(address)
# Immutable: part of the code, so a claim reads it without a storage load.
token: public(immutable(IERC20))
merkle_root: public(bytes32)
# The epoch (YYYYMMDD) whose cumulative totals the current root holds; roots never go back in time.
current_epoch: public(uint256)
total_cumulative: public(uint256)
claimed: public(HashMap[address, uint256])
# Everything paid out so far (sum of `claimed`).
total_claimed: public(uint256)
pauser: public(address)
paused: public(bool)


@deploy
def __init__(token_: address, publisher_: address):
    assert token_ != empty(address), "token is the zero address"
    assert publisher_ != empty(address), "publisher is the zero address"
    self.owner = msg.sender
    token = IERC20(token_)
    self.publisher = publisher_
    self.pauser = msg.sender


@external
def publish_root(epoch: uint256, root: bytes32, total_cumulative: uint256):
    assert msg.sender == self.publisher, "only publisher"
    assert epoch > self.current_epoch, "epoch not after the current root"
    assert total_cumulative >= self.total_cumulative, "cumulative total cannot decrease"
    # Funded: what is still owed (total - claimed) must be in the distributor's balance.
    assert total_cumulative <= staticcall token.balanceOf(self) + self.total_claimed, "total exceeds funding"
    self.merkle_root = root
    self.current_epoch = epoch
    self.total_cumulative = total_cumulative
    log RootPublished(epoch=epoch, root=root, total_cumulative=total_cumulative)


@view
@internal
def _verify(proof: DynArray[bytes32, MAX_PROOF_DEPTH], leaf: bytes32) -> bool:
    computed: bytes32 = leaf
    for sibling: bytes32 in proof:
        if convert(computed, uint256) < convert(sibling, uint256):
            computed = keccak256(concat(computed, sibling))
        else:
            computed = keccak256(concat(sibling, computed))
    return computed == self.merkle_root


@view
@external
def verify(account: address, cumulative_amount: uint256, proof: DynArray[bytes32, MAX_PROOF_DEPTH]) -> bool:
    leaf: bytes32 = keccak256(keccak256(abi_encode(account, cumulative_amount)))
    return self._verify(proof, leaf)


@external
def claim(account: address, cumulative_amount: uint256, proof: DynArray[bytes32, MAX_PROOF_DEPTH]):
    assert not self.paused, "claims are paused"
    leaf: bytes32 = keccak256(keccak256(abi_encode(account, cumulative_amount)))
    assert self._verify(proof, leaf), "invalid proof"
    already: uint256 = self.claimed[account]
    assert cumulative_amount > already, "nothing to claim"
    payout: uint256 = cumulative_amount - already
    paid: uint256 = self.total_claimed + payout
    assert paid <= self.total_cumulative, "claims exceed the published total"
    self.claimed[account] = cumulative_amount
    self.total_claimed = paid
    assert extcall token.transfer(account, payout), "token transfer failed"
    log Claimed(account=account, amount=payout, cumulative_amount=cumulative_amount)


@external
def set_publisher(new_publisher: address):
    assert msg.sender == self.owner, "only owner"
    assert new_publisher != empty(address), "publisher is the zero address"
    log PublisherChanged(previous=self.publisher, current=new_publisher)
    self.publisher = new_publisher


@external
def set_pauser(new_pauser: address):
    assert msg.sender == self.owner, "only owner"
    assert new_pauser != empty(address), "pauser is the zero address"
    log PauserChanged(previous=self.pauser, current=new_pauser)
    self.pauser = new_pauser


@external
def pause():
    assert msg.sender == self.pauser, "only pauser"
    self.paused = True
    log Paused(by=msg.sender)


@external
def unpause():
    assert msg.sender == self.pauser, "only pauser"
    self.paused = False
    log Unpaused(by=msg.sender)
