"""The ML team's path: launch the models group through a running dagster-webserver (GraphQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from noderr_core.db import make_engine, make_session_factory
from noderr_core.modelstore import list_model_versions
from noderr_local.process import free_port, stop_process, wait_for

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
LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
RUN_STATUS = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"""


def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((ROOT / "dagster_home" / "dagster.yaml").read_text())
    # No daemon in this test: the webserver launches the run itself instead of queueing it.
    config["run_coordinator"] = {"module": "dagster.core.run_coordinator",
                                 "class": "DefaultRunCoordinator"}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@pytest.mark.slow
def test_materialize_models_group_through_dagster_webserver(pg_url, s3_server, s3_bucket, tmp_path):
    port = free_port()
    env = dict(os.environ)
    env.update(s3_server.env())
    env.update({
        "DAGSTER_HOME": str(dagster_home(tmp_path)),
        "NODERR_ENV": "test",
        "NODERR_DATABASE_URL": pg_url,
        "NODERR_STATE_DIR": str(tmp_path / "state"),
        "NODERR_MODEL_BUCKET": s3_bucket,
        "PYTHONUNBUFFERED": "1",
    })
    log = (tmp_path / "webserver.log").open("wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError((tmp_path / "webserver.log").read_text()[-3000:])
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
                loaded = [e for e in entries
                          if (e["locationOrLoadError"] or {}).get("__typename") == "RepositoryLocation"]
                errors = [e for e in entries
                          if (e["locationOrLoadError"] or {}).get("__typename") == "PythonError"]
                if errors:
                    raise RuntimeError(errors[0]["locationOrLoadError"]["message"])
                location = loaded[0]["name"] if loaded else None
                return location is not None

            wait_for(location_loaded, 240, "code location", interval=1)
            launched = gql(LAUNCH, {"params": {
                "selector": {"repositoryLocationName": location, "repositoryName": "__repository__",
                             "jobName": "publish_reference_model_job"},
                "runConfigData": {},
            }})["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            run_id = launched["run"]["runId"]

            status = None
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                status = gql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
                if status in ("SUCCESS", "FAILURE", "CANCELED"):
                    break
                time.sleep(1)
            assert status == "SUCCESS", (tmp_path / "webserver.log").read_text()[-4000:]
    finally:
        stop_process(proc, grace=20)
        log.close()

    engine = make_engine(pg_url)
    try:
        with make_session_factory(engine)() as s:
            (row,) = list_model_versions(s, "iris-classifier")
            assert (row.version, row.status, row.bucket) == (1, "staged", s3_bucket)
            assert (tmp_path / "state" / "model-signing.key").exists()
    finally:
        engine.dispose()
    obj = s3_server.client().head_object(Bucket=s3_bucket, Key=row.object_key)
    assert obj["ContentLength"] == row.size_bytes
