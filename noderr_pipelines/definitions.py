"""Assembles the domains into one code location and applies project-wide policy."""

import dagster as dg

from noderr_pipelines.defs import models, network, onboarding, rewards, tasks
from noderr_pipelines.resources import DatabaseResource

defs = dg.Definitions.merge(
    onboarding.defs,
    models.defs,
    tasks.defs,
    rewards.defs,
    network.defs,
    dg.Definitions(resources={"database": DatabaseResource()}),
)
