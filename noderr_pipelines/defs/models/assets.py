"""The `models` asset group: train → ONNX → (blocking checks) → package → S3 → published (staged).

Two sources share one delivery path:
- the reference model (`iris_classifier_*`): trained on scikit-learn's bundled iris data;
- the ML team's own ONNX file (`onnx_file_*`): run config names a local path or an s3:// URI.
Quality gates are blocking asset checks on the ONNX asset: when one fails, packaging, upload and
publishing do not run, so a failing model never reaches the beacon. Every asset reports bytes,
sha256, metrics and durations as metadata.
"""


import re
import time

import dagster as dg
from pydantic import Field

from noderr_core.audit import Actor
from noderr_core.modelstore import checks, delivery, reference
from noderr_core.modelstore.objects import read_model_source
from noderr_core.modelstore.packaging import ModelCandidate, sha256_hex
from noderr_pipelines.defs.models.resources import (
    ModelBucketResource,
    ModelQualityPolicy,
    ModelSignerResource,
)
from noderr_pipelines.resources import DatabaseResource

GROUP = "models"
# Same rule as noderr_protocol.models.ModelManifest.name.
MODEL_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# S3 steps retry with backoff: a store that is restarting should not fail a publish.
S3_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


# --- reference model ------------------------------------------------------------------------


@dg.asset(group_name=GROUP, kinds={"scikit-learn"})
def iris_classifier_training() -> dg.MaterializeResult:
    """Logistic regression on scikit-learn's bundled iris data (no download), with a hold-out set."""
    started = time.perf_counter()
    trained = reference.train_reference_model()
    return dg.MaterializeResult(
        value=trained,
        metadata={
            "train_rows": trained.train_rows,
            "holdout_rows": len(trained.y_holdout),
            "holdout_accuracy": trained.metrics["holdout_accuracy"],
            "duration_ms": _elapsed_ms(started),
        },
    )


@dg.asset(group_name=GROUP, kinds={"onnx"})
def iris_classifier_onnx(iris_classifier_training) -> dg.MaterializeResult:
    """The reference model exported with skl2onnx (opset 17, plain label + probability tensors)."""
    started = time.perf_counter()
    trained = iris_classifier_training
    onnx_bytes = reference.export_to_onnx(trained.estimator, trained.x_holdout.shape[1])
    accuracy = checks.holdout_accuracy(onnx_bytes, trained.x_holdout, trained.y_holdout)
    candidate = ModelCandidate(
        model_name=reference.REFERENCE_MODEL_NAME,
        onnx_bytes=onnx_bytes,
        source="reference:sklearn.datasets.load_iris",
        metrics={"holdout_accuracy": accuracy},
        description="Iris species classifier (logistic regression), the Noderr reference model",
    )
    return dg.MaterializeResult(
        value=candidate,
        metadata={
            "bytes": len(onnx_bytes),
            "sha256": sha256_hex(onnx_bytes),
            "opset": reference.TARGET_OPSET[""],
            "holdout_accuracy_onnx": accuracy,
            "duration_ms": _elapsed_ms(started),
        },
    )


def _check_result(outcome: checks.CheckOutcome,
                  severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata=outcome.metadata,
    )


@dg.asset_check(asset=iris_classifier_onnx, blocking=True)
def iris_onnx_graph_valid(iris_classifier_onnx) -> dg.AssetCheckResult:
    """onnx.checker accepts the graph (full check with shape inference)."""
    return _check_result(checks.check_onnx_graph(iris_classifier_onnx.onnx_bytes))


@dg.asset_check(
    asset=iris_classifier_onnx,
    blocking=True,
    additional_ins={"training": dg.AssetIn("iris_classifier_training")},
)
def iris_onnx_matches_source_model(
    iris_classifier_onnx, training, quality_policy: ModelQualityPolicy
) -> dg.AssetCheckResult:
    """ONNX labels equal the scikit-learn model's and probabilities agree within the tolerance."""
    return _check_result(
        checks.check_parity(
            iris_classifier_onnx.onnx_bytes, training.estimator, training.x_holdout,
            atol=quality_policy.parity_atol,
        )
    )


