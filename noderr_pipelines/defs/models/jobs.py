"""Jobs of the models domain: materialize a source end to end, promote, roll out, roll back.

Promotion and rollback are op jobs with run config (launchpad or GraphQL); each calls the
registry's core function in one transaction, which bumps the beacon sequence and writes the audit
log. They are idempotent in effect: re-running a promotion that already happened fails with a
clear message instead of changing anything.
"""


import dagster as dg
from pydantic import Field

from noderr_core.audit import Actor
from noderr_core.modelstore import promote_model_version, rollback_model
from noderr_core.modelstore.registry import RegistryError
from noderr_pipelines.resources import DatabaseResource

publish_reference_model_job = dg.define_asset_job(
    "publish_reference_model_job",
    selection=dg.AssetSelection.assets(
        "iris_classifier_training", "iris_classifier_onnx", "iris_classifier_package",
        "iris_classifier_s3_object", "iris_classifier_published",
    ),
    description="Train, export, check, package, upload and publish (staged) the reference model.",
)

publish_onnx_file_job = dg.define_asset_job(
    "publish_onnx_file_job",
    selection=dg.AssetSelection.assets(
        "onnx_file_model", "onnx_file_package", "onnx_file_s3_object", "onnx_file_published"
    ),
    description="Check, package, upload and publish (staged) an ONNX file given in run config.",
)


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
    except RegistryError as exc:
        raise _registry_failure(exc) from exc
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
            result = {"model_name": row.name, "version": row.version, "status": row.status}
    except RegistryError as exc:
        raise _registry_failure(exc) from exc
    context.add_output_metadata(result)
    return result


@dg.job(description="Promote a model version: staged → canary (rollout %) → active, or retire it.")
def promote_model_job():
    promote_model_version_op()


@dg.job(description="Roll a model back to an older version (a new, higher beacon sequence).")
def rollback_model_job():
    rollback_model_op()


model_jobs = [publish_reference_model_job, publish_onnx_file_job, promote_model_job,
              rollback_model_job]
