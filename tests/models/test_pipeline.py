"""The `models` asset group materialized against SeaweedFS and SQLite/PostgreSQL (no mocks)."""

from __future__ import annotations

import dagster as dg
import pytest

from noderr_core.db import make_engine, make_session_factory
from noderr_core.keys import model_public_key_hex
from noderr_core.modelstore import list_model_versions, signed_manifest_of
from noderr_core.tables import AuditLogEntry
from noderr_core.settings import Settings
from noderr_pipelines.defs.models import defs as models_defs
from noderr_pipelines.defs.models.jobs import promote_model_job, rollback_model_job
from noderr_pipelines.defs.models.assets import model_asset_checks, model_assets
from noderr_pipelines.defs.models.resources import (
    ModelBucketResource,
    ModelQualityPolicy,
    ModelSignerResource,
)
from noderr_pipelines.resources import DatabaseResource
from noderr_protocol.verify import verify_model_bytes, verify_signed_manifest
from tests.support.models import onnx_variant

REFERENCE_SELECTION = [
    "iris_classifier_training", "iris_classifier_onnx", "iris_classifier_package",
    "iris_classifier_s3_object", "iris_classifier_published",
]


@pytest.fixture
def pipeline(db_url, s3_server, s3_bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("NODERR_STATE_DIR", str(tmp_path / "state"))
    resources = {
        "database": DatabaseResource(database_url=db_url),
        "model_bucket": ModelBucketResource(
            endpoint_url=s3_server.endpoint_url, aws_access_key_id=s3_server.access_key_id,
            aws_secret_access_key=s3_server.secret_access_key, bucket=s3_bucket,
        ),
        "model_signer": ModelSignerResource(),
        "quality_policy": ModelQualityPolicy(),
    }
    engine = make_engine(db_url)
    yield resources, make_session_factory(engine), s3_server.client(), s3_bucket
    engine.dispose()


def run(resources, selection, *, run_config=None, **overrides):
    return dg.materialize(
        [*model_assets, *model_asset_checks], selection=selection,
        resources={**resources, **overrides}, run_config=run_config, raise_on_error=False,
    )


def test_reference_group_publishes_a_signed_verified_staged_version(pipeline):
    resources, sessions, client, bucket = pipeline
    result = run(resources, REFERENCE_SELECTION)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"iris_onnx_graph_valid": True, "iris_onnx_matches_source_model": True,
                      "iris_onnx_accuracy_floor": True}
    meta = {m.asset_key.path[-1]: m.metadata for m in result.get_asset_materialization_events()
            and [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]}
    assert meta["iris_classifier_s3_object"]["uploaded"].value is True
    assert meta["iris_classifier_published"]["version"].value == 1
    for asset in REFERENCE_SELECTION:
        assert "duration_ms" in meta[asset]

    with sessions() as s:
        (row,) = list_model_versions(s, "iris-classifier")
        assert row.status == "staged" and row.version == 1
        manifest = verify_signed_manifest(
            signed_manifest_of(row), model_public_key_hex(Settings())
        )
        assert [t.name for t in manifest.outputs] == ["label", "probabilities"]
        assert manifest.metrics["holdout_accuracy"] >= 0.9
        data = client.get_object(Bucket=bucket, Key=row.object_key)["Body"].read()
        verify_model_bytes(manifest, data)
        stored_manifest = client.get_object(Bucket=bucket, Key=row.manifest_key)["Body"].read()
        assert verify_signed_manifest(stored_manifest, model_public_key_hex(Settings())) == manifest
        assert s.query(AuditLogEntry).filter_by(action="model.publish", actor_type="pipeline").count() == 1

    # Re-materializing the same bytes uploads nothing and publishes nothing new.
    again = run(resources, REFERENCE_SELECTION)
    assert again.success
    meta = {e.event_specific_data.materialization.asset_key.path[-1]:
            e.event_specific_data.materialization.metadata
            for e in again.get_asset_materialization_events()}
    assert meta["iris_classifier_s3_object"]["uploaded"].value is False
    assert meta["iris_classifier_published"]["newly_published"].value is False
    with sessions() as s:
        assert len(list_model_versions(s, "iris-classifier")) == 1


