"""Admin policy applied at router level: every admin route needs a session, every admin form the
CSRF check (api/routes/admin.py), including routes added later."""

from __future__ import annotations

from fastapi.routing import iter_route_contexts

from api.deps import require_admin, require_csrf
from api.main import create_app
from noderr_core.settings import Settings


def _calls(dependant) -> set:
    found = {dependant.call}
    for sub in dependant.dependencies:
        found |= _calls(sub)
    return found


def test_every_admin_route_requires_a_session_and_every_admin_form_csrf(tmp_path):
    app = create_app(Settings(env="test", state_dir=tmp_path))
    checked = 0
    for route in iter_route_contexts(app.routes):
        if not (route.path or "").startswith("/admin") or not hasattr(route, "dependant"):
            continue
        if route.path == "/admin/login":
            continue
        calls = _calls(route.dependant)
        assert require_admin in calls, route.path
        if route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            assert require_csrf in calls, route.path
            checked += 1
    assert checked >= 15


def test_key_format_guard_knows_every_node_and_client_route_with_a_body(tmp_path):
    """api/request_guard.py refuses key-less bodies by path; a new protocol route must be listed
    there with the right key kind, or its callers would get the other kind's 401."""
    from api.request_guard import BODY_METHODS, required_key_prefix

    app = create_app(Settings(env="test", state_dir=tmp_path))
    checked = 0
    for route in iter_route_contexts(app.routes):
        path = route.path or ""
        if not path.startswith("/v1/") or not hasattr(route, "dependant"):
            continue
        names = {getattr(call, "__name__", "") for call in _calls(route.dependant)}
        expected = "nk" if "require_node" in names else "ck" if "require_client" in names else None
        for method in (route.methods or set()) & BODY_METHODS:
            assert required_key_prefix(method, path) == expected, (method, path)
            checked += 1
    assert checked >= 6
