"""The models domain: a lineage per catalog model (group `models`), promotion and rollback jobs."""

import dagster as dg

from noderr_pipelines.defs.models.assets import build_lineages
from noderr_pipelines.defs.models.jobs import rollout_jobs
from noderr_pipelines.lib.model_catalog import load_model_catalog
from noderr_pipelines.lib.model_resources import (
    ModelBucketResource,
    ModelQualityPolicy,
    ModelSignerResource,
)


def build_models_defs(catalog=None) -> dg.Definitions:
    """The domain's Definitions for a catalog (default: the configured catalog file)."""
    lineages = build_lineages(catalog or load_model_catalog())
    return dg.Definitions(
        assets=[asset for lineage in lineages for asset in lineage.assets],
        asset_checks=[check for lineage in lineages for check in lineage.checks],
        jobs=[*(lineage.job for lineage in lineages), *rollout_jobs],
        resources={
            "model_bucket": ModelBucketResource(),
            "model_signer": ModelSignerResource(),
            "quality_policy": ModelQualityPolicy(),
        },
    )


defs = build_models_defs()
