"""Schedules: the daily epoch after midnight UTC, and challenge tasks every 5-minute slot."""

from datetime import timedelta

import dagster as dg

from noderr_pipelines.defs.rewards.jobs import challenge_job, reward_epoch_job


@dg.schedule(
    job=reward_epoch_job,
    cron_schedule="15 0 * * *",  # late results and quorum decisions of the last minutes have landed
    execution_timezone="UTC",
    name="reward_epoch_job_schedule",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Materialize the day that just ended (the partitions include the open day, which "
    "only an explicit early close materializes).",
)
def reward_epoch_schedule(context: dg.ScheduleEvaluationContext):
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(run_key=f"reward-epoch:{day}", partition_key=day)


@dg.schedule(
    job=challenge_job,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="One challenge task with a known answer per online node without an open one.",
)
def challenge_schedule(context: dg.ScheduleEvaluationContext):
    slot = context.scheduled_execution_time.strftime("%Y-%m-%dT%H:%M")
    return dg.RunRequest(run_key=f"challenges:{slot}")
