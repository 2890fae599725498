"""Daily reward assets: the epoch's shares (SQL aggregation) and its cumulative Merkle root.

Both are partitioned by UTC day and rewrite their partition (delete-then-insert by epoch), so
backfills and retries are safe. The root asset enqueues the `publish_root` chain outbox row keyed
by epoch + root: a recomputation with the same inputs sends no second transaction.
"""


from datetime import date

import dagster as dg

from noderr_core.rewards.epochs import compute_epoch
from noderr_core.rewards.tree import build_epoch_tree, queue_root_publication
from noderr_core.settings import get_settings
from noderr_pipelines.defs.rewards.partitions import reward_epoch_partitions
from noderr_pipelines.resources import DatabaseResource


@dg.asset(
    partitions_def=reward_epoch_partitions,
    group_name="rewards",
    kinds={"sql"},
    description="Per-node scores (uptime slots, validated tasks, penalties) and the epoch pool split "
    "by largest remainder, per node and per operator wallet.",
)
def reward_epoch(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    epoch_date = date.fromisoformat(context.partition_key)
    pool = get_settings().reward_pool_per_epoch
    with database.session() as session:
        summary = compute_epoch(session, epoch_date, pool=pool)
    for node_id, why in summary.skipped_nodes.items():
        context.log.warning(f"node {node_id} earns nothing this epoch: {why}")
    return dg.MaterializeResult(metadata=summary.as_metadata())


@dg.asset(
    partitions_def=reward_epoch_partitions,
    group_name="rewards",
    deps=[reward_epoch],
    kinds={"sql"},
    description="Cumulative Merkle tree (wallet, total earned through the epoch) and its root, queued "
    "for publication on-chain through the chain outbox.",
)
def reward_merkle_root(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    epoch_date = date.fromisoformat(context.partition_key)
    with database.session() as session:
        tree = build_epoch_tree(session, epoch_date)
        decision = queue_root_publication(session, epoch_date)
    context.log.info(f"epoch {epoch_date}: {decision.reason}")
    return dg.MaterializeResult(metadata=tree.as_metadata() | {
        "publish_queued": decision.queued,
        "publish_status": str(decision.status),
        "publish_reason": decision.reason,
    })
