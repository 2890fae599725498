"""Registry state machine on SQLite and PostgreSQL: publish, promote, roll out, roll back."""

from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from noderr_core.audit import Actor
from noderr_core.modelstore import (
    RegistryError,
    current_beacon_sequence,
    list_model_versions,
    list_rollout_events,
    promote_model_version,
    publish_model_version,
    rollback_model,
    signed_manifest_of,
)
from noderr_core.modelstore.delivery import package_model
from noderr_core.tables import AuditLogEntry
from noderr_protocol.signing import public_key_hex
from noderr_protocol.verify import verify_signed_manifest
from tests.support.models import onnx_variant

KEY = Ed25519PrivateKey.generate()
ADMIN = Actor("admin", 1, "admin@noderr.local")


def publish(session, tag: str, name: str = "iris-classifier"):
    packaged = package_model(session, name=name, onnx_bytes=onnx_variant(tag), source=f"test:{tag}",
                             metrics={"holdout_accuracy": 0.95}, signing_key=KEY)
    m = packaged.signed_manifest.manifest
    return publish_model_version(
        session, signed_manifest=packaged.signed_manifest, bucket="b",
        object_key=f"models/{name}/sha256/{m.sha256}.onnx", manifest_key="k", source=f"test:{tag}",
        actor=ADMIN, signing_key=KEY,
    )


def statuses(session, name="iris-classifier"):
    return {v.version: (v.status, v.rollout_percent) for v in list_model_versions(session, name)}


def test_publish_is_staged_monotonic_and_idempotent_per_bytes(session_factory):
    with session_factory() as s:
        first = publish(s, "a")
        second = publish(s, "b")
        again = publish(s, "a")
        s.commit()
        assert (first.model_version.version, second.model_version.version) == (1, 2)
        assert first.model_version.status == "staged"
        assert not again.created and again.model_version.version == 1
        assert second.model_version.parent_version == 1
        assert current_beacon_sequence(s) == 2  # re-publishing identical bytes changes nothing
        manifest = verify_signed_manifest(signed_manifest_of(second.model_version), public_key_hex(KEY))
        assert manifest.version == 2


def test_promotion_path_canary_active_and_audit(session_factory):
    with session_factory() as s:
        for tag in "abc":
            publish(s, tag)
        promote_model_version(s, model_name="iris-classifier", version=1, to_status="active", actor=ADMIN)
        seq_before = current_beacon_sequence(s)
        promote_model_version(s, model_name="iris-classifier", version=2, to_status="canary",
                              rollout_percent=10, actor=ADMIN)
        promote_model_version(s, model_name="iris-classifier", version=2, to_status="canary",
                              rollout_percent=40, actor=ADMIN)
        assert statuses(s)[2] == ("canary", 40)
        s.commit()
        with pytest.raises(RegistryError, match="already in canary"):
            promote_model_version(s, model_name="iris-classifier", version=3, to_status="canary",
                                  rollout_percent=5, actor=ADMIN)
        s.rollback()

    with session_factory() as s:
        promote_model_version(s, model_name="iris-classifier", version=2, to_status="active", actor=ADMIN)
        s.commit()
        assert statuses(s) == {3: ("staged", 0), 2: ("active", 100), 1: ("retired", 0)}
        assert current_beacon_sequence(s) > seq_before
        actions = [e.action for e in list_rollout_events(s, "iris-classifier")]
        assert actions[:2] == ["promote", "rollout"]
        audit = s.scalars(select(AuditLogEntry).where(AuditLogEntry.subject_type == "model_version")).all()
        assert any(a.action == "model.promote" and a.actor_label == "admin@noderr.local"
                   and a.subject_id == "iris-classifier:v2" for a in audit)


