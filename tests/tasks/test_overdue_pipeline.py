"""The overdue-task sensor and job (Dagster) on both databases."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from noderr_core.tasks import get_tasks
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.tasks.jobs import overdue_tasks_job
from noderr_pipelines.defs.tasks.sensors import overdue_tasks_sensor
from noderr_pipelines.resources import DatabaseResource
from tests.support.task_flow import submit


def test_sensor_requests_one_run_per_deadline_and_job_fails_overdue_tasks(db_url, session_factory, task_world):
    database = DatabaseResource(database_url=db_url)
    t0 = utcnow() - timedelta(minutes=5)
    overdue = submit(session_factory, task_world.client_id, 3, deadline=t0 + timedelta(seconds=30), now=t0)
    on_time = submit(session_factory, task_world.client_id, 1, deadline=utcnow() + timedelta(hours=1))

    ctx = dg.build_sensor_context(resources={"database": database})
    request = overdue_tasks_sensor(ctx)
    assert isinstance(request, dg.RunRequest) and request.tags["overdue_tasks"] == "3"
    cursor = ctx.cursor
    again = overdue_tasks_sensor(dg.build_sensor_context(cursor=cursor, resources={"database": database}))
    assert isinstance(again, dg.SkipReason)

    result = overdue_tasks_job.execute_in_process(resources={"database": database})
    assert result.success and result.output_for_node("fail_overdue_task_batch") == 3
    with session_factory() as s:
        tasks, _ = get_tasks(s, client_id=task_world.client_id, task_ids=overdue + on_time)
    status = {t.id: t.status for t in tasks}
    assert [status[i] for i in overdue] == ["failed"] * 3 and status[on_time[0]] == "queued"
    # Idempotent: a second run finds nothing, the sensor goes idle.
    assert overdue_tasks_job.execute_in_process(resources={"database": database}).output_for_node(
        "fail_overdue_task_batch") == 0
    assert isinstance(overdue_tasks_sensor(dg.build_sensor_context(resources={"database": database})), dg.SkipReason)


def test_whole_definitions_load():
    from noderr_pipelines.definitions import defs

    assert defs.get_job_def("overdue_tasks_job") is not None
    assert defs.get_sensor_def("overdue_tasks_sensor") is not None
