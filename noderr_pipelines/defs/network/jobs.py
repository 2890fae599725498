"""The node health job: carries out the health sensor's decision through noderr_core.network."""

import dagster as dg

from noderr_core.audit import Actor
from noderr_core.network import apply_node_health
from noderr_pipelines.defs.network.resources import NodeHealthPolicy
from noderr_pipelines.resources import DatabaseResource


class NodeHealthConfig(dg.Config):
    """Which nodes to take offline and which alerts to close, each if its condition still holds:
    None = every node stale / every alert closable when the run starts (the sensor's sweep)."""

    node_ids: list[str] | None = None
    alert_ids: list[int] | None = None


SUMMARY_LISTED = 20  # ids named in the run's output; the counts cover the rest


@dg.op
def apply_node_health_changes(
    context: dg.OpExecutionContext,
    config: NodeHealthConfig,
    database: DatabaseResource,
    node_health: NodeHealthPolicy,
) -> dg.Output[dict]:
    """Take stale nodes offline (alert + emails) and close alerts of recovered nodes, once each."""
    with database.session() as session:
        report = apply_node_health(
            session,
            node_ids=config.node_ids,
            alert_ids=config.alert_ids,
            offline_after_seconds=node_health.threshold_seconds(),
            settings=node_health.settings(),
            actor=Actor.pipeline(context.run_id, label="node_health_job"),
        )
    if report.held_back_reason:
        context.log.warning(report.held_back_reason)
    # One line per run, not per node: a 10,000-node event is one event in the run's log too.
    context.log.info(
        f"{len(report.marked_offline)} node(s) offline, {len(report.alerts_opened)} alert(s) opened, "
        f"{len(report.alerts_closed)} closed, {report.emails_queued} email(s) queued")
    summary = {
        "marked_offline": report.marked_offline[:SUMMARY_LISTED],
        "alerts_opened": report.alerts_opened[:SUMMARY_LISTED],
        "alerts_closed": report.alerts_closed[:SUMMARY_LISTED],
        "unchanged_nodes": report.unchanged_nodes[:SUMMARY_LISTED],
        "unchanged_alerts": report.unchanged_alerts[:SUMMARY_LISTED],
        "emails_queued": report.emails_queued,
        "held_back_reason": report.held_back_reason,
    }
    return dg.Output(
        summary,
        metadata={
            "nodes_marked_offline": len(report.marked_offline),
            "alerts_opened": len(report.alerts_opened),
            "alerts_closed": len(report.alerts_closed),
            "unchanged": len(report.unchanged_nodes) + len(report.unchanged_alerts),
            "emails_queued": report.emails_queued,
        },
    )


@dg.job(tags={"noderr/domain": "network"})
def node_health_job() -> None:
    """Node offline/recovery transitions with their alerts and emails (idempotent)."""
    apply_node_health_changes()
