"""The daily reward schedule: after midnight UTC, materialize the day that just ended."""

import dagster as dg

from noderr_pipelines.defs.rewards.jobs import reward_epoch_job

reward_epoch_schedule = dg.build_schedule_from_partitioned_job(
    reward_epoch_job,
    hour_of_day=0,
    minute_of_hour=15,  # late heartbeats and quorum decisions of the last minutes have landed
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
