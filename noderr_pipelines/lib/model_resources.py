"""Resources of the models domain: the model bucket (dagster-aws S3Resource), the signer, the gates.

Unset fields fall back to the NODERR_* settings read when a run starts (never at import time), so
the local stack works with no configuration and production sets the same variables; secrets are
never shown in the Dagster UI.
"""

from __future__ import annotations

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field, SecretStr

from noderr_core.keys import model_signing_key
from noderr_core.settings import Settings
from noderr_core.storage.s3 import make_s3_client


class ModelBucketResource(S3Resource):
    """S3Resource for the model bucket: SeaweedFS locally, any S3 endpoint in production."""

    bucket: str = Field(default="", description="Model bucket; empty = NODERR_MODEL_BUCKET")

    def bucket_name(self) -> str:
        return self.bucket or Settings().model_bucket

    def get_client(self):
        settings = Settings()
        update: dict = {}
        # Explicit resource config wins over settings; path-style addressing, timeouts and retries
        # come from noderr_core.storage.s3 so every S3 client of the platform behaves the same.
        if self.aws_access_key_id and self.aws_secret_access_key:
            update["s3_access_key_id"] = self.aws_access_key_id
            update["s3_secret_access_key"] = SecretStr(self.aws_secret_access_key)
        if self.region_name:
            update["s3_region"] = self.region_name
        return make_s3_client(
            settings.model_copy(update=update), endpoint_url=self.endpoint_url,
            max_attempts=self.max_attempts,
        )


class ModelSignerResource(dg.ConfigurableResource):
    """The Ed25519 key that signs manifests (NODERR_MODEL_SIGNING_KEY; generated in local)."""

    def private_key(self):
        return model_signing_key(Settings())


class ModelQualityPolicy(dg.ConfigurableResource):
    """Thresholds of the publishing gates (blocking asset checks)."""

    accuracy_floor: float = Field(default=0.9, description="minimum hold-out accuracy")
    parity_atol: float = Field(
        default=1e-5, description="max |ONNX - source| probability difference on the hold-out set"
    )
