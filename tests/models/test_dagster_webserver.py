"""The ML team's path through a running dagster-webserver (GraphQL), in the production storage layout.

One webserver, runs launched as separate processes (DefaultRunLauncher), step outputs in S3 through
the project's run IO manager and compute logs in S3 (dagster-aws), both against SeaweedFS; a model
catalog with two models (a training recipe and an ONNX file in S3). Asserted as the ML team sees it:
- each model's job publishes its own lineage;
- one step re-executed alone, in a fresh process, loads its input from S3 (no local storage);
- the run's logs are readable from the webserver after the local staging copy is gone;
- promote, canary and rollback show in the asset catalog as the model's rollout state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from noderr_core.db import make_engine, make_session_factory
from noderr_core.modelstore import list_model_versions
from noderr_demo.dagster_ui import DagsterUI
from noderr_local.process import free_port, stop_process, wait_for
from tests.support.models import onnx_variant

ROOT = Path(__file__).resolve().parents[2]

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
REEXECUTE = """
mutation Reexecute($params: ExecutionParams!) {
  launchRunReexecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
RUN_STATUS = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"""
RUN_EVENTS = """
query Events($runId: ID!) {
  logsForRun(runId: $runId) { __typename ... on EventConnection { events {
    __typename
    ... on MessageEvent { message stepKey }
    ... on LogsCapturedEvent { fileKey stepKeys }
  } } }
}"""
CAPTURED_LOGS = """
query Logs($logKey: [String!]!) { capturedLogs(logKey: $logKey) { stdout stderr } }"""
IRIS_SIGNATURE = {
    "inputs": [{"name": "input", "dtype": "float32", "shape": [None, 4]}],
    "outputs": [{"name": "label", "dtype": "int64"}, {"name": "probabilities", "dtype": "float32"}],
}


def dagster_home(tmp_path: Path, s3_server, bucket: str) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((ROOT / "dagster_home" / "dagster.yaml").read_text())
    # No daemon in this test: the webserver launches the run itself instead of queueing it.
    config["run_coordinator"] = {"module": "dagster.core.run_coordinator",
                                 "class": "DefaultRunCoordinator"}
    # The production compute-log setting (dagster.postgres.yaml), pointed at SeaweedFS.
    production = yaml.safe_load((ROOT / "dagster_home" / "dagster.postgres.yaml").read_text())
    config["compute_logs"] = production["compute_logs"]
    config["compute_logs"]["config"]["local_dir"] = str(tmp_path / "compute-log-staging")
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def write_catalog(path: Path, bucket: str) -> Path:
    path.write_text(yaml.safe_dump({"models": [
        {"name": "iris-classifier", "source": {"training": "iris-logistic-regression"},
         "accuracy_floor": 0.9, "signature": IRIS_SIGNATURE},
        {"name": "fraud-scorer", "source": {"onnx": f"s3://{bucket}/incoming/fraud.onnx"},
         "accuracy_floor": 0.9, "metrics": {"holdout_accuracy": 0.96},
         "signature": IRIS_SIGNATURE},
    ]}))
    return path


@pytest.mark.slow
def test_models_in_the_production_storage_layout_through_dagster_webserver(
        pg_url, s3_server, s3_bucket, tmp_path):
    port = free_port()
    home = dagster_home(tmp_path, s3_server, s3_bucket)
    env = dict(os.environ)
    env.update(s3_server.env())
    env.update({
        "DAGSTER_HOME": str(home),
        "NODERR_ENV": "test",
        "NODERR_DATABASE_URL": pg_url,
        "NODERR_STATE_DIR": str(tmp_path / "state"),
        "NODERR_MODEL_BUCKET": s3_bucket,
        "NODERR_MODEL_CATALOG": str(write_catalog(tmp_path / "models.yaml", s3_bucket)),
        "NODERR_DAGSTER_IO_BUCKET": s3_bucket,
        "DAGSTER_COMPUTE_LOGS_BUCKET": s3_bucket,
        "DAGSTER_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "AWS_DEFAULT_REGION": s3_server.region,
        "PYTHONUNBUFFERED": "1",
    })
    s3 = s3_server.client()
    s3.put_object(Bucket=s3_bucket, Key="incoming/fraud.onnx", Body=onnx_variant("fraud-v1"))
    log_path = tmp_path / "webserver.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text()[-3000:])
            return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200

        wait_for(ready, 240, "dagster-webserver")
        with httpx.Client(timeout=60) as http:
            def gql(query: str, variables: dict | None = None) -> dict:
                resp = http.post(url, json={"query": query, "variables": variables or {}})
                resp.raise_for_status()
                body = resp.json()
                assert "errors" not in body, body
                return body["data"]

            location = None

            def location_loaded() -> bool:
                nonlocal location
                entries = gql(LOCATIONS)["workspaceOrError"]["locationEntries"]
                for entry in entries:
                    loaded = entry["locationOrLoadError"] or {}
                    if loaded.get("__typename") == "PythonError":
                        raise RuntimeError(loaded["message"])
                    if loaded.get("__typename") == "RepositoryLocation":
                        location = entry["name"]
                return location is not None

            wait_for(location_loaded, 240, "code location", interval=1)

            def selector(job: str) -> dict:
                return {"repositoryLocationName": location, "repositoryName": "__repository__",
                        "jobName": job}

            def finish(run_id: str) -> str:
                status = None
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    status = gql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
                    if status in ("SUCCESS", "FAILURE", "CANCELED"):
                        break
                    time.sleep(1)
                assert status == "SUCCESS", log_path.read_text()[-4000:]
                return run_id

            def launch(job: str, config: dict | None = None) -> str:
                launched = gql(LAUNCH, {"params": {"selector": selector(job),
                                                   "runConfigData": config or {}}})["launchRun"]
                assert launched["__typename"] == "LaunchRunSuccess", launched
                return finish(launched["run"]["runId"])

            def events(run_id: str) -> list[dict]:
                return gql(RUN_EVENTS, {"runId": run_id})["logsForRun"]["events"]

            # Each model's job publishes its own lineage.
            iris_run = launch("publish_iris_classifier_job")
            launch("publish_fraud_scorer_job")

            # Step outputs live in S3, nothing on this machine's disk.
            io_keys = [o["Key"] for o in s3.list_objects_v2(
                Bucket=s3_bucket, Prefix="dagster/io/").get("Contents", [])]
            assert any(key.endswith("/iris_classifier_onnx") for key in io_keys), io_keys
            assert not (home / "storage").exists()

            # Re-execute the packaging step alone: a fresh run process loads its input from S3.
            reexecuted = gql(REEXECUTE, {"params": {
                "selector": selector("publish_iris_classifier_job"), "runConfigData": {},
                "stepKeys": ["iris_classifier_package"],
                "executionMetadata": {"parentRunId": iris_run, "rootRunId": iris_run},
            }})["launchRunReexecution"]
            assert reexecuted["__typename"] == "LaunchRunSuccess", reexecuted
            rerun = finish(reexecuted["run"]["runId"])
            rerun_events = events(rerun)
            assert any(e["__typename"] == "LoadedInputEvent" for e in rerun_events)
            source = f"Loading S3 object from: s3://{s3_bucket}/dagster/io/iris_classifier_onnx"
            assert any(source in (e.get("message") or "") for e in rerun_events), rerun_events
            assert {e.get("stepKey") for e in rerun_events if e.get("stepKey")} == {
                "iris_classifier_package"}

            # The run's logs come from S3 through the webserver (the local staging copy is gone).
            shutil.rmtree(tmp_path / "compute-log-staging", ignore_errors=True)
            captured = [e for e in events(iris_run) if e["__typename"] == "LogsCapturedEvent"]
            assert captured
            text = ""
            for event in captured:
                logs = gql(CAPTURED_LOGS, {"logKey": [iris_run, "compute_logs", event["fileKey"]]})
                text += (logs["capturedLogs"]["stderr"] or "") + (logs["capturedLogs"]["stdout"] or "")
            assert "iris-classifier: exported" in text
            log_objects = s3.list_objects_v2(Bucket=s3_bucket, Prefix="dagster/logs/")
            assert log_objects.get("KeyCount", 0) > 0

            # A second fraud-scorer version, then a canary, a promotion and a rollback.
            s3.put_object(Bucket=s3_bucket, Key="incoming/fraud.onnx", Body=onnx_variant("fraud-v2"))
            launch("publish_fraud_scorer_job")

            def promote(version: int, status: str, percent: int | None = None) -> None:
                cfg = {"model_name": "fraud-scorer", "version": version, "to_status": status}
                if percent is not None:
                    cfg["rollout_percent"] = percent
                launch("promote_model_job", {"ops": {"promote_model_version_op": {"config": cfg}}})

            catalog = DagsterUI(port)  # what `make demo` reads from the catalog

            def rollout(asset: str) -> dict:
                return catalog.latest_asset_events(asset)["observation"]

            promote(1, "active")
            promote(2, "canary", 30)
            state = rollout("fraud_scorer_published")
            assert (state["active_version"], state["canary_version"], state["canary_percent"]) == (
                1, 2, 30)
            promote(2, "active")
            launch("rollback_model_job",
                   {"ops": {"rollback_model_op": {"config": {"model_name": "fraud-scorer"}}}})
            state = rollout("fraud_scorer_published")
            assert state["rollout"] == "v1 active; rolled back v2"
            assert state["action"] == "rollback" and state["active_version"] == 1
            # The other model's lineage carries no rollout it did not have.
            iris = catalog.latest_asset_events("iris_classifier_published")
            assert iris["observation"] == {} and iris["materialization"]["status"] == "staged"
    finally:
        stop_process(proc, grace=20)
        log.close()

    engine = make_engine(pg_url)
    try:
        with make_session_factory(engine)() as s:
            assert [(r.version, r.status) for r in list_model_versions(s, "fraud-scorer")] == [
                (2, "retired"), (1, "active")]
            (iris,) = list_model_versions(s, "iris-classifier")
            assert (iris.version, iris.status, iris.bucket) == (1, "staged", s3_bucket)
    finally:
        engine.dispose()
