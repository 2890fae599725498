"""Onboarding sensors (read-only): new applications, recorded decisions, due emails.

The tables are the queues: "received" applications, decided applications not yet processed, due
outbox rows. Each sensor requests one run per unit of work with a deterministic run_key (Dagster
never launches two runs with one key). The cursor holds the run keys already requested that are
still pending, so a tick does not re-request them; it is not an id high-water mark, because ids
can commit out of order on PostgreSQL and a high-water mark would skip the late one.
"""


import hashlib
import json

import dagster as dg
from sqlalchemy import select

from noderr_core.tables import ApplicationStatus, OperatorApplication, OutboxKind
from noderr_core.outbox import due_ids
from noderr_pipelines.defs.onboarding.jobs import (
    carry_out_decision_job,
    relay_emails_job,
    screen_application_job,
)
from noderr_pipelines.resources import DatabaseResource

BATCH = 100


def _requested(cursor: str | None) -> set[str]:
    if not cursor:
        return set()
    try:
        return set(json.loads(cursor).get("requested", []))
    except (ValueError, AttributeError):
        return set()


def _application_run_requests(context, pending: list[tuple[int, int]], prefix: str) -> dg.SensorResult:
    keys = {f"{prefix}:{app_id}:{version}": app_id for app_id, version in pending}
    already = _requested(context.cursor)
    requests = [
        dg.RunRequest(run_key=key, run_config={"ops": {op: {"config": {"application_id": app_id}}
                                                        for op in _OPS[prefix]}},
                      tags={"application_id": str(app_id)})
        for key, app_id in keys.items() if key not in already
    ]
    # Keep only keys that are still pending: the cursor stays as small as the queue.
    cursor = json.dumps({"requested": sorted(keys)})
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            f"no new work ({len(keys)} already requested and in progress)" if keys else "nothing to do"),
            cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


_OPS = {"screen": ["screen_application_op"], "decide": ["carry_out_decision_op"]}


@dg.sensor(job=screen_application_job, minimum_interval_seconds=5,
           default_status=dg.DefaultSensorStatus.RUNNING)
def application_screening_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    """One screening run per application in status received (run_key screen:<id>:<status_version>)."""
    with database.session() as session:
        pending = session.execute(
            select(OperatorApplication.id, OperatorApplication.status_version)
            .where(OperatorApplication.status == ApplicationStatus.RECEIVED)
            .order_by(OperatorApplication.id).limit(BATCH)
        ).all()
    return _application_run_requests(context, [(r.id, r.status_version) for r in pending], "screen")


@dg.sensor(job=carry_out_decision_job, minimum_interval_seconds=5,
           default_status=dg.DefaultSensorStatus.RUNNING)
def application_decision_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    """One run per recorded decision not yet carried out (run_key decide:<id>:<status_version>)."""
    with database.session() as session:
        pending = session.execute(
            select(OperatorApplication.id, OperatorApplication.status_version)
            .where(OperatorApplication.status.in_([ApplicationStatus.APPROVED, ApplicationStatus.REJECTED]),
                   OperatorApplication.processed_at.is_(None))
            .order_by(OperatorApplication.id).limit(BATCH)
        ).all()
    return _application_run_requests(context, [(r.id, r.status_version) for r in pending], "decide")


@dg.sensor(job=relay_emails_job, minimum_interval_seconds=10,
           default_status=dg.DefaultSensorStatus.RUNNING)
def email_relay_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    """A relay run when emails are due; the run_key is a digest of the due rows' (id, attempts, lease).

    The same due set never launches two runs; a retry after a failure (attempts changed) or after a
    crashed relay (lease expired) is a new set, hence a new run.
    """
    with database.session() as session:
        due = due_ids(session, kind=OutboxKind.EMAIL)
    if not due:
        return dg.SensorResult(skip_reason=dg.SkipReason("no email is due"), cursor=context.cursor)
    digest = hashlib.sha256(json.dumps(due).encode()).hexdigest()[:20]
    if context.cursor == digest:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"{len(due)} due email(s) already handed to a relay run"),
                               cursor=digest)
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"email-relay:{digest}",
                                                       tags={"due_emails": str(len(due))})],
                           cursor=digest)