def test_failing_check_blocks_packaging_and_publishing(pipeline):
    resources, sessions, client, bucket = pipeline
    result = run(resources, REFERENCE_SELECTION,
                 quality_policy=ModelQualityPolicy(accuracy_floor=0.99))
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["iris_onnx_accuracy_floor"] is False
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "iris_classifier_package" not in materialized
    assert "iris_classifier_published" not in materialized
    with sessions() as s:
        assert list_model_versions(s) == []
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_ml_team_onnx_file_goes_through_the_same_path(pipeline, tmp_path):
    resources, sessions, client, bucket = pipeline
    path = tmp_path / "fraud.onnx"
    path.write_bytes(onnx_variant("fraud"))
    config = {"ops": {"onnx_file_model": {"config": {
        "model_name": "fraud-scorer", "source": str(path), "metrics": {"holdout_accuracy": 0.97}}}}}
    selection = ["onnx_file_model", "onnx_file_package", "onnx_file_s3_object", "onnx_file_published"]
    assert run(resources, selection, run_config=config).success
    # A second file from S3 becomes version 2 with version 1 as its parent.
    client.put_object(Bucket=bucket, Key="incoming/fraud-v2.onnx", Body=onnx_variant("fraud2"))
    config["ops"]["onnx_file_model"]["config"]["source"] = f"s3://{bucket}/incoming/fraud-v2.onnx"
    assert run(resources, selection, run_config=config).success
    with sessions() as s:
        rows = list_model_versions(s, "fraud-scorer")
        assert [(r.version, r.parent_version, r.status) for r in rows] == [(2, 1, "staged"),
                                                                         (1, None, "staged")]

    # A file that is not ONNX fails its blocking check: nothing published.
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not onnx")
    config["ops"]["onnx_file_model"]["config"]["source"] = str(bad)
    result = run(resources, selection, run_config=config)
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()}[
        "onnx_file_graph_valid"] is False
    with sessions() as s:
        assert len(list_model_versions(s, "fraud-scorer")) == 2


def test_promote_and_rollback_jobs(pipeline):
    resources, sessions, _, _ = pipeline
    assert run(resources, REFERENCE_SELECTION).success
    defs = dg.Definitions(jobs=[promote_model_job, rollback_model_job], resources=resources)
    promote = defs.resolve_job_def("promote_model_job")
    rollback = defs.resolve_job_def("rollback_model_job")

    def promote_cfg(**cfg):
        return {"ops": {"promote_model_version_op": {"config": cfg}}}

    assert promote.execute_in_process(run_config=promote_cfg(
        model_name="iris-classifier", version=1, to_status="canary", rollout_percent=25)).success
    assert promote.execute_in_process(run_config=promote_cfg(
        model_name="iris-classifier", version=1, to_status="active")).success
    refused = promote.execute_in_process(
        run_config=promote_cfg(model_name="iris-classifier", version=1, to_status="retired"),
        raise_on_error=False)
    assert not refused.success
    failure = refused.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "roll back" in failure.description
    # Nothing earlier to roll back to: refused with a message, state untouched.
    result = rollback.execute_in_process(
        run_config={"ops": {"rollback_model_op": {"config": {"model_name": "iris-classifier"}}}},
        raise_on_error=False)
    assert not result.success
    with sessions() as s:
        (row,) = list_model_versions(s, "iris-classifier")
        assert (row.status, row.rollout_percent) == ("active", 100)
        actions = [a.action for a in s.query(AuditLogEntry).order_by(AuditLogEntry.id)]
        assert actions == ["model.publish", "model.promote", "model.promote"]


def test_whole_project_definitions_load_with_the_models_group():
    from noderr_pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.path[-1] for k in graph.get_all_asset_keys()}
    assert set(REFERENCE_SELECTION) <= keys
    for job in ("publish_reference_model_job", "publish_onnx_file_job", "promote_model_job",
                "rollback_model_job"):
        assert defs.resolve_job_def(job).name == job
    assert models_defs.resources["model_bucket"].bucket == ""
