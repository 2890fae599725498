"""Staking jobs: the stake observer (chain -> node_stakes) and the slashing decisions."""

import dagster as dg

from noderr_core.audit import Actor
from noderr_core.slashing.cases import apply_slashing_decisions
from noderr_core.staking.observer import sync_stakes
from noderr_pipelines.resources import ChainResource
from noderr_pipelines.defs.staking.resources import SlashingPolicyResource
from noderr_pipelines.resources import DatabaseResource


@dg.op(retry_policy=dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL),
       description="Apply Stake events up to the chain head to node_stakes (the bonding gate's cache).")
def sync_node_stakes(context: dg.OpExecutionContext, database: DatabaseResource, chain: ChainResource) -> dict:
    client = chain.client()
    totals = {"ranges": 0, "events": 0, "nodes_updated": 0}
    # A run catches up completely (ranges of at most 5,000 blocks); a later tick continues.
    for _ in range(20):
        report = sync_stakes(database.get_engine(), client)
        if report is None:
            break
        context.log.info(f"blocks {report.from_block}..{report.to_block}: {report.events} event(s), "
                         f"nodes {', '.join(report.nodes_updated) or 'none'}")
        totals["ranges"] += 1
        totals["events"] += report.events
        totals["nodes_updated"] += len(report.nodes_updated)
    context.add_output_metadata(totals)
    return totals


@dg.job(tags={"noderr/domain": "staking"})
def stake_sync_job() -> None:
    """Mirror the Stake contract's bonds in node_stakes (idempotent: state as of each range's end)."""
    sync_node_stakes()


class SlashingDecisionsConfig(dg.Config):
    """Candidates from the slashing sensor (each re-checked by the job)."""

    node_ids: list[str] = []  # nodes whose evidence meets the threshold: open a case
    case_ids: list[int] = []  # open cases whose challenge window ended: queue the slash


@dg.op(retry_policy=dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL))
def apply_slashing(context: dg.OpExecutionContext, config: SlashingDecisionsConfig,
                   database: DatabaseResource, slashing_policy: SlashingPolicyResource) -> dict:
    """Open slashing cases (evidence + operator e-mail) and queue due slashes in the chain outbox."""
    with database.session() as session:
        report = apply_slashing_decisions(
            session, node_ids=config.node_ids, case_ids=config.case_ids,
            settings=slashing_policy.settings(), actor=Actor.pipeline(context.run_id, label="slashing_job"),
        )
    for case_id in report.opened:
        context.log.info(f"slashing case {case_id} opened")
    for case_id in report.slashes_queued:
        context.log.info(f"slashing case {case_id}: slash queued in the chain outbox")
    context.add_output_metadata(report.as_metadata())
    return {"opened": report.opened, "slashes_queued": report.slashes_queued,
            "no_longer_proven": report.no_longer_proven, "unchanged_cases": report.unchanged_cases}


@dg.job(tags={"noderr/domain": "staking"})
def slashing_job() -> None:
    """Slashing cases: open with evidence, and slash after the challenge window (idempotent)."""
    apply_slashing()
