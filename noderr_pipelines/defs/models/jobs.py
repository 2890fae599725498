"""Rollout jobs of the models domain: promote (canary %, active, retire) and roll back.

Promotion and rollback are op jobs with run config (launchpad or GraphQL); each calls the
registry's core function in one transaction, which bumps the beacon sequence and writes the audit
log. They are idempotent in effect: re-running a promotion that already happened fails with a
clear message instead of changing anything.

Rollout as data: after each change the op records an AssetObservation on the model's
`<prefix>_published` asset with the model's whole rollout state (active version, canary version
and percent, staged versions, rolled-back versions, beacon sequence), so the asset catalog shows
per model what nodes run now, next to the versions its materializations published.
"""


import dagster as dg
from pydantic import Field

from noderr_core.audit import Actor
from noderr_core.modelstore import promote_model_version, rollback_model, rollout_state
from noderr_core.modelstore.registry import RegistryError, RolloutState
from noderr_pipelines.lib.model_lineage import published_asset_key
from noderr_pipelines.resources import DatabaseResource


class PromoteConfig(dg.Config):
    model_name: str
    version: int
    to_status: str = Field(description="canary | active | retired | staged (canary back to staged)")
    rollout_percent: int | None = Field(default=None, description="1-99, for canary")


class RollbackConfig(dg.Config):
    model_name: str
    to_version: int | None = Field(
        default=None, description="empty = the most recent previously active version"
    )


def _registry_failure(exc: RegistryError) -> dg.Failure:
    return dg.Failure(description=str(exc), allow_retries=False)


def rollout_observation(state: RolloutState, *, action: str, version: int) -> dg.AssetObservation:
    """The model's rollout state as an observation of its published asset."""
    metadata: dict = {
        "rollout": state.summary(),
        "action": action,
        "version": version,
        "beacon_sequence": state.beacon_sequence,
        "canary_percent": state.canary_percent,
        "staged_versions": ", ".join(f"v{v}" for v in state.staged_versions) or "none",
        "rolled_back_versions": ", ".join(f"v{v}" for v in state.rolled_back_versions) or "none",
    }
    # Numbers only when present, so the UI plots them over time without fake zeros.
    if state.active_version is not None:
        metadata["active_version"] = state.active_version
    if state.canary_version is not None:
        metadata["canary_version"] = state.canary_version
    return dg.AssetObservation(asset_key=published_asset_key(state.model_name), metadata=metadata)


@dg.op
def promote_model_version_op(context: dg.OpExecutionContext, config: PromoteConfig,
                             database: DatabaseResource) -> dict:
    try:
        with database.session() as session:
            row = promote_model_version(
                session, model_name=config.model_name, version=config.version,
                to_status=config.to_status, rollout_percent=config.rollout_percent,
                actor=Actor.pipeline(context.run.run_id),
            )
            result = {"model_name": row.name, "version": row.version, "status": str(row.status),
                      "rollout_percent": row.rollout_percent}
            state = rollout_state(session, config.model_name)
    except RegistryError as exc:
        raise _registry_failure(exc) from exc
    # Recorded after commit: the catalog never shows a state the registry rolled back.
    context.log_event(rollout_observation(state, action=f"promote:{result['status']}",
                                          version=result["version"]))
    context.add_output_metadata(result)
    return result


@dg.op
def rollback_model_op(context: dg.OpExecutionContext, config: RollbackConfig,
                      database: DatabaseResource) -> dict:
    try:
        with database.session() as session:
            row = rollback_model(
                session, model_name=config.model_name, to_version=config.to_version,
                actor=Actor.pipeline(context.run.run_id),
            )
            result = {"model_name": row.name, "version": row.version, "status": str(row.status)}
            state = rollout_state(session, config.model_name)
    except RegistryError as exc:
        raise _registry_failure(exc) from exc
    context.log_event(rollout_observation(state, action="rollback", version=result["version"]))
    context.add_output_metadata(result)
    return result


@dg.job(description="Promote a model version: staged → canary (rollout %) → active, or retire it.")
def promote_model_job():
    promote_model_version_op()


@dg.job(description="Roll a model back to an older version (a new, higher beacon sequence).")
def rollback_model_job():
    rollback_model_op()


rollout_jobs = [promote_model_job, rollback_model_job]