@pytest.mark.parametrize(
    "setup,kwargs,message",
    [
        ([], dict(version=1, to_status="canary", rollout_percent=0), "between 1 and 99"),
        ([], dict(version=1, to_status="canary", rollout_percent=100), "between 1 and 99"),
        ([], dict(version=1, to_status="bogus"), "unknown status"),
        ([], dict(version=9, to_status="active"), "has no version 9"),
        ([("active", 1)], dict(version=1, to_status="retired"), "roll back"),
        ([("active", 1), ("active", 2)], dict(version=1, to_status="active"), "rollback"),
    ],
)
def test_invalid_promotions_are_refused_with_a_reason(session_factory, setup, kwargs, message):
    with session_factory() as s:
        publish(s, "a")
        publish(s, "b")
        for status, version in setup:
            promote_model_version(s, model_name="iris-classifier", version=version, to_status=status,
                                  actor=ADMIN)
        s.commit()
        before = statuses(s)
        with pytest.raises(RegistryError, match=message):
            promote_model_version(s, model_name="iris-classifier", actor=ADMIN, **kwargs)
        s.rollback()
        assert statuses(s) == before


def test_rollback_reactivates_previous_version_with_higher_sequence(session_factory):
    with session_factory() as s:
        for tag in "abc":
            publish(s, tag)
        promote_model_version(s, model_name="iris-classifier", version=1, to_status="active", actor=ADMIN)
        promote_model_version(s, model_name="iris-classifier", version=2, to_status="active", actor=ADMIN)
        promote_model_version(s, model_name="iris-classifier", version=3, to_status="canary",
                              rollout_percent=20, actor=ADMIN)
        s.commit()
        seq = current_beacon_sequence(s)
        target = rollback_model(s, model_name="iris-classifier", actor=ADMIN)
        s.commit()
        assert target.version == 1
        assert statuses(s) == {3: ("retired", 0), 2: ("retired", 0), 1: ("active", 100)}
        assert current_beacon_sequence(s) == seq + 1
        # Roll forward again to a named version.
        rollback_model(s, model_name="iris-classifier", to_version=2, actor=ADMIN)
        s.commit()
        assert statuses(s)[2] == ("active", 100)
        events = list_rollout_events(s, "iris-classifier")
        assert events[0].action == "rollback" and events[0].details["rolled_back_from"] == 1


def test_rollback_without_history_is_refused(session_factory):
    with session_factory() as s:
        publish(s, "a")
        s.commit()
        with pytest.raises(RegistryError, match="no active version"):
            rollback_model(s, model_name="iris-classifier", actor=ADMIN)
        s.rollback()
        promote_model_version(s, model_name="iris-classifier", version=1, to_status="active", actor=ADMIN)
        with pytest.raises(RegistryError, match="no earlier version"):
            rollback_model(s, model_name="iris-classifier", actor=ADMIN)


def test_concurrent_publishes_keep_versions_unique_and_monotonic(session_factory):
    """Eight writers package at the same time (all propose version 1), then publish together."""
    writers = 8
    barrier = threading.Barrier(writers)
    results, errors = [], []

    def worker(i: int) -> None:
        try:
            with session_factory() as s:
                packaged = package_model(
                    s, name="iris-classifier", onnx_bytes=onnx_variant(f"c{i}"), source="t",
                    metrics={}, signing_key=KEY,
                )
                s.rollback()  # packaging only read; release SQLite's write lock before the race
                barrier.wait(timeout=30)
                m = packaged.signed_manifest.manifest
                out = publish_model_version(
                    s, signed_manifest=packaged.signed_manifest, bucket="b",
                    object_key=f"k/{m.sha256}", manifest_key="k", source="t", actor=ADMIN,
                    signing_key=KEY,
                )
                s.commit()
                results.append((out.model_version.version, out.renumbered))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(v for v, _ in results) == list(range(1, writers + 1))
    assert sum(1 for _, renumbered in results if renumbered) == writers - 1
    with session_factory() as s:
        rows = list_model_versions(s, "iris-classifier")
        # Every renumbered manifest was re-signed and still verifies with its final version.
        for row in rows:
            assert verify_signed_manifest(signed_manifest_of(row), public_key_hex(KEY)).version == row.version
        events = list_rollout_events(s, "iris-classifier")
        assert sorted(e.sequence for e in events) == list(range(1, writers + 1))
