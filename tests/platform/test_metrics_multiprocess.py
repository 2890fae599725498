"""Metrics that add up across processes: two uvicorn workers, one consistent set of counters.

Without Prometheus multiprocess mode each worker answers a scrape with its own counters, so
successive scrapes of one pod jump between two series and a counter appears to go down. With
PROMETHEUS_MULTIPROC_DIR every scrape, whichever worker answers it, reports the sum.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx

SERIES = re.compile(
    r'^noderr_api_requests_total\{method="GET",route="/healthz",status="200"\} ([0-9.e+]+)$',
    re.MULTILINE)


def healthz_count(url: str) -> float:
    # A new connection per scrape, so the kernel may hand it to either worker.
    text = httpx.get(f"{url}/metrics", timeout=10, headers={"Connection": "close"}).text
    match = SERIES.search(text)
    return float(match.group(1)) if match else 0.0


def test_two_workers_report_one_monotonic_request_counter(api_server_factory, sqlite_url, tmp_path):
    shared = tmp_path / "prometheus-multiproc"
    shared.mkdir()
    server = api_server_factory(sqlite_url, env={"PROMETHEUS_MULTIPROC_DIR": str(shared)},
                                workers=2)
    before = healthz_count(server.url)

    def probe(_: int) -> int:
        return httpx.get(f"{server.url}/healthz", timeout=10,
                         headers={"Connection": "close"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(probe, range(200)))
    assert statuses == [200] * 200

    # Both workers served requests (each wrote its own counter file)...
    writers = {path.stem.rsplit("_", 1)[-1] for path in shared.glob("counter_*.db")}
    assert len(writers) >= 2, writers
    # ...and every scrape, answered by either worker, shows all of them: never less, never a jump.
    scrapes = [healthz_count(server.url) for _ in range(20)]
    assert scrapes == [before + 200] * 20


def test_readyz_reports_the_database(api_server_factory, sqlite_url, tmp_path):
    server = api_server_factory(sqlite_url)
    ready = httpx.get(f"{server.url}/readyz", timeout=10)
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "database": "ok"})


def test_readyz_is_503_until_the_app_has_a_database():
    from fastapi.testclient import TestClient

    from api.main import create_app
    from noderr_core.settings import Settings

    # Without entering the lifespan the app has no engine: not ready, and says when to retry.
    response = TestClient(create_app(Settings(env="test"))).get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "database": "unreachable"}
    assert response.headers["Retry-After"] == "5"
