"""The overdue-task job: fails undecided tasks whose deadline passed (idempotent, batch by batch).

Leases, result submissions and client reads already fail overdue tasks lazily; this job makes the
deadline hold when nobody is leasing or reading (e.g. no node serves the model), so admin pages
and rewards see the real state.
"""

import dagster as dg

from noderr_core.tasks import fail_overdue_tasks
from noderr_pipelines.resources import DatabaseResource


@dg.op
def fail_overdue_task_batch(context: dg.OpExecutionContext, database: DatabaseResource) -> dg.Output[int]:
    """Fail every overdue undecided task, 1,000 per transaction; a rerun finds nothing left to do."""
    total = 0
    while True:
        with database.session() as session:
            failed = fail_overdue_tasks(session, limit=1000)
        total += failed
        if failed == 0:
            break
    context.log.info(f"{total} overdue task(s) failed")
    return dg.Output(total, metadata={"tasks_failed": total})


@dg.job(tags={"noderr/domain": "tasks"})
def overdue_tasks_job() -> None:
    fail_overdue_task_batch()
