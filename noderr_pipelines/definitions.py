"""Assembles the domains into one code location and applies project-wide policy, in one place.

Policy (see `noderr_pipelines.lib.policy`): every run tagged with the platform and its domain,
op jobs retried with backoff, every asset and job owned by its domain's team. And:
- in-process executor: our steps are short and import-heavy (onnx, sklearn, web3); one process
  per step would spend most of a run starting interpreters. Parallelism comes from running many
  runs (the run queue), not many steps per run.
- resources shared by every domain (the database, the chain) are bound here.
"""

import dagster as dg

from noderr_pipelines.defs import models, network, onboarding, outbox, rewards, staking, tasks
from noderr_pipelines.lib.policy import apply_policy
from noderr_pipelines.lib.run_storage import RunStorageIOManager
from noderr_pipelines.resources import ChainResource, DatabaseResource

# domain -> (its Definitions, the team that owns it)
DOMAINS = {
    "onboarding": (onboarding.defs, "team:operations"),
    "models": (models.defs, "team:ml"),
    "tasks": (tasks.defs, "team:platform"),
    "rewards": (rewards.defs, "team:rewards"),
    "network": (network.defs, "team:platform"),
    "outbox": (outbox.defs, "team:platform"),
    "staking": (staking.defs, "team:rewards"),
}

defs = dg.Definitions.merge(
    *(apply_policy(domain_defs, domain=name, owner=owner)
      for name, (domain_defs, owner) in DOMAINS.items()),
    dg.Definitions(
        resources={"database": DatabaseResource(), "chain": ChainResource(),
                   "io_manager": RunStorageIOManager()},
        executor=dg.in_process_executor,
    ),
)
