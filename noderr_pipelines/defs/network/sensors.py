"""The node health sensor: finds stale nodes and recovered nodes' alerts; never writes.

Cursor: the candidates already requested, ``{"requested": {key: [first_requested_at, n]}}``, where a
key is ``offline:<node_id>:<last heartbeat>`` or ``close:<alert_id>``. It only ever holds the
current candidates (a handled node or alert drops out), so it stays as small as the incident.
A candidate still present `REREQUEST_AFTER` after its request (its run failed or was dropped) is
requested again with a new run key; otherwise Dagster's run_key dedup would ignore it forever.
"""


import hashlib
import json
from datetime import datetime, timedelta

import dagster as dg

from noderr_core.network import assess_control_plane, find_closable_alerts, find_stale_nodes
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.network.jobs import node_health_job
from noderr_pipelines.defs.network.resources import NodeHealthPolicy
from noderr_pipelines.resources import DatabaseResource

REREQUEST_AFTER = timedelta(minutes=10)
MAX_CANDIDATES_PER_TICK = 500  # bounds the run config; the rest follow on the next ticks


def _candidate_key_offline(node_id: str, last_heartbeat_at: datetime | None) -> str:
    return f"offline:{node_id}:{last_heartbeat_at.isoformat() if last_heartbeat_at else 'never'}"


def _load_cursor(raw: str | None) -> dict[str, list]:
    if not raw:
        return {}
    try:
        return dict(json.loads(raw).get("requested", {}))
    except (ValueError, AttributeError):
        return {}  # a cursor from an older format: start over, run keys still dedupe


def health_run_key(keys: list[str], attempts: dict[str, int]) -> str:
    """Deterministic: the same candidates at the same attempt give the same key."""
    material = "\n".join(f"{k}#{attempts[k]}" for k in sorted(keys))
    return "node-health:" + hashlib.sha256(material.encode()).hexdigest()[:24]


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

    previous = _load_cursor(context.cursor)
    requested: dict[str, list] = {}
    due: list[str] = []
    for key in candidates:
        if key in previous:
            first_at, attempts = previous[key]
            if now - datetime.fromisoformat(first_at) < REREQUEST_AFTER * attempts:
                requested[key] = [first_at, attempts]
                continue
            requested[key] = [first_at, attempts + 1]
        else:
            requested[key] = [now.isoformat(), 1]
        due.append(key)
    cursor = json.dumps({"requested": requested}, sort_keys=True)

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
        run_key=health_run_key(due, {k: requested[k][1] for k in due}),
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
