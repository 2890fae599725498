"""API observability: /metrics by route template, business gauges, request ids, logs without secrets.

Uses the real app (`create_app`) over a migrated SQLite and PostgreSQL database, in process.
"""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.main import create_app
from api.observability import (
    REQUEST_ID_HEADER,
    configure_logging,
    install_observability,
    redact,
)
from noderr_core.audit import Actor
from noderr_core.network import mark_offline
from noderr_core.settings import Settings
from tests.support.factories import make_node


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format (labels matched exactly, in any order)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if found == labels:
            return float(match.group(3))
    return None


@pytest.fixture
def settings(db_url, tmp_path) -> Settings:
    return Settings(env="test", database_url=db_url, state_dir=tmp_path / "state", log_json=True)


@pytest.fixture
def log_stream(settings):
    touched = ["httpx", "httpcore", "uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers),
                 logging.getLogger(n).propagate) for n in touched}
    stream = io.StringIO()
    handler = configure_logging(settings, stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)
    for name, (level, handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers = handlers
        logger.propagate = propagate


def build_app(settings: Settings):
    app = create_app(settings)
    install_observability(app, settings)  # a no-op once api/main.py installs it itself

    # Test-only routes on this app instance: a templated path carrying a token (like the portal
    # link) and a handler that fails with a secret in its exception text.
    @app.get("/test-only/links/{token}")
    def link(token: str) -> dict:
        return {"ok": True}

    @app.get("/test-only/boom")
    def boom() -> dict:
        raise RuntimeError(
            "could not reach postgresql://noderr:hunter2-db-password@db:5432/noderr with "
            "password=hunter2-db-password"
        )

    return app


def test_request_id_is_generated_or_kept_and_returned(settings):
    with TestClient(build_app(settings)) as client:
        generated = client.get("/healthz").headers[REQUEST_ID_HEADER]
        assert re.fullmatch(r"[0-9a-f]{32}", generated)
        assert client.get("/healthz").headers[REQUEST_ID_HEADER] != generated
        kept = client.get("/healthz", headers={REQUEST_ID_HEADER: "lb-7f3a.42"})
        assert kept.headers[REQUEST_ID_HEADER] == "lb-7f3a.42"
        # Anything that could forge a log field or a header is replaced by a fresh id.
        forged = client.get("/healthz", headers={REQUEST_ID_HEADER: 'x" injected="1'})
        assert re.fullmatch(r"[0-9a-f]{32}", forged.headers[REQUEST_ID_HEADER])


def test_metrics_count_requests_by_route_template_and_status(settings):
    with TestClient(build_app(settings)) as client:
        for token in ("tok-one", "tok-two", "tok-three"):
            assert client.get(f"/test-only/links/{token}").status_code == 200
        assert client.get("/v1/nodes/me").status_code == 401
        assert client.get("/no/such/page").status_code == 404
        text = client.get("/metrics").text

    assert metric_value(text, "noderr_api_requests_total", method="GET",
                        route="/test-only/links/{token}", status="200") == 3
    assert metric_value(text, "noderr_api_requests_total", method="GET",
                        route="/v1/nodes/me", status="401") == 1
    assert metric_value(text, "noderr_api_requests_total", method="GET",
                        route="<unmatched>", status="404") == 1
    assert metric_value(text, "noderr_api_request_duration_seconds_count", method="GET",
                        route="/test-only/links/{token}") == 3
    assert "tok-one" not in text and "/no/such/page" not in text
    assert 'route="/metrics"' not in text  # scrapes do not count themselves


def test_business_gauges_follow_the_database(settings, session_factory):
    with session_factory() as s:
        node, _ = make_node(s)
        make_node(s, status="provisioned")
        s.commit()
    with TestClient(build_app(settings)) as client:
        before = client.get("/metrics").text
        assert metric_value(before, "noderr_business_metrics_up") == 1
        assert metric_value(before, "noderr_nodes", status="online") == 1
        assert metric_value(before, "noderr_nodes", status="provisioned") == 1
        assert metric_value(before, "noderr_nodes", status="offline") == 0
        assert metric_value(before, "noderr_open_alerts") == 0

        with session_factory() as s:
            mark_offline(s, node_id=node.id, offline_after_seconds=-3600, settings=settings,
                         actor=Actor.system())
            s.commit()
        after = client.get("/metrics").text
    assert metric_value(after, "noderr_nodes", status="online") == 0
    assert metric_value(after, "noderr_nodes", status="offline") == 1
    assert metric_value(after, "noderr_open_alerts") == 1


def test_logs_are_json_with_request_ids_and_never_contain_secrets(
    settings, session_factory, log_stream
):
    with session_factory() as s:
        _node, node_key = make_node(s)
        s.commit()
    key_secret = node_key.split("_", 2)[2]
    with TestClient(build_app(settings), raise_server_exceptions=False) as client:
        client.cookies.set("noderr_admin_session", "cookie-secret-value")
        ok = client.post(
            "/v1/nodes/heartbeat",
            json={"uptime_seconds": 3},
            headers={"Authorization": f"Bearer {node_key}", REQUEST_ID_HEADER: "req-heartbeat-1"},
        )
        assert ok.status_code == 200
        client.get("/test-only/links/single-use-download-token-xyz")
        client.post("/webhooks/typeform", content=b"{}",
                    headers={"Typeform-Signature": "sha256=c2lnbmF0dXJlLXNlY3JldA=="})
        failed = client.get("/test-only/boom", headers={REQUEST_ID_HEADER: "req-boom-1"})
    assert failed.status_code == 500
    assert failed.json() == {"detail": "internal server error", "request_id": "req-boom-1"}

    output = log_stream.getvalue()
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    access = [e for e in lines if e["logger"] == "noderr.api.access"]
    heartbeat = next(e for e in access if e.get("route") == "/v1/nodes/heartbeat")
    assert heartbeat["request_id"] == "req-heartbeat-1"
    assert heartbeat["status"] == 200 and heartbeat["method"] == "POST"
    assert isinstance(heartbeat["duration_ms"], float)
    errors = [e for e in lines if e.get("request_id") == "req-boom-1" and e["level"] == "error"]
    assert errors and "RuntimeError" in errors[0]["exc"]
    for secret in (key_secret, "cookie-secret-value", "single-use-download-token-xyz",
                   "c2lnbmF0dXJlLXNlY3JldA==", "hunter2-db-password"):
        assert secret not in output, f"secret {secret!r} leaked into the logs"


def test_metrics_token_is_required_when_configured(db_url, tmp_path):
    class SettingsWithMetricsToken(Settings):
        metrics_token: SecretStr = SecretStr("")

    settings = SettingsWithMetricsToken(
        env="test", database_url=db_url, state_dir=tmp_path / "state",
        metrics_token=SecretStr("scrape-token-123"),
    )
    with TestClient(build_app(settings)) as client:
        refused = client.get("/metrics")
        assert refused.status_code == 401
        assert "NODERR_METRICS_TOKEN" in refused.json()["detail"]
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        allowed = client.get("/metrics", headers={"Authorization": "Bearer scrape-token-123"})
        assert allowed.status_code == 200
        assert "noderr_api_requests_total" in allowed.text


@pytest.mark.parametrize(
    ("raw", "secret"),
    [
        ("auth with nk_0123456789abcdef_S3cr3t-Value_x", "S3cr3t-Value_x"),
        ("client ck_0123456789abcdef_AnotherSecret", "AnotherSecret"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        ("Typeform-Signature: sha256=Zm9vYmFy", "Zm9vYmFy"),
        ('{"password": "pa55word"}', "pa55word"),
        ("GET /portal?token=tok123&x=1", "tok123"),
        ("postgresql+psycopg2://noderr:dbpass@db/noderr", "dbpass"),
        ("smtp://apikey:SG.sendgrid-key@smtp.sendgrid.net:587", "SG.sendgrid-key"),
    ],
)
def test_redact_removes_secrets_and_keeps_the_rest(raw, secret):
    cleaned = redact(raw)
    assert secret not in cleaned
    assert "[REDACTED]" in cleaned


def test_redact_keeps_the_public_key_id():
    assert redact("nk_0123456789abcdef_secret") == "nk_0123456789abcdef_[REDACTED]"
