"""Watches for undecided tasks past their deadline and asks the overdue-task job to fail them.

Read-only: the cursor is the latest deadline already handed to a run, and the run key is derived
from it, so one overdue deadline never launches two runs.
"""

from datetime import datetime

import dagster as dg
from sqlalchemy import func, select

from noderr_core.tables.tasks import Task
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.tasks.jobs import overdue_tasks_job
from noderr_pipelines.resources import DatabaseResource


@dg.sensor(job=overdue_tasks_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def overdue_tasks_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource):
    now = utcnow()
    with database.session() as session:
        count, latest = session.execute(
            select(func.count(), func.max(Task.deadline_at)).where(
                Task.leasable_at.is_not(None), Task.deadline_at.is_not(None), Task.deadline_at <= now
            )
        ).one()
    if not count:
        return dg.SkipReason("no undecided task is past its deadline")
    latest_iso = latest.isoformat()
    if context.cursor and datetime.fromisoformat(context.cursor) >= latest:
        return dg.SkipReason(f"{count} overdue task(s) already handed to a run (deadline ≤ {context.cursor})")
    context.update_cursor(latest_iso)
    return dg.RunRequest(run_key=f"tasks-overdue:{latest_iso}", tags={"overdue_tasks": str(count)})
