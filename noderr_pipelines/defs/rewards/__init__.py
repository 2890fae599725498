"""Rewards domain: daily reward epochs (checked before publishing), their Merkle roots (queued for
the chain outbox, whose relay lives in defs/outbox), and challenge tasks that prove service."""

import dagster as dg

from noderr_pipelines.defs.rewards.assets import reward_epoch, reward_merkle_root, reward_root_publication
from noderr_pipelines.defs.rewards.jobs import challenge_job, close_epoch_job, reward_epoch_job
from noderr_pipelines.defs.rewards.schedules import challenge_schedule, reward_epoch_schedule

defs = dg.Definitions(
    assets=[reward_epoch, reward_merkle_root, reward_root_publication],
    jobs=[reward_epoch_job, close_epoch_job, challenge_job],
    schedules=[reward_epoch_schedule, challenge_schedule],
)
