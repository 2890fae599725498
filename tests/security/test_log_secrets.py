"""No secret the system issues reaches a log line, from a live uvicorn with its access log on (finding 2).

The server runs as in production (JSON logs, uvicorn's access log enabled); the test exercises
every kind of secret — node key, client key, portal download token (path and query string), admin
password and session cookie, metrics token, Typeform secret and signature, signing keys — and then
scans everything the process wrote.
"""

from __future__ import annotations

import json
import secrets

from noderr_core.audit import Actor
from noderr_core.db import make_engine, make_session_factory
from noderr_core.onboarding.typeform import sign_body
from noderr_core.tasks import create_client
from tests.support.admin import csrf_from
from tests.support.factories import make_node


def _secret_part(api_key: str) -> str:
    return api_key.split("_", 2)[2]


def test_captured_logs_hold_no_secret(sqlite_url, api_server_factory):
    engine = make_engine(sqlite_url)
    with make_session_factory(engine)() as s:
        _node, node_key = make_node(s)
        _client, client_key = create_client(s, name="log-scan", actor=Actor.system("test"))
        s.commit()
    engine.dispose()
    issued = {
        "secret_key": secrets.token_urlsafe(32),
        "admin_password": "Adm1n-" + secrets.token_urlsafe(16),
        "metrics_token": secrets.token_urlsafe(24),
        "typeform_secret": secrets.token_urlsafe(24),
        "model_signing_key": secrets.token_hex(32),
        "chain_signer_key": "0x" + secrets.token_hex(32),
        "portal_token": secrets.token_urlsafe(32),
        "query_token": secrets.token_urlsafe(32),
        "query_code": secrets.token_urlsafe(16),
    }
    server = api_server_factory(sqlite_url, access_log=True, env={
        "NODERR_LOG_JSON": "true",
        "NODERR_SECRET_KEY": issued["secret_key"],
        "NODERR_BOOTSTRAP_ADMIN_EMAIL": "root@noderr.test",
        "NODERR_BOOTSTRAP_ADMIN_PASSWORD": issued["admin_password"],
        "NODERR_METRICS_TOKEN": issued["metrics_token"],
        "NODERR_TYPEFORM_SECRET": issued["typeform_secret"],
        "NODERR_MODEL_SIGNING_KEY": issued["model_signing_key"],
        "NODERR_CHAIN_SIGNER_KEY": issued["chain_signer_key"],
    })
    with server.client() as http:
        node_auth = {"authorization": f"Bearer {node_key}"}
        assert http.post("/v1/nodes/heartbeat", json={"uptime_seconds": 5}, headers=node_auth).status_code == 200
        http.post("/v1/nodes/heartbeat", json={"uptime_seconds": "x"}, headers=node_auth)
        http.post("/v1/tasks/lease", json={"models": []}, headers=node_auth)
        http.get("/v1/tasks", params={"ids": "t_1"}, headers={"authorization": f"Bearer {client_key}"})
        http.post("/v1/tasks", json={"tasks": []}, headers={"authorization": f"Bearer {client_key}"})
        http.get(f"/portal/download/{issued['portal_token']}")
        http.post(f"/portal/download/{issued['portal_token']}", data={"nonce": "x"})
        http.get(f"/portal/download/{issued['portal_token']}?token={issued['query_token']}")
        http.get(f"/nowhere?token={issued['query_token']}&code={issued['query_code']}")
        http.get("/metrics", headers={"authorization": f"Bearer {issued['metrics_token']}"})
        http.get("/metrics", headers={"authorization": "Bearer wrong"})
        body = json.dumps({"event_type": "form_response", "form_response": {"token": "t"}}).encode()
        signature = sign_body(issued["typeform_secret"], body)
        http.post("/webhooks/typeform", content=body, headers={"typeform-signature": signature})
        page = http.get("/admin/login")
        r = http.post("/admin/login", data={
            "email": "root@noderr.test", "password": issued["admin_password"],
            "csrf_token": csrf_from(page.text), "next": "/admin"}, follow_redirects=False)
        assert r.status_code == 303, r.text
        session_cookie = r.cookies.get("noderr_admin_session") or http.cookies.get("noderr_admin_session")
        assert session_cookie
        http.get("/admin", headers={"accept": "text/html"})
        http.get("/admin/applications/99999999999999999999")
        http.post("/admin/login", data={"email": "root@noderr.test", "password": issued["admin_password"] + "x",
                                        "csrf_token": "bad"})

    log = server.log_path.read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [e for e in lines if e.get("logger") == "noderr.api.access"]
    # The scan is not vacuous: the requests above were logged, by route template.
    assert any(e.get("route") == "/portal/download/{token}" for e in access), log[-2000:]
    assert any(e.get("route") == "/v1/nodes/heartbeat" for e in access)
    assert any(e.get("path") == "/nowhere" for e in access)
    # uvicorn's own access line (raw path and query) is never written.
    assert not any(e.get("logger") == "uvicorn.access" for e in lines)
    found = {
        kind: value for kind, value in {
            **issued,
            "node_key": _secret_part(node_key),
            "client_key": _secret_part(client_key),
            "session_cookie": session_cookie,
            "typeform_signature": signature.split("=", 1)[1],
        }.items() if value in log
    }
    assert not found, f"secrets in the API log: {sorted(found)}"
