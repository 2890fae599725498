"""GPU-ready node: the execution provider comes from a setting (auto: CUDA when this onnxruntime
and machine have it, else CPU) and the node reports the one it runs in its heartbeats."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from node_service.heartbeat import build_heartbeat
from node_service.metrics import NodeMetrics
from node_service.runtime import (
    CPU_PROVIDER, CUDA_PROVIDER, ModelLoadError, ModelRegistry, execution_providers, load_model,
)
from noderr_protocol.work import HeartbeatIn
from tests.support.node import iris_onnx, signed_manifest


def test_auto_picks_cuda_only_where_it_exists():
    assert execution_providers("auto", [CPU_PROVIDER]) == [CPU_PROVIDER]
    assert execution_providers("auto", [CUDA_PROVIDER, CPU_PROVIDER]) == [CUDA_PROVIDER, CPU_PROVIDER]
    assert execution_providers("cpu", [CUDA_PROVIDER, CPU_PROVIDER]) == [CPU_PROVIDER]
    assert execution_providers("cuda", [CUDA_PROVIDER, CPU_PROVIDER])[0] == CUDA_PROVIDER
    with pytest.raises(ModelLoadError, match="GPU image"):
        execution_providers("cuda", ["AzureExecutionProvider", CPU_PROVIDER])


def test_the_setting_accepts_only_known_choices(monkeypatch):
    from node_service.settings import NodeSettings

    base = dict(api_url="http://127.0.0.1:1", node_id="n", node_api_key="k", model_cache_dir="/tmp",
                model_public_key="00" * 32)
    assert NodeSettings(**base, node_execution_provider=" CUDA ").node_execution_provider == "cuda"
    assert NodeSettings(**base).node_execution_provider == "auto"
    with pytest.raises(ValidationError):
        NodeSettings(**base, node_execution_provider="tpu")


def test_heartbeat_reports_the_provider_the_loaded_model_runs_on(tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = iris_onnx(1.0)
    path = tmp_path / "iris.onnx"
    path.write_bytes(data)
    signed = signed_manifest(Ed25519PrivateKey.generate(), name="iris", version=1, onnx_bytes=data)
    manifest = signed.manifest
    registry = ModelRegistry()
    # Before any model loads, the heartbeat carries the provider the node would use.
    assert build_heartbeat(NodeMetrics(), registry, CPU_PROVIDER).execution_provider == CPU_PROVIDER
    model = load_model(path, manifest, signed.model_dump(mode="json"), intra_op_threads=1,
                       inter_op_threads=1, providers=execution_providers("auto"))
    registry.swap(model)
    assert model.execution_provider == CPU_PROVIDER  # this machine's onnxruntime has no CUDA
    assert build_heartbeat(NodeMetrics(), registry, None).execution_provider == CPU_PROVIDER


def test_the_heartbeat_field_is_bounded():
    assert HeartbeatIn(uptime_seconds=1, execution_provider="CUDAExecutionProvider")
    for bad in ("x" * 65, "CUDA; DROP TABLE", "cuda"):
        with pytest.raises(ValidationError):
            HeartbeatIn(uptime_seconds=1, execution_provider=bad)


def test_the_control_plane_stores_the_reported_provider(session_factory):
    from noderr_core.tables import Node
    from noderr_core.telemetry import latest_heartbeat, record_heartbeat
    from tests.support.factories import make_node

    with session_factory() as s:
        node, _ = make_node(s)
        record_heartbeat(s, s.get(Node, node.id),
                         HeartbeatIn(uptime_seconds=5, execution_provider=CUDA_PROVIDER))
        s.commit()
        assert latest_heartbeat(s, node.id).execution_provider == CUDA_PROVIDER
