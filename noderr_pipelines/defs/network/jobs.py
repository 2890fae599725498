"""The node health job: carries out the health sensor's decision through noderr_core.network."""

import dagster as dg

from noderr_core.audit import Actor
from noderr_core.network import apply_node_health
from noderr_pipelines.defs.network.resources import NodeHealthPolicy
from noderr_pipelines.resources import DatabaseResource


class NodeHealthConfig(dg.Config):
    """Nodes the sensor found stale and alerts it found closable (each re-checked by the job)."""

    node_ids: list[str] = []
    alert_ids: list[int] = []


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
    for node_id in report.marked_offline:
        context.log.info(f"node {node_id} is offline")
    for alert_id in report.alerts_closed:
        context.log.info(f"alert {alert_id} closed")
    summary = {
        "marked_offline": report.marked_offline,
        "alerts_opened": report.alerts_opened,
        "alerts_closed": report.alerts_closed,
        "unchanged_nodes": report.unchanged_nodes,
        "unchanged_alerts": report.unchanged_alerts,
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
