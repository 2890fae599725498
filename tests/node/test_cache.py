"""Artifact downloads from the real object store (SeaweedFS) through presigned URLs: resumable,
verified against the signed manifest, tampered or truncated bytes never reach the model cache."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from node_service.cache import ArtifactRejected, ModelCache
from noderr_protocol.models import ModelManifest, TensorSpec
from tests.support.node import mlp_onnx


def manifest_for(data: bytes, version: int = 1) -> ModelManifest:
    return ModelManifest(
        name="mlp", version=version, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data),
        inputs=[TensorSpec(name="x", dtype="float32", shape=[None, 32])],
        outputs=[TensorSpec(name="scores", dtype="float32", shape=[None, 4])],
        opset=17, created_at=datetime.now(UTC))


@pytest.fixture
def presigned(s3_server, s3_bucket):
    client = s3_server.client()

    def put(key: str, data: bytes) -> str:
        client.put_object(Bucket=s3_bucket, Key=key, Body=data)
        return client.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": key},
                                             ExpiresIn=300)

    return put


def test_download_verifies_and_renames_into_the_cache(tmp_path, presigned):
    data = mlp_onnx(width=64)
    cache = ModelCache(tmp_path)
    out = cache.fetch(manifest_for(data), presigned("a.onnx", data), timeout=30)
    assert out.path == cache.artifact_path(manifest_for(data))
    assert out.path.read_bytes() == data
    assert out.downloaded_bytes == len(data) and out.resumed_from == 0
    assert not list(cache.downloads.iterdir())
    # A second fetch finds the verified artifact and downloads nothing.
    assert cache.fetch(manifest_for(data), "http://127.0.0.1:9/never", timeout=5).downloaded_bytes == 0


def test_interrupted_download_resumes_with_a_range_request(tmp_path, presigned):
    data = mlp_onnx(width=64)
    cache = ModelCache(tmp_path)
    cache.ensure()
    half = len(data) // 2
    cache.partial_path(manifest_for(data)).write_bytes(data[:half])
    out = cache.fetch(manifest_for(data), presigned("b.onnx", data), timeout=30)
    assert out.resumed_from == half
    assert out.downloaded_bytes == len(data) - half
    assert out.path.read_bytes() == data


def test_tampered_artifact_is_discarded_and_never_cached(tmp_path, presigned):
    data = mlp_onnx(width=64)
    tampered = bytearray(data)
    tampered[len(tampered) // 2] ^= 0xFF
    cache = ModelCache(tmp_path)
    with pytest.raises(ArtifactRejected) as info:
        cache.fetch(manifest_for(data), presigned("c.onnx", bytes(tampered)), timeout=30)
    assert info.value.reason == "sha256"
    assert not list(cache.models.glob("*.onnx"))
    # The bad bytes are gone too, so the next attempt starts clean instead of resuming them.
    assert not cache.partial_path(manifest_for(data)).exists()


def test_truncated_and_oversized_objects_are_rejected_by_size(tmp_path, presigned):
    data = mlp_onnx(width=64)
    cache = ModelCache(tmp_path)
    with pytest.raises(ArtifactRejected) as info:
        cache.fetch(manifest_for(data), presigned("d.onnx", data[:-100]), timeout=30)
    assert info.value.reason == "size" and "says" in str(info.value)
    with pytest.raises(ArtifactRejected) as info:
        cache.fetch(manifest_for(data), presigned("e.onnx", data + b"x" * 100), timeout=30)
    assert info.value.reason == "size"
    assert not list(cache.models.glob("*.onnx"))


def test_expired_or_forged_url_is_a_download_failure_not_a_crash(tmp_path, presigned):
    from node_service.cache import DownloadFailed

    data = mlp_onnx(width=64)
    url = presigned("f.onnx", data)
    forged = url.replace("Signature=", "Signature=00")
    with pytest.raises(DownloadFailed, match="HTTP 403"):
        ModelCache(tmp_path).fetch(manifest_for(data), forged, timeout=30)
