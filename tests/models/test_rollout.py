"""Canary assignment by stable hash of node id."""

from __future__ import annotations

import secrets

from noderr_core.modelstore import assigned_version, in_canary, rollout_bucket
from noderr_core.tables.model_registry import ModelVersion


def test_assignment_is_stable_and_matches_percentage_over_10000_nodes():
    node_ids = [f"node_{secrets.token_hex(8)}" for _ in range(10_000)]
    for percent in (5, 25, 50):
        chosen = [n for n in node_ids if in_canary(n, "iris-classifier", percent)]
        share = len(chosen) / len(node_ids) * 100
        # Binomial sd at 50 % over 10,000 is 0.5 points: 2 points is 4 sd.
        assert abs(share - percent) < 2.0, (percent, share)
        # Stable: same answer on a second evaluation.
        assert chosen == [n for n in node_ids if in_canary(n, "iris-classifier", percent)]
    # Monotonic: raising the percentage only adds nodes.
    at10 = {n for n in node_ids if in_canary(n, "iris-classifier", 10)}
    at30 = {n for n in node_ids if in_canary(n, "iris-classifier", 30)}
    assert at10 <= at30


def test_different_models_canary_on_different_nodes():
    node_ids = [f"node_{i:016x}" for i in range(2_000)]
    a = {n for n in node_ids if in_canary(n, "model-a", 20)}
    b = {n for n in node_ids if in_canary(n, "model-b", 20)}
    assert a != b
    assert 0 <= rollout_bucket("node_x", "model-a") < 100


def test_assigned_version_prefers_canary_only_inside_bucket():
    active = ModelVersion(name="m", version=1, status="active", rollout_percent=100)
    canary = ModelVersion(name="m", version=2, status="canary", rollout_percent=30)
    staged = ModelVersion(name="m", version=3, status="staged", rollout_percent=0)
    inside = next(f"n{i}" for i in range(1000) if rollout_bucket(f"n{i}", "m") < 30)
    outside = next(f"n{i}" for i in range(1000) if rollout_bucket(f"n{i}", "m") >= 30)
    assert assigned_version(inside, [active, canary, staged]) is canary
    assert assigned_version(outside, [active, canary, staged]) is active
    assert assigned_version(outside, [canary, staged]) is None
    assert assigned_version(inside, [staged]) is None
