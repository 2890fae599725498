"""Model delivery: registry state machine, canary assignment, packaging, S3 objects, the beacon.

Light to import (no scikit-learn/onnx at import time): the API imports it for the beacon. The
reference model's training and quality checks live in `noderr_core.modelstore.reference` and
`noderr_core.modelstore.checks`, imported by the pipelines.
"""

from noderr_core.modelstore.beacon import build_signed_beacon
from noderr_core.modelstore.registry import (
    ModelVersionNotFound,
    PublishOutcome,
    RegistryError,
    RolloutState,
    current_beacon_sequence,
    list_model_versions,
    list_rollout_events,
    promote_model_version,
    publish_model_version,
    rollback_model,
    rollout_state,
    signed_manifest_of,
)
from noderr_core.modelstore.rollout import assigned_version, in_canary, rollout_bucket
from noderr_core.tables.model_registry import (
    BeaconState,
    ModelRolloutEvent,
    ModelVersion,
    ModelVersionStatus,
)

__all__ = [
    "BeaconState",
    "ModelRolloutEvent",
    "ModelVersion",
    "ModelVersionNotFound",
    "ModelVersionStatus",
    "PublishOutcome",
    "RegistryError",
    "RolloutState",
    "assigned_version",
    "build_signed_beacon",
    "current_beacon_sequence",
    "in_canary",
    "list_model_versions",
    "list_rollout_events",
    "promote_model_version",
    "publish_model_version",
    "rollback_model",
    "rollout_bucket",
    "rollout_state",
    "signed_manifest_of",
]
