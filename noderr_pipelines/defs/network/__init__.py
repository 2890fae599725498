"""Network domain: node health monitoring (offline detection, alerts, recovery) and heartbeat
rollups with raw-row retention."""

import dagster as dg

from noderr_pipelines.defs.network.jobs import node_health_job
from noderr_pipelines.defs.network.resources import NodeHealthPolicy
from noderr_pipelines.defs.network.sensors import node_health_sensor
from noderr_pipelines.defs.network.telemetry_jobs import heartbeat_rollup_job, heartbeat_rollup_schedule

defs = dg.Definitions(
    jobs=[node_health_job, heartbeat_rollup_job],
    sensors=[node_health_sensor],
    schedules=[heartbeat_rollup_schedule],
    resources={"node_health": NodeHealthPolicy()},
)
