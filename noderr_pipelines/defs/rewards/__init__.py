"""Rewards domain: daily reward epochs and their Merkle roots (published through the chain outbox)."""

import dagster as dg

from noderr_pipelines.defs.rewards.assets import reward_epoch, reward_merkle_root
from noderr_pipelines.defs.rewards.jobs import close_epoch_job, reward_epoch_job
from noderr_pipelines.defs.rewards.schedules import reward_epoch_schedule

defs = dg.Definitions(
    assets=[reward_epoch, reward_merkle_root],
    jobs=[reward_epoch_job, close_epoch_job],
    schedules=[reward_epoch_schedule],
)
