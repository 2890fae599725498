"""Assembles the domains into one code location and applies project-wide policy."""

import dagster as dg

from noderr_pipelines.defs import models, network, onboarding, rewards, staking, tasks
from noderr_pipelines.resources import DatabaseResource

# Project-wide policy:
# - in-process executor: our steps are short and import-heavy (onnx, sklearn, web3); one process
#   per step would spend most of a run starting interpreters. Parallelism comes from running many
#   runs (the run queue), not many steps per run.
# - every run is tagged with the platform it belongs to, so the Dagster UI can filter on it.
defs = dg.Definitions.merge(
    onboarding.defs,
    models.defs,
    tasks.defs,
    rewards.defs,
    network.defs,
    staking.defs,
    dg.Definitions(
        resources={"database": DatabaseResource()},
        executor=dg.in_process_executor,
    ),
)
