"""Project-wide policy, applied once to each domain's Definitions by `definitions.py`.

- Every run is tagged with the platform and the domain it belongs to (``noderr/platform``,
  ``noderr/domain``), so the Dagster UI and the run queue can filter and limit on them.
- Every op job retries a failed step with exponential backoff (`OP_RETRY_POLICY`): the work is
  idempotent through the core (row locks, outbox keys), and a database or SMTP hiccup should not
  need a human. A step that knows retrying cannot help raises ``dg.Failure(allow_retries=False)``;
  an op or asset with its own retry policy keeps it. Asset jobs keep their assets' own policies (an
  asset check that fails is a verdict, not a hiccup).
- Every asset and job has an owner (the team of its domain), shown in the UI.

Jobs are copied with the policy applied, and the sensors and schedules that target them are
re-pointed at the copies (Dagster refuses two different definitions of one job name).
"""

from __future__ import annotations

import dagster as dg
from dagster_shared.record import replace

from dagster._core.definitions.partitions.partitioned_schedule import (
    UnresolvedPartitionedAssetScheduleDefinition,
)

PLATFORM_TAG = "noderr/platform"
DOMAIN_TAG = "noderr/domain"
PLATFORM = "noderr"
OP_RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)


def apply_policy(defs: dg.Definitions, *, domain: str, owner: str) -> dg.Definitions:
    """`defs` with run tags, op retry policy and owners applied to every job and asset."""
    tags = {PLATFORM_TAG: PLATFORM, DOMAIN_TAG: domain}
    jobs = {}
    for job in defs.jobs or []:
        if isinstance(job, dg.JobDefinition):
            jobs[job.name] = job._copy(
                tags={**tags, **job.tags},
                op_retry_policy=job.op_retry_policy or OP_RETRY_POLICY,
                owners=list(job.owners or [owner]),
            )
        else:  # an asset job: resolved against the asset graph when the repository loads
            jobs[job.name] = replace(job, tags={**tags, **(job.tags or {})},
                                     owners=list(job.owners or [owner]))
    sensors = [_retarget_sensor(sensor, jobs) for sensor in defs.sensors or []]
    schedules = [_retarget_schedule(schedule, jobs) for schedule in defs.schedules or []]
    applied = dg.Definitions(
        assets=defs.assets, asset_checks=defs.asset_checks, jobs=list(jobs.values()),
        sensors=sensors, schedules=schedules, resources=defs.resources, executor=defs.executor,
        loggers=defs.loggers, metadata=defs.metadata,
    )
    return applied.map_asset_specs(
        func=lambda spec: spec.replace_attributes(
            owners=list(spec.owners or [owner]), tags={DOMAIN_TAG: domain, **spec.tags},
        )
    )


def _retarget_sensor(sensor: dg.SensorDefinition, jobs: dict) -> dg.SensorDefinition:
    names = [target.job_name for target in sensor.targets]
    if not names or not all(name in jobs for name in names):
        return sensor
    return sensor.with_attributes(jobs=[jobs[name] for name in names])


def _retarget_schedule(schedule, jobs: dict):
    if isinstance(schedule, UnresolvedPartitionedAssetScheduleDefinition):
        job = jobs.get(schedule.job.name)
        return replace(schedule, job=job) if job is not None else schedule
    if schedule.job_name in jobs:
        return schedule.with_attributes(job=jobs[schedule.job_name])
    return schedule
