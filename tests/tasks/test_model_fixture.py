"""The tasks fixture publishes the model row the models area's registry would, so the task API and
the beacon read it as they read a real one (the fixture once stored the whole signed envelope in
`manifest`, which the beacon cannot serve and the task API only read through a workaround)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from noderr_core.keys import model_signing_key
from noderr_core.modelstore.beacon import build_signed_beacon
from noderr_core.modelstore.packaging import sign_manifest
from noderr_core.modelstore.registry import promote_model_version, publish_model_version
from noderr_core.tables.model_registry import ModelVersion
from noderr_core.settings import Settings
from noderr_core.storage.s3 import make_presign_client
from noderr_protocol.signing import public_key_hex
from noderr_protocol.verify import verify_signed_manifest
from tests.support.tasks import TEST_BUCKET, TEST_PUBLISHER, make_test_manifest, publish_test_model

STORED = ("name", "version", "sha256", "size_bytes", "bucket", "object_key", "manifest_key", "manifest",
          "signature", "key_id", "status", "rollout_percent", "source", "parent_version", "metrics",
          "created_at", "published_by")


def _stored(session_factory, name: str) -> dict:
    with session_factory() as s:
        row = s.scalar(select(ModelVersion).where(ModelVersion.name == name))
        return {**{c: getattr(row, c) for c in STORED}, "activated": row.activated_at is not None}


def test_fixture_row_is_what_publish_and_promote_store(session_factory):
    key = Ed25519PrivateKey.generate()
    manifest = make_test_manifest("iris", 1)
    with session_factory() as s:
        publish_model_version(
            s, signed_manifest=sign_manifest(manifest, key), bucket=TEST_BUCKET,
            object_key="models/iris/1/model.onnx", manifest_key="models/iris/1/manifest.json",
            source="test", actor=TEST_PUBLISHER, signing_key=key,
        )
        promote_model_version(s, model_name="iris", version=1, to_status="active", actor=TEST_PUBLISHER)
        s.commit()
    by_registry = _stored(session_factory, "iris")
    with session_factory() as s:
        s.delete(s.scalar(select(ModelVersion)))
        publish_test_model(s, manifest=manifest, signing_key=key)
        s.commit()
    by_fixture = _stored(session_factory, "iris")
    assert by_fixture == by_registry
    # The bare manifest, not an envelope around it.
    assert "signature" not in by_fixture["manifest"] and by_fixture["manifest"]["inputs"][0]["name"] == "input"


def test_beacon_serves_the_fixture_model_as_a_manifest_nodes_verify(db_url, session_factory, node_factory,
                                                                    tmp_path):
    settings = Settings(env="test", database_url=db_url, state_dir=tmp_path / "state")
    key = model_signing_key(settings)
    node, _key = node_factory()
    with session_factory() as s:
        publish_test_model(s, "iris", 1, "active", signing_key=key)
        publish_test_model(s, "iris", 2, "staged", signing_key=key)  # not served
        s.commit()
        signed = build_signed_beacon(s, node.id, settings, make_presign_client(settings), signing_key=key)
    [entry] = signed.beacon.models
    assert (entry.model_name, entry.version, entry.rollout) == ("iris", 1, "active")
    served = verify_signed_manifest(entry.signed_manifest, public_key_hex(key))
    assert served == make_test_manifest("iris", 1).model_copy(update={"created_at": served.created_at})
