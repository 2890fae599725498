"""The node health sensor: finds stale nodes and recovered nodes' alerts; never writes.

Candidates are ``offline:<node_id>:<last heartbeat>`` and ``close:<alert_id>``; the cursor is the
table-sensor ledger of `noderr_pipelines.lib.table_sensor` (only the current candidates, each asked
again if its run did not act). One run carries every due candidate, keyed by a digest of them.
"""


from datetime import datetime

import dagster as dg

from noderr_core.network import assess_control_plane, find_closable_alerts, find_stale_nodes
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.network.jobs import node_health_job
from noderr_pipelines.defs.network.resources import NodeHealthPolicy
from noderr_pipelines.lib.table_sensor import plan_requests
from noderr_pipelines.resources import DatabaseResource

MAX_CANDIDATES_PER_TICK = 500  # bounds the run config; the rest follow on the next ticks


def _candidate_key_offline(node_id: str, last_heartbeat_at: datetime | None) -> str:
    return f"offline:{node_id}:{last_heartbeat_at.isoformat() if last_heartbeat_at else 'never'}"


@dg.sensor(
    job=node_health_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Nodes silent past NODERR_HEARTBEAT_OFFLINE_AFTER_SECONDS go offline (alert + "
    "emails); a heartbeat closes the alert.",
)
def node_health_sensor(
    context: dg.SensorEvaluationContext,
    database: DatabaseResource,
    node_health: NodeHealthPolicy,
) -> dg.SensorResult:
    now = utcnow()
    threshold = node_health.threshold_seconds()
    with database.session() as session:
        stale = find_stale_nodes(
            session, offline_after_seconds=threshold, now=now, limit=MAX_CANDIDATES_PER_TICK
        )
        closable = find_closable_alerts(session, limit=MAX_CANDIDATES_PER_TICK)
        # A control plane that processed no heartbeats (API down, cut off) must not blame every
        # node: offline candidates are held back during the outage and one threshold after it.
        health = assess_control_plane(
            session, offline_after_seconds=threshold, now=now,
            outage_after_seconds=node_health.settings().control_plane_outage_after_seconds)
        session.rollback()  # read-only
    if health.holding_back:
        context.log.warning(health.reason)
        stale = []

    candidates: dict[str, tuple[str, str | int]] = {}
    for node in stale:
        candidates[_candidate_key_offline(node.node_id, node.last_heartbeat_at)] = ("node", node.node_id)
    for alert in closable:
        candidates[f"close:{alert.alert_id}"] = ("alert", alert.alert_id)

    plan = plan_requests(context.cursor, candidates, now=now)
    due = [c.key for c in plan.due]
    cursor = plan.cursor

    if not due:
        reason = (
            f"{len(candidates)} candidate(s) already requested, waiting for their run"
            if candidates
            else health.reason if health.holding_back
            else f"all online nodes reported within {threshold}s and no alert is closable"
        )
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=cursor)

    node_ids = sorted({str(candidates[k][1]) for k in due if candidates[k][0] == "node"})
    alert_ids = sorted({int(candidates[k][1]) for k in due if candidates[k][0] == "alert"})
    run_request = dg.RunRequest(
        run_key=plan.batch_run_key("node-health"),
        run_config={
            "ops": {
                "apply_node_health_changes": {
                    "config": {"node_ids": node_ids, "alert_ids": alert_ids}
                }
            }
        },
        tags={"noderr/stale_nodes": str(len(node_ids)), "noderr/closable_alerts": str(len(alert_ids))},
    )
    return dg.SensorResult(run_requests=[run_request], cursor=cursor)
