"""Rewards domain: daily reward epochs (checked before publishing), their Merkle roots, challenge
tasks that prove service, and the chain outbox relay."""

import dagster as dg

from noderr_pipelines.defs.rewards.assets import reward_epoch, reward_merkle_root, reward_root_publication
from noderr_pipelines.defs.rewards.jobs import chain_relay_job, challenge_job, close_epoch_job, reward_epoch_job
from noderr_pipelines.defs.rewards.resources import ChainResource
from noderr_pipelines.defs.rewards.schedules import challenge_schedule, reward_epoch_schedule
from noderr_pipelines.defs.rewards.sensors import chain_outbox_sensor

defs = dg.Definitions(
    assets=[reward_epoch, reward_merkle_root, reward_root_publication],
    jobs=[reward_epoch_job, chain_relay_job, close_epoch_job, challenge_job],
    schedules=[reward_epoch_schedule, challenge_schedule],
    sensors=[chain_outbox_sensor],
    resources={"chain": ChainResource()},
)
