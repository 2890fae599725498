"""Helpers for the models tests: real ONNX bytes and a publish path without Dagster."""

from __future__ import annotations

from functools import lru_cache

from noderr_core.audit import Actor
from noderr_core.modelstore import delivery, reference


@lru_cache(maxsize=1)
def reference_onnx() -> bytes:
    trained = reference.train_reference_model()
    return reference.export_to_onnx(trained.estimator, trained.x_holdout.shape[1])


def onnx_variant(tag: str) -> bytes:
    """A valid, distinct ONNX file (same graph, different doc string → different sha256)."""
    import onnx

    model = onnx.load_model_from_string(reference_onnx())
    model.doc_string = f"variant {tag}"
    return model.SerializeToString()


def publish_bytes(session, client, bucket, signing_key, *, name="iris-classifier",
                  data: bytes | None = None, actor: Actor | None = None):
    """package → store → publish, as the Dagster assets do; returns the PublishOutcome."""
    data = data if data is not None else reference_onnx()
    packaged = delivery.package_model(
        session, name=name, onnx_bytes=data, source="test", metrics={"holdout_accuracy": 0.95},
        signing_key=signing_key,
    )
    stored = delivery.store_model_bytes(client, bucket, packaged)
    return delivery.publish_stored_model(
        session, client, bucket=bucket, signed_manifest=packaged.signed_manifest,
        object_key=stored.key, source="test", actor=actor or Actor.system("test"),
        signing_key=signing_key,
    )
