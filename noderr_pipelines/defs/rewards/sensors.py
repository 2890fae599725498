"""The chain outbox sensor: launches the relay when chain rows are due; never writes.

The run key is derived from the due rows and their attempt counts, so one state of the queue
launches one run; a retried row (its attempts grew) gets a new key. The cursor keeps the last key.
"""


import hashlib

import dagster as dg

from noderr_core.outbox import due_ids
from noderr_pipelines.defs.rewards.jobs import chain_relay_job
from noderr_pipelines.resources import DatabaseResource


def chain_run_key(due: list[tuple[int, int]]) -> str:
    material = ",".join(f"{msg_id}#{attempts}" for msg_id, attempts in sorted(due))
    return "chain-relay:" + hashlib.sha256(material.encode()).hexdigest()[:24]


@dg.sensor(
    job=chain_relay_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Due chain outbox rows (node registrations, reward roots) → chain_relay_job.",
)
def chain_outbox_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    with database.session() as session:
        due = due_ids(session, kind="chain")
    if not due:
        return dg.SkipReason("no chain outbox rows are due")
    run_key = chain_run_key(due)
    if run_key == context.cursor:
        return dg.SkipReason(f"a relay run was already requested for these {len(due)} row(s)")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=run_key, tags={"noderr/chain_rows": str(len(due))})],
        cursor=run_key,
    )
