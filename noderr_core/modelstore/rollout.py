"""Canary assignment: which version of a model a node runs, by a stable hash of its node id.

A node's bucket for a model is a number in [0, 100) derived from sha256(model name, node id): it
never changes, so raising a canary from 10 % to 30 % keeps the first 10 % on the canary and adds
nodes (no flapping), and different models canary on different nodes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from noderr_core.tables.model_registry import ModelVersion, ModelVersionStatus

_SCALE = 2**64


def rollout_bucket(node_id: str, model_name: str) -> float:
    digest = hashlib.sha256(f"{model_name}\x00{node_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE * 100.0


def in_canary(node_id: str, model_name: str, rollout_percent: int) -> bool:
    return rollout_bucket(node_id, model_name) < rollout_percent


def assigned_version(node_id: str, versions: Iterable[ModelVersion]) -> ModelVersion | None:
    """The version of one model this node should run, among that model's versions.

    The canary version when the node's bucket falls under its rollout percentage, otherwise the
    active version (None when the model has neither, e.g. only staged or retired versions).
    """
    active: ModelVersion | None = None
    canary: ModelVersion | None = None
    for version in versions:
        if version.status == ModelVersionStatus.ACTIVE:
            active = version
        elif version.status == ModelVersionStatus.CANARY:
            canary = version
    if canary is not None and in_canary(node_id, canary.name, canary.rollout_percent):
        return canary
    return active
