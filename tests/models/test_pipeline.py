"""The `models` lineages materialized against SeaweedFS and SQLite/PostgreSQL (no mocks).

One lineage per catalog model: each has its own assets, checks, history and rollout observations.
"""

from __future__ import annotations

import dagster as dg
import pytest

from noderr_core.db import make_engine, make_session_factory
from noderr_core.keys import model_public_key_hex
from noderr_core.modelstore import list_model_versions, signed_manifest_of
from noderr_core.settings import Settings
from noderr_core.tables import AuditLogEntry
from noderr_pipelines.defs.models import build_models_defs
from noderr_pipelines.defs.models import defs as models_defs
from noderr_pipelines.defs.models.jobs import promote_model_job, rollback_model_job
from noderr_pipelines.lib.model_catalog import CatalogError, ModelCatalog, load_model_catalog
from noderr_pipelines.lib.model_lineage import model_lineage
from noderr_pipelines.lib.model_resources import (
    ModelBucketResource,
    ModelQualityPolicy,
    ModelSignerResource,
)
from noderr_pipelines.resources import DatabaseResource
from noderr_protocol.verify import verify_model_bytes, verify_signed_manifest
from tests.support.models import onnx_variant

IRIS_SIGNATURE = {
    "inputs": [{"name": "input", "dtype": "float32", "shape": [None, 4]}],
    "outputs": [{"name": "label", "dtype": "int64"}, {"name": "probabilities", "dtype": "float32"}],
}
REFERENCE_SELECTION = [
    "iris_classifier_training", "iris_classifier_onnx", "iris_classifier_package",
    "iris_classifier_s3_object", "iris_classifier_published",
]


def iris_spec(**overrides) -> dict:
    return {"name": "iris-classifier", "source": {"training": "iris-logistic-regression"},
            "accuracy_floor": 0.9, "signature": IRIS_SIGNATURE, **overrides}


def onnx_spec(name: str, uri: str, accuracy: float = 0.97) -> dict:
    return {"name": name, "source": {"onnx": uri}, "accuracy_floor": 0.9,
            "metrics": {"holdout_accuracy": accuracy}, "signature": IRIS_SIGNATURE}


def definitions(*specs: dict):
    catalog = ModelCatalog.model_validate({"models": list(specs)})
    lineages = [model_lineage(spec) for spec in catalog.models]
    return ([a for lin in lineages for a in lin.assets], [c for lin in lineages for c in lin.checks])


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


def run(resources, defs, selection, *, instance=None, **overrides):
    assets, checks = defs
    return dg.materialize([*assets, *checks], selection=selection, instance=instance,
                          resources={**resources, **overrides}, raise_on_error=False)


def materialized_metadata(result) -> dict:
    return {e.event_specific_data.materialization.asset_key.path[-1]:
            e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}


def test_reference_lineage_publishes_a_signed_verified_staged_version(pipeline):
    resources, sessions, client, bucket = pipeline
    defs = definitions(iris_spec())
    result = run(resources, defs, REFERENCE_SELECTION)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"graph_valid": True, "matches_source_model": True, "accuracy_floor": True,
                      "signature": True}
    meta = materialized_metadata(result)
    assert meta["iris_classifier_s3_object"]["uploaded"].value is True
    assert meta["iris_classifier_published"]["version"].value == 1
    assert meta["iris_classifier_published"]["metric_holdout_accuracy"].value >= 0.9
    for asset in REFERENCE_SELECTION:
        assert "duration_ms" in meta[asset]

    with sessions() as s:
        (row,) = list_model_versions(s, "iris-classifier")
        assert row.status == "staged" and row.version == 1
        manifest = verify_signed_manifest(signed_manifest_of(row), model_public_key_hex(Settings()))
        assert [t.name for t in manifest.outputs] == ["label", "probabilities"]
        data = client.get_object(Bucket=bucket, Key=row.object_key)["Body"].read()
        verify_model_bytes(manifest, data)
        assert s.query(AuditLogEntry).filter_by(action="model.publish", actor_type="pipeline").count() == 1

    # Re-materializing the same bytes uploads nothing and publishes nothing new.
    again = run(resources, defs, REFERENCE_SELECTION)
    assert again.success
    meta = materialized_metadata(again)
    assert meta["iris_classifier_s3_object"]["uploaded"].value is False
    assert meta["iris_classifier_published"]["newly_published"].value is False
    with sessions() as s:
        assert len(list_model_versions(s, "iris-classifier")) == 1


