"""Tasks domain: failing undecided tasks once their deadline has passed."""

import dagster as dg

from noderr_pipelines.defs.tasks.jobs import overdue_tasks_job
from noderr_pipelines.defs.tasks.sensors import overdue_tasks_sensor

defs = dg.Definitions(jobs=[overdue_tasks_job], sensors=[overdue_tasks_sensor])
