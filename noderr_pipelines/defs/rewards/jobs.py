"""Reward jobs: the daily epoch (partitioned) and the chain outbox relay."""


import dagster as dg

from noderr_core.chain.relay import relay_due_chain_messages
from noderr_pipelines.defs.rewards.assets import reward_epoch, reward_merkle_root
from noderr_pipelines.defs.rewards.resources import ChainResource
from noderr_pipelines.resources import DatabaseResource

reward_epoch_job = dg.define_asset_job(
    "reward_epoch_job",
    selection=[reward_epoch, reward_merkle_root],
    description="Compute a day's rewards, build the cumulative tree, queue its root for the chain.",
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
