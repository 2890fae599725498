"""Reward jobs: the daily epoch (partitioned) and closing one epoch by date."""


import dagster as dg
from pydantic import Field

from noderr_pipelines.defs.rewards.assets import reward_epoch, reward_merkle_root
from noderr_pipelines.resources import DatabaseResource

reward_epoch_job = dg.define_asset_job(
    "reward_epoch_job",
    selection=[reward_epoch, reward_merkle_root],
    description="Compute a day's rewards, build the cumulative tree, queue its root for the chain.",
)


class CloseEpochConfig(dg.Config):
    epoch_date: str = Field(description="UTC day, YYYY-MM-DD")
    allow_open_day: bool = Field(
        default=False,
        description="close today's epoch early on the activity so far (test networks, demos); "
        "the daily schedule recomputes it after midnight",
    )


@dg.op(description="Compute one epoch's rewards and cumulative root, and queue the root for the chain.")
def close_epoch_op(context: dg.OpExecutionContext, config: CloseEpochConfig,
                   database: DatabaseResource) -> dict:
    from datetime import date

    from noderr_core.rewards.epochs import compute_epoch
    from noderr_core.rewards.tree import build_epoch_tree, queue_root_publication
    from noderr_core.settings import get_settings

    try:
        epoch_date = date.fromisoformat(config.epoch_date)
    except ValueError as exc:
        raise dg.Failure(f"epoch_date {config.epoch_date!r} is not YYYY-MM-DD", allow_retries=False) from exc
    with database.session() as session:
        try:
            summary = compute_epoch(session, epoch_date, pool=get_settings().reward_pool_per_epoch,
                                    allow_open_day=config.allow_open_day)
        except ValueError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        tree = build_epoch_tree(session, epoch_date)
        decision = queue_root_publication(session, epoch_date)
    context.log.info(f"epoch {epoch_date}: {decision.reason}")
    metadata = summary.as_metadata() | tree.as_metadata() | {"publish_reason": decision.reason}
    context.add_output_metadata(metadata)
    return {"epoch_date": epoch_date.isoformat(), "publish_queued": decision.queued}


@dg.job(description="Close one epoch by date (backfill a day, or close today early on a test network).")
def close_epoch_job():
    close_epoch_op()
