"""Daily reward assets: the epoch's shares, its cumulative Merkle root, and the root's publication.

All three are partitioned by UTC day (rewards.epochs explains the windows and why a sealed epoch
is final). Blocking asset checks gate publication: `reward_root_publication` (which queues the
`publish_root` chain outbox row) runs only when the shares sum to the pool, the root matches its
leaves and the cumulative shares, and no wallet's cumulative amount goes down
(noderr_core/rewards/invariants.py). Re-materializing a partition is safe: an unsealed epoch is
rewritten (delete-then-insert), a sealed one reports that it is final and changes nothing.
"""

from datetime import date

import dagster as dg
from pydantic import Field

from noderr_core.rewards.epochs import EpochNotOpen, compute_epoch
from noderr_core.rewards.invariants import check_epoch
from noderr_core.rewards.publication import queue_root_publication
from noderr_core.rewards.tree import build_epoch_tree, get_epoch
from noderr_core.settings import get_settings
from noderr_pipelines.defs.rewards.partitions import reward_epoch_partitions
from noderr_pipelines.resources import DatabaseResource

SHARES_CHECK = "shares_sum_to_pool"
ROOT_CHECK = "root_matches_leaves"
CUMULATIVE_CHECK = "cumulative_never_decreases"


class RewardEpochConfig(dg.Config):
    allow_open_day: bool = Field(
        default=False,
        description="close today's epoch early on the proven service so far (test networks, demos); "
        "once its root is queued it is final and the rest of the day goes to the next epoch",
    )


def _check_results(database: DatabaseResource, epoch_date: date, asset: str, names: tuple[str, ...]):
    with database.session() as session:
        problems = check_epoch(session, epoch_date, names)
    return [
        dg.AssetCheckResult(
            asset_key=asset, check_name=name, passed=not problems[name],
            severity=dg.AssetCheckSeverity.ERROR,
            description="holds" if not problems[name] else "; ".join(problems[name])[:2000],
            metadata={"violations": len(problems[name]), "epoch": epoch_date.isoformat()},
        )
        for name in names
    ]


@dg.asset(
    partitions_def=reward_epoch_partitions,
    group_name="rewards",
    kinds={"sql"},
    check_specs=[dg.AssetCheckSpec(SHARES_CHECK, asset="reward_epoch", blocking=True,
                                   description="node and wallet shares sum exactly to the pool")],
    description="Per-node proven slots, judged results and score (policy in the metadata), and the "
    "epoch pool split by largest remainder, per node and per operator wallet.",
)
def reward_epoch(context: dg.AssetExecutionContext, config: RewardEpochConfig,
                 database: DatabaseResource) -> dg.MaterializeResult:
    epoch_date = date.fromisoformat(context.partition_key)
    pool = get_settings().reward_pool_per_epoch
    with database.session() as session:
        try:
            summary = compute_epoch(session, epoch_date, pool=pool, allow_open_day=config.allow_open_day)
        except EpochNotOpen as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
    for node_id, why in summary.skipped_nodes.items():
        context.log.warning(f"node {node_id} earns nothing this epoch: {why}")
    if summary.note:
        context.log.info(f"epoch {epoch_date}: {summary.note}")
    return dg.MaterializeResult(
        metadata=summary.as_metadata(),
        check_results=_check_results(database, epoch_date, "reward_epoch", (SHARES_CHECK,)),
    )


@dg.asset(
    partitions_def=reward_epoch_partitions,
    group_name="rewards",
    deps=[reward_epoch],
    kinds={"sql"},
    check_specs=[
        dg.AssetCheckSpec(ROOT_CHECK, asset="reward_merkle_root", blocking=True,
                          description="the leaves rebuild the root and equal the cumulative shares; "
                          "the total equals the pools distributed, never more"),
        dg.AssetCheckSpec(CUMULATIVE_CHECK, asset="reward_merkle_root", blocking=True,
                          description="no wallet's cumulative amount is below the last queued root"),
        dg.AssetCheckSpec(SHARES_CHECK, asset="reward_merkle_root", blocking=True,
                          description="the shares the root is built from still sum to the pool"),
    ],
    description="Cumulative Merkle tree (wallet, total earned through the epoch) and its root.",
)
def reward_merkle_root(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    epoch_date = date.fromisoformat(context.partition_key)
    with database.session() as session:
        tree = build_epoch_tree(session, epoch_date)
    return dg.MaterializeResult(
        metadata=tree.as_metadata(),
        check_results=_check_results(database, epoch_date, "reward_merkle_root",
                                     (ROOT_CHECK, CUMULATIVE_CHECK, SHARES_CHECK)),
    )


@dg.asset(
    partitions_def=reward_epoch_partitions,
    group_name="rewards",
    deps=[reward_merkle_root],
    kinds={"sql"},
    description="The epoch's root queued for the chain through the outbox (once per epoch and root); "
    "queueing seals every epoch the root covers.",
)
def reward_root_publication(context: dg.AssetExecutionContext, database: DatabaseResource) -> dg.MaterializeResult:
    epoch_date = date.fromisoformat(context.partition_key)
    with database.session() as session:
        decision = queue_root_publication(session, epoch_date)
        epoch = get_epoch(session, epoch_date)
        sealed = epoch.sealed_at is not None
    context.log.info(f"epoch {epoch_date}: {decision.reason}")
    return dg.MaterializeResult(metadata=decision.as_metadata() | {"sealed": sealed})
