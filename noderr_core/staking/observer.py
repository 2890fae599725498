"""The stake observer: applies the Stake contract's events to `node_stakes`.

Every event that changes a bond (Bonded, UnbondRequested, Withdrawn, Slashed) carries the node id as
its first indexed topic. For a block range the observer collects the node ids those events name,
reads each node's bond *as of the range's last block* (so replaying a range writes the same rows),
upserts `node_stakes`, and moves `stake_sync_cursors.last_block`, all in one transaction. The
chain is read outside any database transaction (no lock is held during RPCs).

Rules:
- Node ids the platform does not know (someone else's bond) are ignored.
- A range is at most `max_blocks` long; the sensor asks again until the cursor reaches the head.
- A redeployed Stake contract (new address) starts from its own deploy block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from eth_utils import to_checksum_address
from sqlalchemy import Engine, Table, select
from sqlalchemy.orm import Session

from noderr_core.chain.client import ChainClient, ChainUnavailable, node_id_bytes32
from noderr_core.db import make_session_factory
from noderr_core.staking.chain import ZERO_ADDRESS, ChainBond, read_bond
from noderr_core.tables import Node
from noderr_core.tables.staking import NodeStake, StakeSyncCursor
from noderr_core.tasks.bulk import dialect_insert
from noderr_core.timeutil import utcnow

MAX_BLOCKS_PER_SYNC = 5_000


@dataclass
class StakeSyncReport:
    from_block: int
    to_block: int
    events: int = 0
    nodes_updated: list[str] = field(default_factory=list)
    unknown_nodes: int = 0

    def as_metadata(self) -> dict:
        return {"from_block": self.from_block, "to_block": self.to_block, "events": self.events,
                "nodes_updated": len(self.nodes_updated), "unknown_nodes": self.unknown_nodes}


def synced_block(session: Session, client: ChainClient) -> int:
    """The last block applied for the deployed Stake contract (its deploy block - 1 at first)."""
    addresses = client._require_addresses()
    row = session.get(StakeSyncCursor, addresses.stake)
    return row.last_block if row is not None else max(addresses.deployed_block - 1, -1)


def pending_range(session: Session, client: ChainClient, *, max_blocks: int = MAX_BLOCKS_PER_SYNC) -> tuple[int, int] | None:
    """(from_block, to_block) not yet applied, or None when the observer is at the chain head."""
    head = client.w3.eth.block_number
    last = synced_block(session, client)
    if head <= last:
        return None
    return last + 1, min(head, last + max_blocks)


def _node_id_of(topic: bytes) -> str | None:
    raw = bytes(topic).rstrip(b"\0")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return None


def sync_stakes(engine: Engine, client: ChainClient, *, max_blocks: int = MAX_BLOCKS_PER_SYNC) -> StakeSyncReport | None:
    """Apply the next pending block range; None when already at the head."""
    factory = make_session_factory(engine)
    with factory() as session:
        span = pending_range(session, client, max_blocks=max_blocks)
        session.rollback()
    if span is None:
        return None
    from_block, to_block = span
    stake = client.stake()
    try:
        logs = client.w3.eth.get_logs({"address": stake.address, "fromBlock": from_block, "toBlock": to_block})
    except Exception as exc:
        raise ChainUnavailable(f"reading Stake events {from_block}..{to_block} failed: {exc}") from exc
    report = StakeSyncReport(from_block, to_block, events=len(logs))
    named = sorted({nid for log in logs if len(log["topics"]) > 1
                    for nid in [_node_id_of(log["topics"][1])] if nid})
    with factory() as session:
        known = set(session.scalars(select(Node.id).where(Node.id.in_(named)))) if named else set()
        session.rollback()
    report.unknown_nodes = len(set(named) - known)
    bonds = []
    if known:
        min_stake = client.read(stake.functions.min_stake())
        now = utcnow()
        for node_id in sorted(known):
            bond = _read_bond_at(client, node_id, to_block, min_stake)
            bonds.append({
                "node_id": node_id, "operator_wallet": bond.operator_wallet, "amount": bond.amount,
                "min_stake": bond.min_stake, "state": bond.state(now),
                "withdrawable_at": bond.withdrawable_at, "observed_block": to_block, "updated_at": now,
            })
    with factory() as session:
        for bond in bonds:
            _upsert(session, NodeStake.__table__, bond, "node_id")
        addresses = client._require_addresses()
        _upsert(session, StakeSyncCursor.__table__, {"contract": addresses.stake, "chain_id": addresses.chain_id,
                                                     "last_block": to_block, "updated_at": utcnow()}, "contract")
        session.commit()
    report.nodes_updated = [b["node_id"] for b in bonds]
    return report


def _upsert(session: Session, table: Table, row: dict, key: str) -> None:
    stmt = dialect_insert(session, table).values(**row)
    session.execute(stmt.on_conflict_do_update(index_elements=[key],
                                               set_={c: stmt.excluded[c] for c in row if c != key}))


def _read_bond_at(client: ChainClient, node_id: str, block: int, min_stake: int) -> ChainBond:
    """The bond as of `block` (falls back to latest on nodes that keep no history)."""
    fn = client.stake().functions.bonds(node_id_bytes32(node_id))
    try:
        operator, amount, withdrawable_at = fn.call(block_identifier=block)
    except Exception:
        return read_bond(client, node_id, min_stake=min_stake)
    operator = to_checksum_address(operator)
    return ChainBond(node_id, None if operator == to_checksum_address(ZERO_ADDRESS) else operator,
                     int(amount), datetime.fromtimestamp(withdrawable_at, UTC) if withdrawable_at else None,
                     int(min_stake))
