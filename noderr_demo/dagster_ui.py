"""Launching Dagster runs the way the ML team does: through the running webserver's GraphQL API."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from noderr_demo.report import DemoFailure

# The latest materialization (a published version) and observation (its rollout state) of an asset.
_ASSET_EVENTS = """
query AssetEvents($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset {
      assetMaterializations(limit: 1) { runId metadataEntries { ...entry } }
      assetObservations(limit: 1) { runId metadataEntries { ...entry } }
    }
  }
}
fragment entry on MetadataEntry {
  label
  ... on TextMetadataEntry { text }
  ... on IntMetadataEntry { intValue }
  ... on FloatMetadataEntry { floatValue }
  ... on BoolMetadataEntry { boolValue }
}"""

_FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


class DagsterUI:
    def __init__(self, port: int):
        self.port = port
        self.client = DagsterGraphQLClient("127.0.0.1", port_number=port, timeout=120)

    def run_url(self, run_id: str) -> str:
        return f"http://127.0.0.1:{self.port}/runs/{run_id}"

    def launch(self, job_name: str, run_config: Mapping[str, Any] | None = None,
               tags: dict[str, str] | None = None) -> str:
        return self.client.submit_job_execution(job_name, run_config=run_config or {}, tags=tags)

    def wait(self, run_id: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.client.get_run_status(run_id)
            if status in _FINISHED:
                break
            time.sleep(1.0)
        if status != DagsterRunStatus.SUCCESS:
            raise DemoFailure(f"Dagster run {run_id} ended {status}: see {self.run_url(run_id)}")

    def latest_asset_events(self, asset_name: str) -> dict[str, dict[str, Any]]:
        """{"materialization": {label: value}, "observation": {label: value}} from the catalog."""
        result = self.client._execute(_ASSET_EVENTS, {"key": {"path": [asset_name]}})
        asset = result["assetOrError"]
        if asset["__typename"] != "Asset":
            raise DemoFailure(f"asset {asset_name} is not in the Dagster catalog")

        def values(events: list[dict]) -> dict[str, Any]:
            if not events:
                return {}
            return {e["label"]: next((v for k, v in e.items() if k != "label"), None)
                    for e in events[0]["metadataEntries"]}

        return {"materialization": values(asset["assetMaterializations"]),
                "observation": values(asset["assetObservations"])}

    def run(self, job_name: str, run_config: Mapping[str, Any] | None = None,
            timeout: float = 600) -> str:
        run_id = self.launch(job_name, run_config)
        self.wait(run_id, timeout)
        return run_id
