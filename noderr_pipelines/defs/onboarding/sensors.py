"""Onboarding sensors (read-only): new applications and recorded decisions.

The tables are the queues: "received" applications, decided applications not yet processed. Each
sensor requests one run per application with a deterministic run_key
(``screen:<id>:<status_version>``), keeping its cursor with the table-sensor ledger of
`noderr_pipelines.lib.table_sensor`: an application whose run failed for good is asked again
(under a new run key) instead of staying `received` forever. Due emails: `defs/outbox`.
"""


import dagster as dg

from noderr_core.onboarding.applications import (
    applications_awaiting_screening,
    decisions_awaiting_execution,
)
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.onboarding.jobs import carry_out_decision_job, screen_application_job
from noderr_pipelines.lib.table_sensor import plan_requests
from noderr_pipelines.resources import DatabaseResource

BATCH = 100


def _application_run_requests(context, pending: list[tuple[int, int]], prefix: str, op: str) -> dg.SensorResult:
    keys = {f"{prefix}:{app_id}:{version}": app_id for app_id, version in pending}
    plan = plan_requests(context.cursor, keys, now=utcnow())
    requests = [
        dg.RunRequest(run_key=due.run_key,
                      run_config={"ops": {op: {"config": {"application_id": keys[due.key]}}}},
                      tags={"application_id": str(keys[due.key])})
        for due in plan.due
    ]
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            f"no new work ({plan.waiting} already requested and in progress)" if keys else "nothing to do"),
            cursor=plan.cursor)
    return dg.SensorResult(run_requests=requests, cursor=plan.cursor)


@dg.sensor(job=screen_application_job, minimum_interval_seconds=5,
           default_status=dg.DefaultSensorStatus.RUNNING)
def application_screening_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    """One screening run per application in status received (run_key screen:<id>:<status_version>)."""
    with database.session() as session:
        pending = applications_awaiting_screening(session, limit=BATCH)
    return _application_run_requests(context, pending, "screen", "screen_application_op")


@dg.sensor(job=carry_out_decision_job, minimum_interval_seconds=5,
           default_status=dg.DefaultSensorStatus.RUNNING)
def application_decision_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    """One run per recorded decision not yet carried out (run_key decide:<id>:<status_version>)."""
    with database.session() as session:
        pending = decisions_awaiting_execution(session, limit=BATCH)
    return _application_run_requests(context, pending, "decide", "carry_out_decision_op")
