"""Staking domain: the stake observer (bonds on chain → node_stakes) and the slashing monitor."""

import dagster as dg

from noderr_pipelines.defs.staking.jobs import slashing_job, stake_sync_job
from noderr_pipelines.defs.staking.resources import SlashingPolicyResource
from noderr_pipelines.defs.staking.sensors import slashing_monitor_sensor, stake_observer_sensor

defs = dg.Definitions(
    jobs=[stake_sync_job, slashing_job],
    sensors=[stake_observer_sensor, slashing_monitor_sensor],
    resources={"slashing_policy": SlashingPolicyResource()},
)
