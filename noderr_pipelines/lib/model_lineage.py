"""The delivery-assets factory: one Dagster lineage per catalog model.

`model_lineage(spec)` builds, for one `ModelSpec` of the catalog, the assets

    [<p>_training →] <p>_onnx → (blocking checks) → <p>_package → <p>_s3_object → <p>_published

(`<p>` = the model's asset prefix), its asset checks and its job `publish_<p>_job`. Every model
has its own asset keys, so its own materialization history, metadata plots over versions
(version, bytes, accuracy) and check results: a model whose checks fail turns only its own lineage
red, and the blocking checks keep it out of packaging, S3 and the beacon.

Sources: `training` runs a recipe from `noderr_core.modelstore.reference.TRAINERS` (the ONNX is
measured against the source model: parity + hold-out accuracy through onnxruntime); `onnx` reads
the ML team's file (local path or s3:// URI) and gates on the metrics the catalog declares.
"""


import time
from dataclasses import dataclass

import dagster as dg

from noderr_core.audit import Actor
from noderr_core.modelstore import checks, delivery, reference
from noderr_core.modelstore.objects import read_model_source
from noderr_core.modelstore.packaging import ModelCandidate, sha256_hex
from noderr_pipelines.lib.model_catalog import ModelSpec
from noderr_pipelines.lib.model_resources import (
    ModelBucketResource,
    ModelQualityPolicy,
    ModelSignerResource,
)
from noderr_pipelines.resources import DatabaseResource

GROUP = "models"
# S3 steps retry with backoff: a store that is restarting should not fail a publish.
S3_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@dataclass(frozen=True)
class ModelLineage:
    spec: ModelSpec
    assets: list[dg.AssetsDefinition]
    checks: list[dg.AssetChecksDefinition]
    job: object  # the unresolved asset job `publish_<prefix>_job`

    @property
    def published_key(self) -> dg.AssetKey:
        return published_asset_key(self.spec)


def published_asset_key(spec: "ModelSpec | str") -> dg.AssetKey:
    """The asset whose materializations are the model's versions and observations its rollout.

    Takes a spec or a beacon model name (the prefix is the name with '-' → '_').
    """
    prefix = spec.asset_prefix if isinstance(spec, ModelSpec) else spec.replace("-", "_")
    return dg.AssetKey(f"{prefix}_published")


def publish_job_name(spec: ModelSpec) -> str:
    return f"publish_{spec.asset_prefix}_job"


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _check_result(outcome: checks.CheckOutcome,
                  severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
                  ) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=outcome.passed, severity=severity,
                               description=outcome.description, metadata=outcome.metadata)


def _accuracy_floor(spec: ModelSpec, policy: ModelQualityPolicy) -> float:
    return spec.accuracy_floor if spec.accuracy_floor is not None else policy.accuracy_floor


def model_lineage(spec: ModelSpec) -> ModelLineage:
    tags = {"model": spec.name}
    if spec.source.training is not None:
        candidate_assets, candidate_checks = _trained_candidate(spec, tags)
    else:
        candidate_assets, candidate_checks = _onnx_file_candidate(spec, tags)
    onnx_asset = candidate_assets[-1]
    candidate_checks.extend(_common_checks(spec, onnx_asset))
    delivery_assets = _delivery_assets(spec, tags)
    assets = [*candidate_assets, *delivery_assets]
    job = dg.define_asset_job(
        publish_job_name(spec),
        selection=dg.AssetSelection.assets(*assets),
        description=f"Check, package, upload and publish (staged) {spec.name} from its "
                    "catalog source.",
        tags={"noderr/model": spec.name},
    )
    return ModelLineage(spec=spec, assets=assets, checks=candidate_checks, job=job)