@dg.asset_check(asset=iris_classifier_onnx, blocking=True)
def iris_onnx_accuracy_floor(
    iris_classifier_onnx, quality_policy: ModelQualityPolicy
) -> dg.AssetCheckResult:
    """Hold-out accuracy measured through onnxruntime meets the configured floor."""
    return _check_result(
        checks.check_metric_floor(
            "holdout_accuracy", iris_classifier_onnx.metrics["holdout_accuracy"],
            quality_policy.accuracy_floor,
        )
    )


# --- the ML team's own ONNX files -----------------------------------------------------------


class OnnxFileConfig(dg.Config):
    model_name: str = Field(description="model name in the beacon, e.g. fraud-scorer (a-z, 0-9, -, _)")
    source: str = Field(description="local path or s3://bucket/key of the .onnx file")
    description: str = ""
    metrics: dict[str, float] = Field(
        default_factory=dict, description="metrics measured by the ML team, e.g. holdout_accuracy"
    )


@dg.asset(group_name=GROUP, kinds={"onnx"}, retry_policy=S3_RETRY_POLICY)
def onnx_file_model(config: OnnxFileConfig, model_bucket: ModelBucketResource) -> dg.MaterializeResult:
    """An ONNX file from the ML team (local path or s3:// URI), entering the same delivery path."""

    if not MODEL_NAME_RE.fullmatch(config.model_name):
        raise dg.Failure(
            description=f"model_name {config.model_name!r} is not valid: use 1-63 characters "
            "a-z, 0-9, '-' or '_', starting with a letter or digit",
            allow_retries=False,
        )
    started = time.perf_counter()
    client = model_bucket.get_client() if config.source.startswith("s3://") else None
    onnx_bytes = read_model_source(config.source, client)
    candidate = ModelCandidate(
        model_name=config.model_name,
        onnx_bytes=onnx_bytes,
        source=config.source,
        metrics=dict(config.metrics),
        description=config.description,
    )
    return dg.MaterializeResult(
        value=candidate,
        metadata={
            "model_name": config.model_name,
            "source": config.source,
            "bytes": len(onnx_bytes),
            "sha256": sha256_hex(onnx_bytes),
            "duration_ms": _elapsed_ms(started),
        },
    )


@dg.asset_check(asset=onnx_file_model, blocking=True)
def onnx_file_graph_valid(onnx_file_model) -> dg.AssetCheckResult:
    """onnx.checker accepts the graph (full check with shape inference)."""
    return _check_result(checks.check_onnx_graph(onnx_file_model.onnx_bytes))


@dg.asset_check(asset=onnx_file_model, blocking=True)
def onnx_file_runs(onnx_file_model) -> dg.AssetCheckResult:
    """onnxruntime loads the model and runs one row of zeros through it."""
    return _check_result(checks.check_runs(onnx_file_model.onnx_bytes))


@dg.asset_check(asset=onnx_file_model, blocking=True)
def onnx_file_accuracy_floor(onnx_file_model, quality_policy: ModelQualityPolicy) -> dg.AssetCheckResult:
    """The declared hold-out accuracy meets the floor (a warning when none is declared)."""
    value = onnx_file_model.metrics.get("holdout_accuracy")
    if value is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="no holdout_accuracy declared in the run config: floor not checked",
        )
    return _check_result(
        checks.check_metric_floor("holdout_accuracy", value, quality_policy.accuracy_floor)
    )


# --- delivery: package → S3 → published (one set per source) -------------------------------


