"""Launching Dagster runs the way the ML team does: through the running webserver's GraphQL API."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from dagster import DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient

from noderr_demo.report import DemoFailure

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

    def run(self, job_name: str, run_config: Mapping[str, Any] | None = None,
            timeout: float = 600) -> str:
        run_id = self.launch(job_name, run_config)
        self.wait(run_id, timeout)
        return run_id
