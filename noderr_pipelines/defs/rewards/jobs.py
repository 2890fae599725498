"""Reward jobs: the daily epoch and its early close (partitioned asset jobs) and challenge tasks."""


import dagster as dg

from noderr_core.tasks.challenges import create_challenges, s3_model_loader
from noderr_pipelines.defs.rewards.assets import reward_epoch, reward_merkle_root, reward_root_publication
from noderr_pipelines.defs.rewards.partitions import reward_epoch_partitions
from noderr_pipelines.lib.model_resources import ModelBucketResource
from noderr_pipelines.resources import DatabaseResource

REWARD_ASSETS = [reward_epoch, reward_merkle_root, reward_root_publication]

reward_epoch_job = dg.define_asset_job(
    "reward_epoch_job",
    selection=REWARD_ASSETS,
    partitions_def=reward_epoch_partitions,
    description="Compute a day's rewards, build the cumulative tree, check it, queue its root.",
)

close_epoch_job = dg.define_asset_job(
    "close_epoch_job",
    selection=REWARD_ASSETS,
    partitions_def=reward_epoch_partitions,
    description="Close one epoch now (pick its partition): backfill a day, or close today early on a "
    "test network with run config ops.reward_epoch.config.allow_open_day = true.",
    config={"ops": {"reward_epoch": {"config": {"allow_open_day": True}}}},
)


@dg.op(description="Create one challenge task (known answer by onnxruntime) per online node without one.")
def create_challenge_tasks(context: dg.OpExecutionContext, database: DatabaseResource,
                           model_bucket: ModelBucketResource) -> dict:
    loader = s3_model_loader(model_bucket.get_client())
    with database.session() as session:
        report = create_challenges(session, load_model=loader)
    for model, why in report.skipped.items():
        context.log.warning(f"no known answer for {model}: {why}")
    context.add_output_metadata(report.as_metadata())
    return report.as_metadata()


@dg.job(description="Challenge tasks with known answers for every online node (every 5-minute slot).")
def challenge_job():
    create_challenge_tasks()
