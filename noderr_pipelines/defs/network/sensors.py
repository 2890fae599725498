"""The node health sensor: notices stale nodes and recovered nodes' alerts; never writes.

It counts instead of listing (`health_backlog`: two aggregate reads whatever the fleet size) and
requests one run that sweeps everything due: an event of 10,000 silent nodes is one run, hence one
digest per person, not one run per 500 nodes. Candidates are ``offline:<count>:<oldest>:<newest>``
and ``close:<count>:<first alert>:<last alert>``: new work changes them, so it gets a new run key;
the cursor is the table-sensor ledger of `noderr_pipelines.lib.table_sensor` (a candidate still
present after its run is asked again, a handled one leaves).
"""

import dagster as dg

from noderr_core.network import assess_control_plane, health_backlog
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.network.jobs import node_health_job
from noderr_pipelines.defs.network.resources import NodeHealthPolicy
from noderr_pipelines.lib.table_sensor import plan_requests
from noderr_pipelines.resources import DatabaseResource


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
        backlog = health_backlog(session, offline_after_seconds=threshold, now=now)
        # A control plane that processed no heartbeats (API down, cut off) must not blame every
        # node: offline candidates are held back during the outage and one threshold after it.
        health = assess_control_plane(
            session, offline_after_seconds=threshold, now=now,
            outage_after_seconds=node_health.settings().control_plane_outage_after_seconds)
        session.rollback()  # read-only
    if health.holding_back:
        context.log.warning(health.reason)
    candidates = [k for k in backlog.candidate_keys()
                  if not (health.holding_back and k.startswith("offline:"))]

    plan = plan_requests(context.cursor, candidates, now=now)
    if not plan.due:
        reason = (
            f"{len(candidates)} candidate(s) already requested, waiting for their run"
            if candidates
            else health.reason if health.holding_back
            else f"all online nodes reported within {threshold}s and no alert is closable"
        )
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=plan.cursor)

    offline = any(c.key.startswith("offline:") for c in plan.due)
    close = any(c.key.startswith("close:") for c in plan.due)
    run_request = dg.RunRequest(
        run_key=plan.batch_run_key("node-health"),
        # None = every node stale / every alert closable when the run starts; [] = none.
        run_config={"ops": {"apply_node_health_changes": {"config": {
            "node_ids": None if offline else [], "alert_ids": None if close else []}}}},
        tags={"noderr/stale_nodes": str(backlog.stale_nodes if offline else 0),
              "noderr/closable_alerts": str(backlog.closable_alerts if close else 0)},
    )
    return dg.SensorResult(run_requests=[run_request], cursor=plan.cursor)
