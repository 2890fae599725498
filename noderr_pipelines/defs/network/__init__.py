"""Network domain: node health monitoring (offline detection, alerts, recovery)."""

import dagster as dg

from noderr_pipelines.defs.network.jobs import node_health_job
from noderr_pipelines.defs.network.resources import NodeHealthPolicy
from noderr_pipelines.defs.network.sensors import node_health_sensor

defs = dg.Definitions(
    jobs=[node_health_job],
    sensors=[node_health_sensor],
    resources={"node_health": NodeHealthPolicy()},
)
