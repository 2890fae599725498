"""Outbox machinery for every kind: the relay sensor factory and the relay op's reporting.

`outbox_relay_sensor(kind, job)` builds the read-only sensor that launches `job` when rows of
`kind` are due. Its candidates are ``<outbox id>#<attempts>``: a row retried after a failed
attempt is new work; a row whose relay run crashed before recording anything (lease expired, same
attempts) is asked again by the table-sensor ledger once its run had time to act.
"""

from __future__ import annotations

import dagster as dg

from noderr_core.outbox import RelayReport, due_ids
from noderr_core.tables import OutboxKind
from noderr_core.timeutil import utcnow
from noderr_pipelines.lib.table_sensor import plan_requests
from noderr_pipelines.resources import DatabaseResource


def outbox_relay_sensor(
    kind: OutboxKind,
    job: dg.JobDefinition,
    *,
    name: str,
    run_key_prefix: str,
    minimum_interval_seconds: int,
    description: str,
) -> dg.SensorDefinition:
    """A sensor that requests one relay run for the rows of `kind` due now (never writes)."""

    @dg.sensor(name=name, job=job, minimum_interval_seconds=minimum_interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING, description=description)
    def _sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
        with database.session() as session:
            due = due_ids(session, kind=kind)
        plan = plan_requests(context.cursor, (f"{msg_id}#{attempts}" for msg_id, attempts in due),
                             now=utcnow())
        if not plan.due:
            reason = (f"{plan.waiting} due {kind} row(s) already handed to a relay run"
                      if plan.waiting else f"no {kind} outbox row is due")
            if plan.cursor == context.cursor:
                return dg.SkipReason(reason)  # nothing changed, not even the cursor
            return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=plan.cursor)
        request = dg.RunRequest(run_key=plan.batch_run_key(run_key_prefix),
                                tags={f"noderr/due_{kind}_rows": str(plan.candidates)})
        return dg.SensorResult(run_requests=[request], cursor=plan.cursor)

    return _sensor


def report_relay(context: dg.OpExecutionContext, report: RelayReport) -> dict:
    """Log one line per claimed row, attach the counts as run metadata, return the summary."""
    for entry in report.messages:
        label = f"{report.kind} outbox {entry['id']}"
        if entry.get("action"):
            label += f" {entry['action']}"
        line = f"{label} ({entry['key']}): {entry['status']}"
        if entry.get("error"):
            line += f" — {entry['error']}"
        log = context.log.error if entry["status"] == "failed" else (
            context.log.warning if entry.get("error") else context.log.info)
        log(line)
    context.add_output_metadata(report.as_metadata())
    return {"sent": report.sent, "retrying": report.retrying, "failed": report.failed}
