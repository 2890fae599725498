"""The models domain: model lifecycle assets (group `models`), promotion and rollback jobs."""

import dagster as dg

from noderr_pipelines.defs.models.assets import model_asset_checks, model_assets
from noderr_pipelines.defs.models.jobs import model_jobs
from noderr_pipelines.defs.models.resources import (
    ModelBucketResource,
    ModelQualityPolicy,
    ModelSignerResource,
)

defs = dg.Definitions(
    assets=model_assets,
    asset_checks=model_asset_checks,
    jobs=model_jobs,
    resources={
        "model_bucket": ModelBucketResource(),
        "model_signer": ModelSignerResource(),
        "quality_policy": ModelQualityPolicy(),
    },
)