def test_failing_check_blocks_packaging_and_publishing(pipeline):
    resources, sessions, client, bucket = pipeline
    result = run(resources, definitions(iris_spec(accuracy_floor=0.999)), REFERENCE_SELECTION)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["accuracy_floor"] is False
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "iris_classifier_package" not in materialized
    assert "iris_classifier_published" not in materialized
    with sessions() as s:
        assert list_model_versions(s) == []
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_wrong_signature_is_refused_before_packaging(pipeline):
    resources, sessions, _, _ = pipeline
    wrong = {"inputs": [{"name": "features", "dtype": "float32"}],
             "outputs": IRIS_SIGNATURE["outputs"]}
    result = run(resources, definitions(iris_spec(signature=wrong)), REFERENCE_SELECTION)
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "signature")
    assert evaluation.passed is False and "['input'], expected ['features']" in evaluation.description
    with sessions() as s:
        assert list_model_versions(s) == []


def test_two_models_have_independent_lineages_checks_and_history(pipeline, tmp_path):
    """A failing model does not block or redden another: separate keys, checks and history."""
    resources, sessions, _, _ = pipeline
    garbage = tmp_path / "fraud.onnx"
    garbage.write_bytes(b"definitely not onnx")
    defs = definitions(iris_spec(), onnx_spec("fraud-scorer", str(garbage)))
    fraud = ["fraud_scorer_onnx", "fraud_scorer_package", "fraud_scorer_s3_object",
             "fraud_scorer_published"]
    instance = dg.DagsterInstance.ephemeral()
    result = run(resources, defs, [*REFERENCE_SELECTION, *fraud], instance=instance)

    evaluations = {(e.asset_key.path[-1], e.check_name): e.passed
                   for e in result.get_asset_check_evaluations()}
    assert evaluations[("fraud_scorer_onnx", "graph_valid")] is False
    assert all(passed for (asset, _), passed in evaluations.items() if asset.startswith("iris"))
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert set(REFERENCE_SELECTION) <= materialized
    assert not materialized & set(fraud[1:])

    # History per model: the iris lineage gets a second materialization, fraud-scorer none.
    assert run(resources, defs, REFERENCE_SELECTION, instance=instance).success
    iris_history = instance.fetch_materializations(dg.AssetKey("iris_classifier_published"), limit=10)
    fraud_history = instance.fetch_materializations(dg.AssetKey("fraud_scorer_published"), limit=10)
    assert len(iris_history.records) == 2 and fraud_history.records == []
    with sessions() as s:
        assert [r.name for r in list_model_versions(s)] == ["iris-classifier"]