def _trained_candidate(spec: ModelSpec, tags: dict[str, str]):
    p = spec.asset_prefix
    trainer = reference.TRAINERS[spec.source.training]

    @dg.asset(name=f"{p}_training", group_name=GROUP, kinds={"scikit-learn"}, tags=tags,
              description=f"{spec.name}: training recipe `{spec.source.training}` "
                          "(bundled data, fixed seed, with a hold-out set).")
    def training() -> dg.MaterializeResult:
        started = time.perf_counter()
        trained = trainer()
        return dg.MaterializeResult(
            value=trained,
            metadata={
                "train_rows": trained.train_rows,
                "holdout_rows": len(trained.y_holdout),
                "holdout_accuracy": trained.metrics["holdout_accuracy"],
                "duration_ms": _elapsed_ms(started),
            },
        )

    @dg.asset(name=f"{p}_onnx", group_name=GROUP, kinds={"onnx"}, tags=tags,
              ins={"trained": dg.AssetIn(f"{p}_training")},
              description=f"{spec.name} exported with skl2onnx (plain label + probability "
                          "tensors), hold-out accuracy measured through onnxruntime.")
    def onnx_model(context: dg.AssetExecutionContext, trained) -> dg.MaterializeResult:
        started = time.perf_counter()
        onnx_bytes = reference.export_to_onnx(trained.estimator, trained.x_holdout.shape[1],
                                              spec.name)
        accuracy = checks.holdout_accuracy(onnx_bytes, trained.x_holdout, trained.y_holdout)
        context.log.info(f"{spec.name}: exported {len(onnx_bytes)} bytes of ONNX, "
                         f"hold-out accuracy {accuracy:.4f}")
        candidate = ModelCandidate(
            model_name=spec.name, onnx_bytes=onnx_bytes,
            source=f"training:{spec.source.training}",
            metrics={"holdout_accuracy": accuracy}, description=spec.description,
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

    @dg.asset_check(asset=onnx_model, name="matches_source_model", blocking=True,
                    additional_ins={"trained": dg.AssetIn(f"{p}_training")})
    def matches_source_model(onnx_model, trained,
                             quality_policy: ModelQualityPolicy) -> dg.AssetCheckResult:
        """ONNX labels equal the source model's and probabilities agree within the tolerance."""
        return _check_result(checks.check_parity(
            onnx_model.onnx_bytes, trained.estimator, trained.x_holdout,
            atol=quality_policy.parity_atol))

    return [training, onnx_model], [matches_source_model]


def _onnx_file_candidate(spec: ModelSpec, tags: dict[str, str]):
    p = spec.asset_prefix
    source = spec.source.onnx

    @dg.asset(name=f"{p}_onnx", group_name=GROUP, kinds={"onnx"}, tags=tags,
              retry_policy=S3_RETRY_POLICY,
              description=f"{spec.name}: the ML team's ONNX file at {source}.")
    def onnx_model(context: dg.AssetExecutionContext,
                   model_bucket: ModelBucketResource) -> dg.MaterializeResult:
        started = time.perf_counter()
        client = model_bucket.get_client() if source.startswith("s3://") else None
        onnx_bytes = read_model_source(source, client)
        context.log.info(f"{spec.name}: read {len(onnx_bytes)} bytes from {source}")
        candidate = ModelCandidate(
            model_name=spec.name, onnx_bytes=onnx_bytes, source=source,
            metrics=dict(spec.metrics), description=spec.description,
        )
        return dg.MaterializeResult(
            value=candidate,
            metadata={"source": source, "bytes": len(onnx_bytes),
                      "sha256": sha256_hex(onnx_bytes), "duration_ms": _elapsed_ms(started)},
        )

    @dg.asset_check(asset=onnx_model, name="runs", blocking=True)
    def runs(onnx_model) -> dg.AssetCheckResult:
        """onnxruntime loads the model and runs one row of zeros through it."""
        return _check_result(checks.check_runs(onnx_model.onnx_bytes))

    return [onnx_model], [runs]


def _common_checks(spec: ModelSpec, onnx_asset: dg.AssetsDefinition) -> list:
    @dg.asset_check(asset=onnx_asset, name="graph_valid", blocking=True)
    def graph_valid(onnx_model) -> dg.AssetCheckResult:
        """onnx.checker accepts the graph (full check with shape inference)."""
        return _check_result(checks.check_onnx_graph(onnx_model.onnx_bytes))

    @dg.asset_check(asset=onnx_asset, name="accuracy_floor", blocking=True)
    def accuracy_floor(onnx_model, quality_policy: ModelQualityPolicy) -> dg.AssetCheckResult:
        """Hold-out accuracy meets the catalog's floor (a warning when the file declares none)."""
        value = onnx_model.metrics.get("holdout_accuracy")
        if value is None:
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.WARN,
                description="no holdout_accuracy declared in the catalog: floor not checked")
        return _check_result(checks.check_metric_floor(
            "holdout_accuracy", value, _accuracy_floor(spec, quality_policy)))

    result = [graph_valid, accuracy_floor]
    if spec.signature is not None:
        inputs = [t.model_dump() for t in spec.signature.inputs]
        outputs = [t.model_dump() for t in spec.signature.outputs]

        @dg.asset_check(asset=onnx_asset, name="signature", blocking=True)
        def signature(onnx_model) -> dg.AssetCheckResult:
            """Input and output tensors are the ones the catalog declares."""
            return _check_result(checks.check_signature(onnx_model.onnx_bytes, inputs, outputs))

        result.append(signature)
    return result


def _delivery_assets(spec: ModelSpec, tags: dict[str, str]) -> list[dg.AssetsDefinition]:
    p = spec.asset_prefix

    @dg.asset(name=f"{p}_package", group_name=GROUP, kinds={"onnx"}, tags=tags,
              ins={"candidate": dg.AssetIn(f"{p}_onnx")})
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

    @dg.asset(name=f"{p}_s3_object", group_name=GROUP, kinds={"s3"}, tags=tags,
              ins={"packaged": dg.AssetIn(f"{p}_package")}, retry_policy=S3_RETRY_POLICY)
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

    @dg.asset(name=f"{p}_published", group_name=GROUP, kinds={"sql"}, tags=tags,
              ins={"stored": dg.AssetIn(f"{p}_s3_object")}, retry_policy=S3_RETRY_POLICY,
              description=f"{spec.name} in the registry as `staged`; its observations record "
                          "promotions, canaries and rollbacks (promote_model_job, "
                          "rollback_model_job).")
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
                **{f"metric_{k}": v for k, v in (row.manifest.get("metrics") or {}).items()},
                "newly_published": outcome.created,
                "renumbered": outcome.renumbered,
                "duration_ms": _elapsed_ms(started),
            }
        return dg.MaterializeResult(metadata=metadata)

    return [package, s3_object, published]
