"""The payout invariants of an epoch, checked before its root may be queued for the chain.

Each check returns the list of violations (empty = holds), with wallets and amounts in the text so
the Dagster asset check and the refusal in rewards.tree say exactly what is wrong:

- `shares_sum_to_pool`: the node shares sum to the epoch's distributed amount, which is the pool
  (or 0 when nobody scored), never more; each wallet's row is the sum of its nodes' shares.
- `root_matches_leaves`: the stored leaves rebuild the stored root; they are exactly the wallets'
  cumulative amounts recomputed from the shares; the root's total is their sum, which equals the
  sum of the distributed amounts of the epochs it covers and never exceeds the sum of their pools.
- `cumulative_never_decreases`: no wallet's cumulative amount is lower than in the latest root
  already queued or published before this epoch, and neither is the total.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from noderr_core.rewards.merkle import build_tree
from noderr_core.rewards.tree import cumulative_amounts, get_epoch, load_leaves
from noderr_core.tables.rewards import NodeReward, OperatorReward, RewardEpoch

CHECKS = ("shares_sum_to_pool", "root_matches_leaves", "cumulative_never_decreases")


def shares_sum_to_pool(session: Session, epoch: RewardEpoch) -> list[str]:
    problems: list[str] = []
    node_rows = session.execute(
        select(NodeReward.operator_wallet, NodeReward.amount, NodeReward.score)
        .where(NodeReward.epoch_id == epoch.id)
    ).all()
    wallet_rows = {w: a for w, a in session.execute(
        select(OperatorReward.wallet, OperatorReward.amount).where(OperatorReward.epoch_id == epoch.id))}
    node_total = sum(int(a) for _, a, _ in node_rows)
    by_wallet: dict[str, int] = {}
    for wallet, amount, _ in node_rows:
        by_wallet[wallet] = by_wallet.get(wallet, 0) + int(amount)
    scored = any(int(score) > 0 for _, _, score in node_rows)
    expected = epoch.pool_amount if scored else 0
    if node_total != expected:
        problems.append(f"node shares sum to {node_total}, expected {expected} (pool {epoch.pool_amount})")
    if epoch.distributed_amount != node_total:
        problems.append(f"distributed_amount {epoch.distributed_amount} != node shares {node_total}")
    if sum(wallet_rows.values()) > epoch.pool_amount:
        problems.append(f"wallet shares sum to {sum(wallet_rows.values())}, more than the pool {epoch.pool_amount}")
    for wallet in sorted(set(by_wallet) | set(wallet_rows)):
        if by_wallet.get(wallet, 0) != wallet_rows.get(wallet, 0):
            problems.append(f"{wallet}: wallet share {wallet_rows.get(wallet, 0)} != its nodes' "
                            f"{by_wallet.get(wallet, 0)}")
    return problems


def root_matches_leaves(session: Session, epoch: RewardEpoch) -> list[str]:
    if epoch.tree_built_at is None:
        return ["the cumulative tree is not built"]
    problems: list[str] = []
    leaves = load_leaves(session, epoch.id)
    root = build_tree(leaves).root_hex if leaves else None
    if root != epoch.merkle_root:
        problems.append(f"leaves rebuild root {root}, stored root is {epoch.merkle_root}")
    total = sum(a for _, a in leaves)
    if total != (epoch.total_cumulative or 0):
        problems.append(f"leaves sum to {total}, stored total_cumulative is {epoch.total_cumulative}")
    expected = {w: a for w, a in cumulative_amounts(session, epoch.epoch_date).items() if a > 0}
    if dict(leaves) != expected:
        wrong = sorted(w for w in set(expected) | dict(leaves).keys()
                       if expected.get(w) != dict(leaves).get(w))
        problems.append(f"{len(wrong)} leaves differ from the cumulative shares, e.g. {wrong[0]}: "
                        f"leaf {dict(leaves).get(wrong[0])}, shares {expected.get(wrong[0])}")
    covered = session.execute(
        select(RewardEpoch.pool_amount, RewardEpoch.distributed_amount)
        .where(RewardEpoch.epoch_date <= epoch.epoch_date)
    ).all()
    pools = sum(int(p) for p, _ in covered)
    distributed = sum(int(d) for _, d in covered)
    if total != distributed:
        problems.append(f"root total {total} != distributed amounts of the epochs it covers {distributed}")
    if total > pools:
        problems.append(f"root total {total} exceeds the pools of the epochs it covers {pools}")
    return problems


def previous_root_epoch(session: Session, epoch: RewardEpoch) -> RewardEpoch | None:
    """The latest epoch before this one whose root was queued or published."""
    return session.scalar(
        select(RewardEpoch)
        .where(RewardEpoch.epoch_date < epoch.epoch_date, RewardEpoch.publish_outbox_id.is_not(None),
               RewardEpoch.merkle_root.is_not(None))
        .order_by(RewardEpoch.epoch_date.desc())
        .limit(1)
    )


def cumulative_never_decreases(session: Session, epoch: RewardEpoch) -> list[str]:
    previous = previous_root_epoch(session, epoch)
    if previous is None:
        return []
    now = dict(load_leaves(session, epoch.id))
    problems = [
        f"{wallet}: cumulative {now.get(wallet, 0)} < {amount} in the root of {previous.epoch_date}"
        for wallet, amount in load_leaves(session, previous.id)
        if now.get(wallet, 0) < amount
    ]
    if (epoch.total_cumulative or 0) < (previous.total_cumulative or 0):
        problems.append(f"total {epoch.total_cumulative} < {previous.total_cumulative} in the root of "
                        f"{previous.epoch_date}")
    return problems


_CHECKS = {
    "shares_sum_to_pool": shares_sum_to_pool,
    "root_matches_leaves": root_matches_leaves,
    "cumulative_never_decreases": cumulative_never_decreases,
}


def check_epoch(session: Session, epoch_date: date, names: tuple[str, ...] = CHECKS) -> dict[str, list[str]]:
    """Violations per check (empty list = the invariant holds) for the named checks."""
    epoch = get_epoch(session, epoch_date)
    return {name: _CHECKS[name](session, epoch) for name in names}
