"""What operators can see and claim: per-epoch earnings with reasons, the public epoch document,
and a wallet's claim (cumulative amount, proof, ready-made call data) against the published root.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import date

from eth_abi import encode as abi_encode
from eth_hash.auto import keccak
from eth_utils import is_address, to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session

from noderr_core.tables.rewards import (
    EpochStatus,
    NodeReward,
    OperatorReward,
    RewardEpoch,
)
from noderr_core.rewards.epochs import epoch_bounds
from noderr_core.rewards.merkle import MerkleTree
from noderr_core.rewards.scoring import SCORING_POLICY_VERSION
from noderr_core.rewards.tree import cumulative_amounts, load_leaves, tree_for_epoch

CLAIM_SIGNATURE = "claim(address,uint256,bytes32[])"
CLAIM_SELECTOR = keccak(CLAIM_SIGNATURE.encode())[:4]
LEAF_ENCODING = {
    "library": "@openzeppelin/merkle-tree StandardMerkleTree",
    "types": ["address", "uint256"],
    "leaf": "keccak256(bytes.concat(keccak256(abi.encode(wallet, cumulative_amount))))",
    "pairs": "sorted",
}


class InvalidWallet(ValueError):
    pass


def normalize_wallet(wallet: str) -> str:
    if not isinstance(wallet, str) or not is_address(wallet):
        raise InvalidWallet(f"{wallet!r} is not an Ethereum address (0x followed by 40 hex digits)")
    return to_checksum_address(wallet)


def claim_call_data(wallet: str, cumulative_amount: int, proof: list[str]) -> str:
    args = abi_encode(
        ["address", "uint256", "bytes32[]"],
        [wallet, cumulative_amount, [bytes.fromhex(p[2:]) for p in proof]],
    )
    return "0x" + (CLAIM_SELECTOR + args).hex()


def _node_reason(row: NodeReward) -> dict:
    return {
        "node_id": row.node_id,
        "amount": str(row.amount),
        "score": row.score,
        "heartbeats": row.heartbeat_count,
        "uptime_slots": row.uptime_slots,
        "eligible_slots": row.eligible_slots,
        # Proven service, not what heartbeats claimed (uptime_slots): policy 2026-11-v2.
        "uptime_percent": round(100 * row.proven_slots / row.eligible_slots, 2) if row.eligible_slots else 0.0,
        "tasks_valid": row.tasks_valid,
        "tasks_invalid": row.tasks_invalid,
        "tasks_error": row.tasks_error,
        "proven_slots": row.proven_slots,
        "challenges_valid": row.challenges_valid,
        "challenges_invalid": row.challenges_invalid,
        "uptime_points": row.uptime_points,
        "task_points": row.task_points,
        "invalid_penalty": row.invalid_penalty,
        "error_penalty": row.error_penalty,
        "downtime_penalty": row.downtime_penalty,
    }


def node_earnings(session: Session, node_id: str) -> list[dict]:
    """Every computed epoch in which the node was active, newest first, with the reason."""
    rows = session.execute(
        select(NodeReward, RewardEpoch)
        .join(RewardEpoch, RewardEpoch.id == NodeReward.epoch_id)
        .where(NodeReward.node_id == node_id)
        .order_by(RewardEpoch.epoch_date.desc())
    ).all()
    return [
        {"epoch": epoch.epoch_date.isoformat(), "epoch_status": epoch.status} | _node_reason(row)
        for row, epoch in rows
    ]


def operator_earnings(session: Session, wallet: str) -> dict:
    """A wallet's per-epoch earnings (with each node's reason), newest first, and its total."""
    wallet = normalize_wallet(wallet)
    epochs = session.execute(
        select(OperatorReward, RewardEpoch)
        .join(RewardEpoch, RewardEpoch.id == OperatorReward.epoch_id)
        .where(OperatorReward.wallet == wallet)
        .order_by(RewardEpoch.epoch_date.desc())
    ).all()
    node_rows = session.execute(
        select(NodeReward, RewardEpoch.epoch_date)
        .join(RewardEpoch, RewardEpoch.id == NodeReward.epoch_id)
        .where(NodeReward.operator_wallet == wallet)
        .order_by(RewardEpoch.epoch_date.desc(), NodeReward.node_id)
    ).all()
    nodes_by_epoch: dict[date, list[dict]] = {}
    for row, epoch_date in node_rows:
        nodes_by_epoch.setdefault(epoch_date, []).append(_node_reason(row))
    out_epochs = []
    total = 0
    for op_row, epoch in epochs:
        total += op_row.amount
        out_epochs.append({
            "epoch": epoch.epoch_date.isoformat(),
            "epoch_status": epoch.status,
            "amount": str(op_row.amount),
            "pool_amount": str(epoch.pool_amount),
            "nodes": nodes_by_epoch.get(epoch.epoch_date, []),
        })
    # Epochs where the wallet's nodes worked but scored zero still explain themselves.
    seen = {e["epoch"] for e in out_epochs}
    for epoch_date, nodes in nodes_by_epoch.items():
        if epoch_date.isoformat() not in seen:
            out_epochs.append({"epoch": epoch_date.isoformat(), "epoch_status": None, "amount": "0",
                               "pool_amount": None, "nodes": nodes})
    out_epochs.sort(key=lambda e: e["epoch"], reverse=True)
    return {"wallet": wallet, "earned_total": str(total), "epochs": out_epochs}


def latest_published_epoch(session: Session) -> RewardEpoch | None:
    return session.scalar(
        select(RewardEpoch)
        .where(RewardEpoch.status == EpochStatus.PUBLISHED)
        .order_by(RewardEpoch.epoch_date.desc())
        .limit(1)
    )


class PublishedTrees:
    """Merkle trees of published roots, built once per (epoch, root) and kept (a small LRU).

    A claim needs the proof of one leaf, which needs the whole tree; building it reads every leaf
    of the epoch. Published roots never change, so one build serves every later request: a claim
    then reads only the caller's own rows. Thread-safe; one instance per API process.
    """

    def __init__(self, size: int = 4):
        self._size = size
        self._trees: OrderedDict[tuple[int, str], MerkleTree | None] = OrderedDict()
        self._lock = threading.Lock()

    def tree(self, session: Session, epoch: RewardEpoch) -> MerkleTree | None:
        if epoch.merkle_root is None:
            return None
        key = (epoch.id, epoch.merkle_root)
        with self._lock:
            if key in self._trees:
                self._trees.move_to_end(key)
                return self._trees[key]
        tree = tree_for_epoch(session, epoch)
        with self._lock:
            self._trees[key] = tree
            while len(self._trees) > self._size:
                self._trees.popitem(last=False)
        return tree


def wallet_earned_total(session: Session, wallet: str) -> int:
    """Everything the wallet earned over every computed epoch: an index range scan on its rows."""
    amounts = session.scalars(select(OperatorReward.amount).where(OperatorReward.wallet == wallet))
    return sum(int(a) for a in amounts)  # exact: amounts are integers of up to 78 digits


def wallet_claim(session: Session, wallet: str, *, distributor: str | None = None,
                 chain_id: int | None = None, trees: PublishedTrees | None = None) -> dict:
    """The wallet's claim against the latest root on-chain: amount, proof, call data.

    `cumulative_amount` is what the published root says the wallet has earned in total; the
    contract pays `cumulative_amount - claimed(wallet)`. `earned_total` also counts epochs whose
    root is not on-chain yet (`pending_publication`). Cost: the wallet's own reward rows plus,
    with `trees` warm, no leaf reads (without it the epoch's leaves are read on every call).
    """
    wallet = normalize_wallet(wallet)
    epoch = latest_published_epoch(session)
    earned_total = wallet_earned_total(session, wallet)
    doc: dict = {
        "wallet": wallet,
        "published_epoch": epoch.epoch_date.isoformat() if epoch else None,
        "merkle_root": epoch.merkle_root if epoch else None,
        "published_tx_hash": epoch.published_tx_hash if epoch else None,
        "cumulative_amount": "0",
        "proof": None,
        "claim": None,
        "earned_total": str(earned_total),
        "pending_publication": str(earned_total),
    }
    if epoch is None:
        return doc
    tree = trees.tree(session, epoch) if trees is not None else tree_for_epoch(session, epoch)
    try:
        cumulative, proof = tree.proof_for(wallet) if tree else (0, None)
    except ValueError:
        cumulative, proof = 0, None
    doc["cumulative_amount"] = str(cumulative)
    doc["pending_publication"] = str(max(0, earned_total - cumulative))
    doc["proof"] = proof
    if proof is not None:
        doc["claim"] = {
            "to": distributor,
            "chain_id": chain_id,
            "function": CLAIM_SIGNATURE,
            "args": {"account": wallet, "cumulative_amount": str(cumulative), "proof": proof},
            "data": claim_call_data(wallet, cumulative, proof),
        }
    return doc


SCORING_POLICY_TEXT = {
    "score": "max(0, points_per_proven_slot*proven_slots + points_per_valid_task*tasks_valid "
             "- penalty_per_invalid_task*tasks_invalid - penalty_per_error_task*tasks_error)",
    "proven_slot": "a 5-minute slot in which the node submitted a result judged valid (a challenge "
                   "answered correctly or a result agreeing with the quorum); heartbeats are not scored",
    "split": "amount = floor(pool*score/total_score); the units left over go one each to the largest "
             "remainders, ties to the smaller node id; shares sum to the pool exactly",
    "counted": "results judged within the epoch's window (window.starts_at <= judged_at < window.ends_at)",
}


def _window(epoch: RewardEpoch) -> dict:
    day_start, day_end = epoch_bounds(epoch.epoch_date)
    return {
        "starts_at": epoch.starts_at.isoformat(),
        "ends_at": epoch.ends_at.isoformat(),
        "closed_early": epoch.ends_at < day_end,
        # Activity after the previous epoch's early close is counted here, visibly.
        "carried_over_from": (epoch.starts_at.isoformat() if epoch.starts_at < day_start else None),
    }


def epoch_document(session: Session, epoch_date: date) -> dict | None:
    """The public record of one epoch: pool, scoring, every node's share and reason, and the
    cumulative leaves through the epoch — enough to rebuild the root and check it."""
    epoch = session.scalar(select(RewardEpoch).where(RewardEpoch.epoch_date == epoch_date))
    if epoch is None:
        return None
    nodes = session.scalars(
        select(NodeReward).where(NodeReward.epoch_id == epoch.id).order_by(NodeReward.node_id)
    ).all()
    shares = session.scalars(
        select(OperatorReward).where(OperatorReward.epoch_id == epoch.id).order_by(OperatorReward.wallet)
    ).all()
    return {
        "epoch": epoch.epoch_date.isoformat(),
        "starts_at": epoch.starts_at.isoformat(),
        "ends_at": epoch.ends_at.isoformat(),
        "status": epoch.status,
        "pool_amount": str(epoch.pool_amount),
        "distributed_amount": str(epoch.distributed_amount),
        "total_score": epoch.total_score,
        "scoring": epoch.scoring,
        "policy_version": epoch.policy_version,
        "policy": SCORING_POLICY_TEXT if epoch.policy_version == SCORING_POLICY_VERSION else None,
        "window": _window(epoch),
        "final": epoch.sealed_at is not None,
        "sealed_at": epoch.sealed_at.isoformat() if epoch.sealed_at else None,
        "computed_at": epoch.computed_at.isoformat(),
        "merkle_root": epoch.merkle_root,
        "total_cumulative": None if epoch.total_cumulative is None else str(epoch.total_cumulative),
        "published_tx_hash": epoch.published_tx_hash,
        "publish_error": epoch.publish_error,
        "leaf_encoding": LEAF_ENCODING,
        "shares": [{"wallet": s.wallet, "amount": str(s.amount), "nodes": s.node_count} for s in shares],
        "nodes": [{"operator_wallet": n.operator_wallet} | _node_reason(n) for n in nodes],
        "leaves": [{"wallet": w, "cumulative_amount": str(a)} for w, a in load_leaves(session, epoch.id)],
    }
