"""Watches for undecided tasks past their deadline and asks the overdue-task job to fail them.

Read-only. The candidate is the latest overdue deadline (``tasks-overdue:<deadline>``), so one
deadline launches one run; the cursor is the table-sensor ledger, so if that run failed and the
tasks are still overdue, the sensor asks again instead of waiting for a later deadline.
"""

import dagster as dg

from noderr_core.tasks.leasing import overdue_task_summary
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.tasks.jobs import overdue_tasks_job
from noderr_pipelines.lib.table_sensor import plan_requests
from noderr_pipelines.resources import DatabaseResource


@dg.sensor(job=overdue_tasks_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def overdue_tasks_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    now = utcnow()
    with database.session() as session:
        count, latest = overdue_task_summary(session, now)
    if not count:
        context.update_cursor(plan_requests(context.cursor, [], now=now).cursor)
        return dg.SkipReason("no undecided task is past its deadline")
    plan = plan_requests(context.cursor, [f"tasks-overdue:{latest.isoformat()}"], now=now)
    context.update_cursor(plan.cursor)
    if not plan.due:
        return dg.SkipReason(f"{count} overdue task(s) already handed to a run (deadline ≤ {latest.isoformat()})")
    return dg.RunRequest(run_key=plan.due[0].run_key, tags={"overdue_tasks": str(count)})
