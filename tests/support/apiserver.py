"""Runs the real API under uvicorn as a separate process (as in production) for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from noderr_local.process import free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ApiServer:
    url: str
    proc: subprocess.Popen
    log_path: Path

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def start_api_server(database_url: str, log_dir: Path, env: dict[str, str] | None = None,
                     workers: int = 1, access_log: bool = False, app: str = "api.main:app") -> ApiServer:
    """uvicorn serving `app` (the API unless told; bench/minimal_tasks.py serves its own) on a free
    port; returns once `/healthz` answers 200."""
    port = free_port()
    full_env = dict(os.environ)
    full_env.update(
        {
            "NODERR_ENV": "test",
            "NODERR_DATABASE_URL": database_url,
            "NODERR_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "NODERR_STATE_DIR": str(log_dir / "state"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    full_env.update(env or {})
    log_path = log_dir / f"api-{port}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers), *([] if access_log else ["--no-access-log"])],
        cwd=ROOT, env=full_env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"API exited: {log_path.read_text()[-3000:]}")
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200

    wait_for(ready, 60, "API server")
    return ApiServer(url=url, proc=proc, log_path=log_path)


@pytest.fixture
def api_server_factory(tmp_path):
    """`server = api_server_factory(db_url, env={...})` starts uvicorn; all are stopped at teardown."""
    servers: list[ApiServer] = []

    def start(database_url: str, env: dict[str, str] | None = None, workers: int = 1,
              access_log: bool = False) -> ApiServer:
        server = start_api_server(database_url, tmp_path / "api", env, workers, access_log)
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop_process(server.proc)
