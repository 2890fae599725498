"""Task-network fixtures: a published model, clients, and nodes of distinct operators."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from noderr_core.audit import Actor
from noderr_core.modelstore.packaging import sign_manifest
from noderr_core.tables.model_registry import ModelVersion, ModelVersionStatus
from noderr_core.tasks import create_client
from noderr_core.timeutil import utcnow
from noderr_protocol.models import ModelManifest, TensorSpec

IRIS_INPUTS = [{"name": "input", "dtype": "float32", "shape": [None, 4]}]
IRIS_OUTPUTS = [{"name": "label", "dtype": "int64", "shape": [None]}]
TEST_BUCKET = "noderr-models"
TEST_PUBLISHER = Actor.system("test")
# Signs the fixture's manifests unless a test passes the app's key (model_signing_key(settings)),
# which it must when a node verifies the manifest from the beacon.
TEST_SIGNING_KEY = Ed25519PrivateKey.generate()


def make_test_manifest(name: str = "iris", version: int = 1,
                        inputs: list[dict] | None = None) -> ModelManifest:
    """A manifest as packaging writes it, for small stand-in bytes (nothing is uploaded)."""
    blob = f"test model {name} v{version}".encode()
    return ModelManifest(
        name=name, version=version, sha256=hashlib.sha256(blob).hexdigest(), size_bytes=len(blob),
        inputs=[TensorSpec.model_validate(i) for i in (inputs if inputs is not None else IRIS_INPUTS)],
        outputs=[TensorSpec.model_validate(o) for o in IRIS_OUTPUTS],
        opset=17, created_at=utcnow(),
    )


def publish_test_model(session, name: str = "iris", version: int = 1, status: str = "active",
                       inputs: list[dict] | None = None, *, manifest: ModelManifest | None = None,
                       signing_key: Ed25519PrivateKey | None = None,
                       rollout_percent: int | None = None) -> ModelVersion:
    """A model_versions row exactly as noderr_core.modelstore.registry.publish_model_version stores
    it (the bare manifest JSON beside its signature and key id, which is what the beacon's
    `signed_manifest_of` and the task API read), then moved to `status` as promote_model_version
    would. It skips the registry's bookkeeping (beacon sequence, rollout event, audit entry) because
    admin tests count those entries; tests/tasks/test_model_fixture.py checks the row against what
    publish_model_version and promote_model_version store.
    """
    manifest = manifest or make_test_manifest(name, version, inputs)
    signed = sign_manifest(manifest, signing_key or TEST_SIGNING_KEY)
    target = ModelVersionStatus(status)
    now = utcnow()
    if target == ModelVersionStatus.ACTIVE:
        # One active version per model, as promotion guarantees: the previous one is retired.
        for previous in session.scalars(select(ModelVersion).where(
                ModelVersion.name == manifest.name, ModelVersion.status == ModelVersionStatus.ACTIVE)):
            previous.status, previous.rollout_percent, previous.retired_at = "retired", 0, now
            previous.status_changed_at = now
    percent = {ModelVersionStatus.ACTIVE: 100,
               ModelVersionStatus.CANARY: rollout_percent or 10}.get(target, 0)
    mv = ModelVersion(
        name=manifest.name,
        version=manifest.version,
        sha256=manifest.sha256,
        size_bytes=manifest.size_bytes,
        bucket=TEST_BUCKET,
        object_key=f"models/{manifest.name}/{manifest.version}/model.onnx",
        manifest_key=f"models/{manifest.name}/{manifest.version}/manifest.json",
        manifest=signed.manifest.model_dump(mode="json"),
        signature=signed.signature,
        key_id=signed.key_id,
        status=target.value,
        rollout_percent=percent,
        source="test",
        parent_version=manifest.parent_version,
        metrics=dict(manifest.metrics),
        created_at=manifest.created_at,
        published_by=TEST_PUBLISHER.label,
        status_changed_at=now,
        activated_at=now if target == ModelVersionStatus.ACTIVE else None,
        retired_at=now if target == ModelVersionStatus.RETIRED else None,
    )
    session.add(mv)
    session.flush()
    return mv


@pytest.fixture
def task_world(session_factory, node_factory):
    """A published 'iris' model, one client (with its key) and a node factory."""

    class World:
        def __init__(self):
            with session_factory() as s:
                publish_test_model(s)
                client, key = create_client(s, name="acme", actor=Actor.system("test"))
                s.commit()
                self.client_id = client.id
                self.client_key = key

        @staticmethod
        def node(**kwargs):
            return node_factory(**kwargs)

    return World()
