"""Reward jobs: the daily epoch and its early close (partitioned asset jobs), challenge tasks,
and the chain outbox relay."""


import dagster as dg

from noderr_core.chain.relay import relay_due_chain_messages
from noderr_core.tasks.challenges import create_challenges, s3_model_loader
from noderr_pipelines.defs.models.resources import ModelBucketResource
from noderr_pipelines.defs.rewards.assets import reward_epoch, reward_merkle_root, reward_root_publication
from noderr_pipelines.defs.rewards.partitions import reward_epoch_partitions
from noderr_pipelines.defs.rewards.resources import ChainResource
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


@dg.op(description="Send due chain outbox rows (register/deregister nodes, publish roots).")
def relay_chain_outbox(context: dg.OpExecutionContext, database: DatabaseResource, chain: ChainResource) -> dict:
    settings = chain.resolved_settings()
    try:
        client = chain.client()
    except Exception as exc:  # e.g. no addresses file: rows stay queued and are retried
        context.log.warning(f"chain client unavailable: {exc}")
        client = None
    report = relay_due_chain_messages(database.get_engine(), settings, client=client)
    for entry in report.messages:
        line = f"outbox {entry['id']} {entry['action']} ({entry['key']}): {entry['status']}"
        if entry.get("error"):
            line += f" — {entry['error']}"
        (context.log.error if entry["status"] == "failed" else context.log.info)(line)
    context.add_output_metadata({k: v for k, v in report.as_dict().items() if k != "messages"})
    if report.failed:
        failed = [e for e in report.messages if e["status"] == "failed"]
        raise dg.Failure(
            description=f"{report.failed} chain transaction(s) failed permanently: "
            + "; ".join(f"{e['key']}: {e['error']}" for e in failed),
            metadata={"failed": report.failed, "sent": report.mined + report.already_done},
        )
    return report.as_dict()


@dg.job(description="Relay the chain outbox once (launched by chain_outbox_sensor).")
def chain_relay_job():
    relay_chain_outbox()


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