def delivery_assets(prefix: str, candidate_asset: str) -> list[dg.AssetsDefinition]:
    """Package, upload and publish assets downstream of an ONNX candidate asset."""

    @dg.asset(name=f"{prefix}_package", group_name=GROUP, kinds={"onnx"},
              ins={"candidate": dg.AssetIn(candidate_asset)})
    def package(candidate, database: DatabaseResource,
                model_signer: ModelSignerResource) -> dg.MaterializeResult:
        """Manifest (name, monotonic version, sha256, size, tensors, opset, metrics), signed."""
        started = time.perf_counter()
        with database.session() as session:
            packaged = delivery.package_model(
                session, name=candidate.model_name, onnx_bytes=candidate.onnx_bytes,
                source=candidate.source, metrics=candidate.metrics,
                signing_key=model_signer.private_key(), description=candidate.description,
            )
        manifest = packaged.signed_manifest.manifest
        return dg.MaterializeResult(
            value=packaged,
            metadata={
                "model_name": manifest.name,
                "version": manifest.version,
                "parent_version": manifest.parent_version or 0,
                "bytes": manifest.size_bytes,
                "sha256": manifest.sha256,
                "key_id": packaged.signed_manifest.key_id,
                "already_published": packaged.reused,
                **{f"metric_{k}": v for k, v in manifest.metrics.items()},
                "duration_ms": _elapsed_ms(started),
            },
        )

    @dg.asset(name=f"{prefix}_s3_object", group_name=GROUP, kinds={"s3"},
              ins={"packaged": dg.AssetIn(f"{prefix}_package")}, retry_policy=S3_RETRY_POLICY)
    def s3_object(packaged, model_bucket: ModelBucketResource) -> dg.MaterializeResult:
        """The bytes at their content address, read back (size + sha256) before anything uses them."""
        started = time.perf_counter()
        outcome = delivery.store_model_bytes(
            model_bucket.get_client(), model_bucket.bucket_name(), packaged
        )
        return dg.MaterializeResult(
            value={"packaged": packaged, "bucket": outcome.bucket, "key": outcome.key},
            metadata={
                "bucket": outcome.bucket,
                "key": outcome.key,
                "bytes": outcome.size_bytes,
                "sha256": outcome.sha256,
                "uploaded": outcome.uploaded,
                "multipart_parts": outcome.parts,
                "verified": True,
                "duration_ms": _elapsed_ms(started),
            },
        )

    @dg.asset(name=f"{prefix}_published", group_name=GROUP, kinds={"sql"},
              ins={"stored": dg.AssetIn(f"{prefix}_s3_object")}, retry_policy=S3_RETRY_POLICY)
    def published(context: dg.AssetExecutionContext, stored, database: DatabaseResource,
                  model_bucket: ModelBucketResource,
                  model_signer: ModelSignerResource) -> dg.MaterializeResult:
        """The version in the registry as `staged` (promote it with promote_model_job)."""
        started = time.perf_counter()
        packaged = stored["packaged"]
        with database.session() as session:
            outcome = delivery.publish_stored_model(
                session, model_bucket.get_client(), bucket=stored["bucket"],
                signed_manifest=packaged.signed_manifest, object_key=stored["key"],
                source=packaged.source, actor=Actor.pipeline(context.run.run_id),
                signing_key=model_signer.private_key(),
            )
            row = outcome.model_version
            metadata = {
                "model_name": row.name,
                "version": row.version,
                "status": str(row.status),
                "sha256": row.sha256,
                "bytes": row.size_bytes,
                "newly_published": outcome.created,
                "renumbered": outcome.renumbered,
                "duration_ms": _elapsed_ms(started),
            }
        return dg.MaterializeResult(metadata=metadata)

    return [package, s3_object, published]


reference_delivery = delivery_assets("iris_classifier", "iris_classifier_onnx")
onnx_file_delivery = delivery_assets("onnx_file", "onnx_file_model")

model_assets = [iris_classifier_training, iris_classifier_onnx, onnx_file_model,
                *reference_delivery, *onnx_file_delivery]
model_asset_checks = [
    iris_onnx_graph_valid, iris_onnx_matches_source_model, iris_onnx_accuracy_floor,
    onnx_file_graph_valid, onnx_file_runs, onnx_file_accuracy_floor,
]