def test_onnx_file_model_new_versions_promote_canary_and_rollback_are_observed(pipeline):
    resources, sessions, client, bucket = pipeline
    uri = f"s3://{bucket}/incoming/fraud.onnx"
    defs = definitions(onnx_spec("fraud-scorer", uri))
    selection = ["fraud_scorer_onnx", "fraud_scorer_package", "fraud_scorer_s3_object",
                 "fraud_scorer_published"]
    instance = dg.DagsterInstance.ephemeral()
    client.put_object(Bucket=bucket, Key="incoming/fraud.onnx", Body=onnx_variant("fraud-v1"))
    assert run(resources, defs, selection, instance=instance).success
    # The ML team replaces the file: version 2, with version 1 as its parent.
    client.put_object(Bucket=bucket, Key="incoming/fraud.onnx", Body=onnx_variant("fraud-v2"))
    assert run(resources, defs, selection, instance=instance).success
    with sessions() as s:
        rows = list_model_versions(s, "fraud-scorer")
        assert [(r.version, r.parent_version, r.status) for r in rows] == [(2, 1, "staged"),
                                                                         (1, None, "staged")]

    jobs = dg.Definitions(jobs=[promote_model_job, rollback_model_job], resources=resources)
    promote = jobs.resolve_job_def("promote_model_job")
    rollback = jobs.resolve_job_def("rollback_model_job")

    def promote_to(version, status, percent=None):
        cfg = {"model_name": "fraud-scorer", "version": version, "to_status": status}
        if percent is not None:
            cfg["rollout_percent"] = percent
        result = promote.execute_in_process(
            run_config={"ops": {"promote_model_version_op": {"config": cfg}}}, instance=instance,
            raise_on_error=False)
        return result

    def rollout():
        (record,) = instance.fetch_observations(dg.AssetKey("fraud_scorer_published"), limit=1).records
        return {k: v.value for k, v in record.asset_observation.metadata.items()}

    assert promote_to(1, "active").success
    assert promote_to(2, "canary", 25).success
    state = rollout()
    assert (state["active_version"], state["canary_version"], state["canary_percent"]) == (1, 2, 25)
    assert state["rollout"] == "v1 active; v2 canary 25%"
    canary_sequence = state["beacon_sequence"]
    assert promote_to(2, "active").success
    state = rollout()
    assert state["active_version"] == 2 and "canary_version" not in state
    assert state["beacon_sequence"] > canary_sequence
    # A refused promotion records nothing.
    assert not promote_to(2, "retired").success
    assert rollout() == state

    assert rollback.execute_in_process(
        run_config={"ops": {"rollback_model_op": {"config": {"model_name": "fraud-scorer"}}}},
        instance=instance).success
    state = rollout()
    assert (state["action"], state["active_version"], state["rolled_back_versions"]) == (
        "rollback", 1, "v2")
    assert state["rollout"] == "v1 active; rolled back v2"
    observations = instance.fetch_observations(dg.AssetKey("fraud_scorer_published"), limit=10)
    assert [r.asset_observation.metadata["action"].value for r in reversed(observations.records)] \
        == ["promote:active", "promote:canary", "promote:active", "rollback"]


def test_catalog_file_adds_a_model_without_code(tmp_path, monkeypatch):
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        "  - name: churn-model\n"
        "    source: {onnx: s3://ml-team/churn.onnx}\n"
        "    metrics: {holdout_accuracy: 0.93}\n")
    monkeypatch.setenv("NODERR_MODEL_CATALOG", str(path))
    defs = dg.Definitions.merge(build_models_defs(load_model_catalog()),
                                dg.Definitions(resources={"database": DatabaseResource()}))
    assert defs.resolve_job_def("publish_churn_model_job").name == "publish_churn_model_job"
    keys = {k.path[-1] for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"churn_model_onnx", "churn_model_published"} <= keys and "iris_classifier_onnx" not in keys

    path.write_text("models:\n  - name: Bad Name\n    source: {training: no-such-recipe}\n")
    with pytest.raises(CatalogError) as refused:
        load_model_catalog()
    assert str(path) in str(refused.value) and "Bad Name" in str(refused.value)
    assert "unknown training recipe 'no-such-recipe'" in str(refused.value)
    path.write_text("models:\n  - {name: a-b, source: {training: iris-decision-tree}}\n"
                    "  - {name: a_b, source: {training: iris-decision-tree}}\n")
    with pytest.raises(CatalogError, match="declared twice"):
        load_model_catalog()


def test_whole_project_definitions_load_with_one_lineage_per_catalog_model():
    from noderr_pipelines.definitions import defs

    keys = {k.path[-1] for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert set(REFERENCE_SELECTION) <= keys
    assert {"iris_tree_training", "iris_tree_published"} <= keys
    for job in ("publish_iris_classifier_job", "publish_iris_tree_job", "promote_model_job",
                "rollback_model_job"):
        assert defs.resolve_job_def(job).name == job
    assert models_defs.resources["model_bucket"].bucket == ""
