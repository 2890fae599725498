"""Staking sensors (read-only): the stake observer trigger and the slashing monitor.

Both keep in their cursor the run keys they requested, with the time and attempt:
``{"requested": {key: [first_requested_at, attempt]}}``, only for candidates still present. A
candidate still present `REREQUEST_AFTER` x attempt later (its run failed or was dropped) is
requested again under ``key#attempt``; otherwise Dagster's run_key dedup would ignore it forever.
"""

import json
from datetime import datetime, timedelta

import dagster as dg

from noderr_core.chain.addresses import ChainNotDeployed
from noderr_core.chain.client import ChainError
from noderr_core.slashing.cases import due_case_ids
from noderr_core.slashing.evidence import SlashingPolicy, find_candidate_nodes, gather_evidence
from noderr_core.staking.observer import pending_range
from noderr_core.timeutil import utcnow
from noderr_pipelines.resources import ChainResource
from noderr_pipelines.defs.staking.jobs import slashing_job, stake_sync_job
from noderr_pipelines.defs.staking.resources import SlashingPolicyResource
from noderr_pipelines.resources import DatabaseResource

REREQUEST_AFTER = timedelta(minutes=10)


def _requested(raw: str | None) -> dict[str, list]:
    if not raw:
        return {}
    try:
        return dict(json.loads(raw).get("requested", {}))
    except (ValueError, AttributeError):
        return {}


def due_keys(previous: dict[str, list], keys: list[str], now: datetime) -> tuple[dict[str, list], dict[str, str]]:
    """(new cursor map, {key: run_key}) for the keys to request on this tick."""
    requested: dict[str, list] = {}
    due: dict[str, str] = {}
    for key in keys:
        if key in previous:
            first_at, attempt = previous[key]
            if now - datetime.fromisoformat(first_at) < REREQUEST_AFTER * attempt:
                requested[key] = [first_at, attempt]
                continue
            requested[key] = [first_at, attempt + 1]
        else:
            requested[key] = [now.isoformat(), 1]
        attempt = requested[key][1]
        due[key] = key if attempt == 1 else f"{key}#{attempt}"
    return requested, due


def _cursor(requested: dict[str, list]) -> str:
    return json.dumps({"requested": requested}, sort_keys=True)


@dg.sensor(job=stake_sync_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           description="New blocks on the Stake contract → stake_sync_job (node_stakes, the bonding gate).")
def stake_observer_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource,
                          chain: ChainResource) -> dg.SensorResult | dg.SkipReason:
    try:
        client = chain.client()
        with database.session() as session:
            span = pending_range(session, client)
            session.rollback()
    except (ChainNotDeployed, ChainError) as exc:
        return dg.SkipReason(f"no Stake contract to observe: {exc}")
    except Exception as exc:  # the RPC is down: nothing to do until it answers
        return dg.SkipReason(f"chain RPC unavailable: {exc}")
    if span is None:
        return dg.SkipReason("node_stakes is up to date with the chain head")
    key = f"stake-sync:{client.addresses.stake}:{span[0]}"
    requested, due = due_keys(_requested(context.cursor), [key], utcnow())
    if not due:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"a sync from block {span[0]} is already requested"),
                               cursor=_cursor(requested))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=due[key], tags={"noderr/from_block": str(span[0]),
                                                            "noderr/to_block": str(span[1])})],
        cursor=_cursor(requested),
    )


@dg.sensor(job=slashing_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Proven invalid results beyond the threshold → slashing case; challenge window "
           "over → slash through the chain outbox (docs/staking.md).")
def slashing_monitor_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource,
                            slashing_policy: SlashingPolicyResource) -> dg.SensorResult:
    now = utcnow()
    policy = SlashingPolicy.from_settings(slashing_policy.settings())
    candidates: dict[str, tuple[str, str | int]] = {}
    with database.session() as session:
        for node_id in find_candidate_nodes(session, policy, now):
            evidence = gather_evidence(session, node_id, policy, now)
            if evidence is not None:
                candidates[f"slashing:open:{node_id}:{evidence.key[:16]}"] = ("node", node_id)
        for case_id in due_case_ids(session, now):
            candidates[f"slashing:slash:{case_id}"] = ("case", case_id)
        session.rollback()  # read-only
    requested, due = due_keys(_requested(context.cursor), sorted(candidates), now)
    if not due:
        reason = (f"{len(candidates)} candidate(s) already requested, waiting for their run" if candidates
                  else f"no node has {policy.min_invalid}+ proven invalid results among its last "
                  f"{policy.recent_results} judged, and no challenge window has ended")
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=_cursor(requested))
    run_requests = []
    for key, run_key in due.items():
        kind, subject = candidates[key]
        config = {"node_ids": [subject], "case_ids": []} if kind == "node" else {"node_ids": [], "case_ids": [subject]}
        run_requests.append(dg.RunRequest(
            run_key=run_key, run_config={"ops": {"apply_slashing": {"config": config}}},
            tags={"noderr/slashing": kind, "noderr/subject": str(subject)},
        ))
    return dg.SensorResult(run_requests=run_requests, cursor=_cursor(requested))
