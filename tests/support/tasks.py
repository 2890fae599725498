"""Task-network fixtures: a published model, clients, and nodes of distinct operators."""

from __future__ import annotations

import hashlib

import pytest

from noderr_core.audit import Actor
from noderr_core.models.model_registry import ModelVersion
from noderr_core.tasks import create_client
from noderr_core.timeutil import utcnow

IRIS_INPUTS = [{"name": "input", "dtype": "float32", "shape": [None, 4]}]


def publish_test_model(session, name: str = "iris", version: int = 1, status: str = "active",
                       inputs: list[dict] | None = None) -> ModelVersion:
    """A model_versions row as the models area writes it (the task API only reads name/status/inputs)."""
    digest = hashlib.sha256(f"{name}:{version}".encode()).hexdigest()
    manifest = {
        "schema_version": 1, "name": name, "version": version, "sha256": digest, "size_bytes": 1,
        "inputs": inputs if inputs is not None else IRIS_INPUTS,
        "outputs": [{"name": "label", "dtype": "int64", "shape": [None]}],
        "opset": 17, "created_at": utcnow().isoformat(),
    }
    mv = ModelVersion(
        name=name, version=version, sha256=digest, size_bytes=1, bucket="test",
        object_key=f"models/{name}/{version}/model.onnx", manifest_key=f"models/{name}/{version}/manifest.json",
        manifest={"manifest": manifest, "signature": "test", "key_id": "test"}, signature="test",
        key_id="test", status=status, rollout_percent=100 if status == "active" else 10,
        source="test", metrics={},
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
