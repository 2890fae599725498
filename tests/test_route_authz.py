"""Authorization of every route of the real app, found from the app itself.

Each (method, path) the app serves must be classified below: PUBLIC (a reviewed allow-list, each
with the reason it needs no principal), LOCAL_ONLY (developer docs), NODE (`Bearer nk_…`), CLIENT
(`Bearer ck_…`) or ADMIN (session cookie). A route nobody classified fails
`test_every_route_is_classified`, so a new endpoint cannot ship without someone deciding who may call
it; the other tests then check each class against the running app: no credentials → 401 (a 303 to
the sign-in page for an admin page in a browser), the other kind of key → 401, a suspended or
removed node → 403, a revoked key or disabled client → 401, an admin form without its CSRF token →
403, and a valid principal gets past the check (so the assertions cannot pass vacuously).
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from noderr_core.audit import Actor
from noderr_core.db import make_engine, make_session_factory
from noderr_core.tables import NodeStatus
from noderr_core.security import CLIENT_KEY_PREFIX, parse_api_key
from noderr_core.settings import Settings
from noderr_core.tasks import create_client, disable_client, revoke_client_key
from tests.support.admin import ADMIN_EMAIL, ADMIN_PASSWORD, admin_login
from tests.support.factories import make_node, production_secrets

_WEBHOOK_OTHER_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "PUT")

# Reviewed: who may call these without a principal, and what protects them instead.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe, returns a constant",
    ("GET", "/readyz"): "readiness probe: database reachable or 503, nothing else",
    ("GET", "/metrics"): "Prometheus scrape; `Bearer NODERR_METRICS_TOKEN` when that is set",
    ("POST", "/webhooks/typeform"): "Typeform-Signature (HMAC of the body) is the credential",
    ("POST", "/webhooks/typeform/{subpath:path}"): "same handler and signature check",
    **{(m, "/webhooks/typeform"): "answers 405 only (Typeform must never see 404)"
       for m in _WEBHOOK_OTHER_METHODS},
    **{(m, "/webhooks/typeform/{subpath:path}"): "answers 405 only"
       for m in _WEBHOOK_OTHER_METHODS},
    ("GET", "/portal/download/{token}"): "the 256-bit single-use token in the path is the capability",
    ("POST", "/portal/download/{token}"): "capability token + form nonce + same-origin check",
    ("GET", "/v1/rewards/epochs/{epoch_date}"): "public by design: anyone can recheck the Merkle root",
    ("GET", "/v1/rewards/claims/{wallet}"): "public by design: a claim only pays the leaf's wallet",
    ("GET", "/rewards/{wallet}"): "operator's public earnings page",
    ("GET", "/admin/login"): "the sign-in form",
    ("POST", "/admin/login"): "sign-in (double-submit CSRF cookie, rate limited)",
    ("GET", "/v1/node-image/signatures/{path:path}"): "node image signatures for podman: "
    "public by design (verifying needs only the public key), strict path shape, bounded body",
    ("GET", "/operator/sign-in"): "the operator's wallet sign-in page",
    ("POST", "/operator/sign-in/challenge"): "EIP-4361 nonce, only for operators' wallets; JSON + same origin",
    ("POST", "/operator/sign-in"): "the signed EIP-4361 message is the credential (single-use nonce)",
    ("GET", "/operator/static/{name}"): "the operator pages' script and style sheet (fixed allow-list)",
}
# Served only when settings.is_local (local development and tests).
LOCAL_ONLY: set[tuple[str, str]] = {
    (m, p) for p in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc") for m in ("GET", "HEAD")
}
NODE: set[tuple[str, str]] = {
    ("GET", "/v1/models/beacon"),
    ("POST", "/v1/tasks/lease"),
    ("POST", "/v1/tasks/lease/extend"),
    ("POST", "/v1/tasks/results"),
    ("POST", "/v1/tasks/release"),
    ("POST", "/v1/nodes/heartbeat"),
    ("GET", "/v1/nodes/me"),
}
CLIENT: set[tuple[str, str]] = {
    ("POST", "/v1/tasks"),
    ("GET", "/v1/tasks"),
    ("GET", "/v1/tasks/{task_id}"),
}
ADMIN: set[tuple[str, str]] = {
    ("POST", "/admin/logout"),
    ("GET", "/admin/account"),
    ("POST", "/admin/account/password"),
    ("GET", "/admin"),
    ("GET", "/admin/nodes"),
    ("GET", "/admin/nodes/{node_id}"),
    ("POST", "/admin/nodes/{node_id}/suspend"),
    ("POST", "/admin/nodes/{node_id}/resume"),
    ("POST", "/admin/nodes/{node_id}/remove"),
    ("POST", "/admin/nodes/{node_id}/rotate-key"),
    ("GET", "/admin/operators"),
    ("GET", "/admin/operators/{operator_id}"),
    ("POST", "/admin/operators/{operator_id}/wallet"),
    ("GET", "/admin/applications"),
    ("GET", "/admin/applications/{application_id}"),
    ("POST", "/admin/applications/{application_id}/approve"),
    ("POST", "/admin/applications/{application_id}/reject"),
    ("POST", "/admin/applications/{application_id}/reissue-link"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/models"),
    ("POST", "/admin/models/{model_name}/versions/{version}/promote"),
    ("POST", "/admin/models/{model_name}/rollback"),
    ("GET", "/admin/clients"),
    ("POST", "/admin/clients"),
    ("POST", "/admin/clients/{client_id}/keys"),
    ("POST", "/admin/clients/keys/{key_id}/revoke"),
    ("POST", "/admin/clients/{client_id}/disable"),
    ("GET", "/admin/rewards"),
    ("POST", "/admin/slashing/{case_id}/dismiss"),
}
# Operator pages: a session opened by signing in with the payout wallet (EIP-4361).
OPERATOR: set[tuple[str, str]] = {
    ("GET", "/operator"),
    ("GET", "/operator/nodes/{node_id}"),
    ("GET", "/operator/claim.json"),
    ("POST", "/operator/sign-out"),
    ("POST", "/operator/nodes/{node_id}/rotate-key"),
    ("POST", "/operator/node-requests"),
    ("POST", "/operator/wallet/challenge"),
    ("POST", "/operator/wallet"),
}
CLASSES = {"public": set(PUBLIC), "local-only": LOCAL_ONLY, "node": NODE, "client": CLIENT,
           "admin": ADMIN, "operator": OPERATOR}


def served_routes(app) -> set[tuple[str, str]]:
    """Every (method, path template) the app answers, nested routers included."""
    found = set()
    for rc in iter_route_contexts(app.routes):
        for method in rc.methods or ():
            found.add((method, rc.path))
    return found


def concrete(path: str) -> str:
    """A requestable path: every parameter filled with a value of the right shape."""
    path = path.replace("{subpath:path}", "extra")
    path = path.replace("{epoch_date}", "2026-01-01")
    path = path.replace("{wallet}", "0x" + "ab" * 20)
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.fixture
def authz_world(db_url, tmp_path):
    """The real app plus one principal of each kind (and the refused variants)."""
    from api.main import create_app

    engine = make_engine(db_url)
    with make_session_factory(engine)() as s:
        _n, node_key = make_node(s)
        _n, suspended_key = make_node(s, status=NodeStatus.SUSPENDED)
        _n, removed_key = make_node(s, status=NodeStatus.REMOVED)
        _c, client_key = create_client(s, name="authz-client", actor=Actor.system("test"))
        _c, revoked_key = create_client(s, name="revoked-client", actor=Actor.system("test"))
        revoke_client_key(s, key_id=parse_api_key(revoked_key, CLIENT_KEY_PREFIX),
                          actor=Actor.system("test"))
        disabled, disabled_key = create_client(s, name="disabled-client", actor=Actor.system("test"))
        disable_client(s, client_id=disabled.id, actor=Actor.system("test"))
        s.commit()
    engine.dispose()
    settings = Settings(env="test", database_url=db_url, state_dir=tmp_path / "state",
                        bootstrap_admin_email=ADMIN_EMAIL, bootstrap_admin_password=ADMIN_PASSWORD)
    app = create_app(settings)

    class World:
        pass

    world = World()
    world.app = app
    world.keys = {"node": node_key, "suspended": suspended_key, "removed": removed_key,
                  "client": client_key, "revoked": revoked_key, "disabled": disabled_key}
    with TestClient(app) as http:
        world.http = http
        yield world


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "accept": "application/json"}


def call(http, method: str, path: str, headers: dict | None = None, **kwargs):
    if method == "POST" and "data" not in kwargs:
        kwargs["json"] = {}
    return http.request(method, concrete(path), headers=headers or {}, follow_redirects=False,
                        **kwargs)


# ---- the inventory -----------------------------------------------------------------------------


def test_every_route_is_classified(authz_world):
    served = served_routes(authz_world.app)
    classified = set().union(*CLASSES.values())
    assert not served - classified, (
        "routes nobody classified (add each to PUBLIC with a reason, or to NODE/CLIENT/ADMIN after "
        f"checking its dependency): {sorted(served - classified)}"
    )
    assert not classified - served, f"classified routes the app no longer serves: {sorted(classified - served)}"
    overlaps = [(a, b) for a in CLASSES for b in CLASSES if a < b and CLASSES[a] & CLASSES[b]]
    assert not overlaps, overlaps


def test_outside_local_the_docs_and_schema_are_not_served(db_url, tmp_path):
    from api.main import create_app

    settings = Settings(
        env="production", database_url=db_url, state_dir=tmp_path / "state", **production_secrets(),
    )
    app = create_app(settings)
    assert served_routes(app) == set().union(*CLASSES.values()) - LOCAL_ONLY
    with TestClient(app) as http:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert http.get(path).status_code == 404, path


# ---- node routes -------------------------------------------------------------------------------


@pytest.mark.parametrize("route", sorted(NODE), ids=lambda r: f"{r[0]} {r[1]}")
def test_node_routes_need_an_active_node_key(authz_world, route):
    method, path = route
    http, keys = authz_world.http, authz_world.keys
    r = call(http, method, path)
    assert r.status_code == 401 and "node API key" in r.json()["detail"], r.text
    assert r.headers["www-authenticate"] == "Bearer"
    for other in ("client", "revoked"):
        r = call(http, method, path, bearer(keys[other]))
        assert r.status_code in (401, 403), (other, r.status_code, r.text)
    r = call(http, method, path, bearer("nk_0123456789abcdef_not-a-real-secret"))
    assert r.status_code == 401, r.text
    for refused in ("suspended", "removed"):
        r = call(http, method, path, bearer(keys[refused]))
        assert r.status_code == 403 and refused in r.json()["detail"], (refused, r.text)
    r = call(http, method, path, bearer(keys["node"]))
    assert r.status_code not in (401, 403), r.text


# ---- client routes -----------------------------------------------------------------------------


@pytest.mark.parametrize("route", sorted(CLIENT), ids=lambda r: f"{r[0]} {r[1]}")
def test_client_routes_need_a_live_client_key(authz_world, route):
    method, path = route
    http, keys = authz_world.http, authz_world.keys
    params = {"ids": "t1"} if path == "/v1/tasks" and method == "GET" else None
    r = call(http, method, path, params=params)
    assert r.status_code == 401 and "client API key" in r.json()["detail"], r.text
    for other in ("node", "suspended"):
        r = call(http, method, path, bearer(keys[other]), params=params)
        assert r.status_code in (401, 403), (other, r.status_code, r.text)
    for refused in ("revoked", "disabled"):
        r = call(http, method, path, bearer(keys[refused]), params=params)
        assert r.status_code == 401, (refused, r.status_code, r.text)
    r = call(http, method, path, bearer(keys["client"]), params=params)
    assert r.status_code not in (401, 403), r.text


# ---- admin routes ------------------------------------------------------------------------------


def test_admin_routes_need_a_session_and_forms_need_csrf(authz_world):
    http, keys = authz_world.http, authz_world.keys
    for method, path in sorted(ADMIN):
        browser = call(http, method, path, {"accept": "text/html"})
        assert browser.status_code == 303, (method, path, browser.status_code)
        assert browser.headers["location"].startswith("/admin/login"), (method, path)
        api = call(http, method, path, {"accept": "application/json"})
        assert api.status_code == 401, (method, path, api.status_code)
        for kind in ("node", "client"):  # an API key is never an admin credential
            r = call(http, method, path, bearer(keys[kind]))
            assert r.status_code == 401, (kind, method, path, r.status_code)

    assert admin_login(http).status_code == 303
    for method, path in sorted(ADMIN):
        if method == "POST":
            r = call(http, method, path, {"accept": "text/html"}, data={})
            assert r.status_code == 403 and "CSRF" in r.text, (path, r.status_code)
            r = call(http, method, path, {"accept": "application/json"})  # JSON body, no token
            assert r.status_code == 403, (path, r.status_code)
        else:
            r = call(http, method, path, {"accept": "text/html"})
            assert r.status_code not in (303, 401, 403), (path, r.status_code)
    # None of the refused POSTs (logout included) ended the session.
    assert call(http, "GET", "/admin/audit", {"accept": "text/html"}).status_code == 200


# ---- operator routes ---------------------------------------------------------------------------


def test_operator_routes_need_a_wallet_session_and_forms_need_csrf(authz_world):
    from eth_account import Account

    from noderr_core.tables import Operator
    from tests.support.operators import operator_sign_in

    http, keys = authz_world.http, authz_world.keys
    assert admin_login(http).status_code == 303  # an admin session is no operator credential
    for method, path in sorted(OPERATOR):
        browser = call(http, method, path, {"accept": "text/html"})
        assert browser.status_code == 303 and browser.headers["location"] == "/operator/sign-in", (path,)
        assert call(http, method, path, {"accept": "application/json"}).status_code == 401, (path,)
        for kind in ("node", "client"):
            assert call(http, method, path, bearer(keys[kind])).status_code == 401, (kind, path)

    account = Account.create()
    engine = make_engine(authz_world.app.state.settings.resolved_database_url)
    with make_session_factory(engine)() as s:
        s.add(Operator(email="authz-op@example.com", wallet_address=account.address))
        s.commit()
    engine.dispose()
    assert operator_sign_in(http, account.key.hex()).status_code == 200
    for method, path in sorted(OPERATOR):
        if method == "POST":
            r = call(http, method, path, {"accept": "text/html"}, data={})
            assert r.status_code == 403 and "CSRF" in r.text, (path, r.status_code)
            assert call(http, method, path, {"accept": "application/json"}).status_code == 403, (path,)
        else:
            r = call(http, method, path, {"accept": "text/html"})
            assert r.status_code not in (303, 401, 403), (path, r.status_code)
    assert call(http, "GET", "/operator", {"accept": "text/html"}).status_code == 200


# ---- public routes: public, but not unprotected ------------------------------------------------


def test_public_routes_answer_without_credentials_and_keep_their_own_protection(authz_world):
    http = authz_world.http
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/metrics").status_code == 200
    for path in ("/webhooks/typeform", "/webhooks/typeform/extra"):
        r = http.post(path, content=b'{"event_type": "form_response"}')
        assert r.status_code == 401 and "Typeform-Signature" in r.json()["detail"], path
        assert http.get(path).status_code == 405
    assert http.get("/portal/download/" + "x" * 43).status_code == 404
    r = http.post("/portal/download/" + "x" * 43, data={})
    assert r.status_code == 403  # no form nonce: the link cannot be spent by a bare POST
    assert http.get("/v1/rewards/epochs/2026-01-01").status_code == 404
    assert http.get("/v1/rewards/claims/" + "0x" + "ab" * 20).status_code == 200
    assert http.get("/admin/login").status_code == 200


def test_metrics_need_the_token_when_one_is_configured(db_url, tmp_path):
    from api.main import create_app

    settings = Settings(env="test", database_url=db_url, state_dir=tmp_path / "state",
                        metrics_token="scrape-secret")
    with TestClient(create_app(settings)) as http:
        assert http.get("/metrics").status_code == 401
        assert http.get("/metrics", headers=bearer("wrong")).status_code == 401
        r = http.get("/metrics", headers=bearer("scrape-secret"))
        assert r.status_code == 200 and "noderr_api_requests" in r.text
