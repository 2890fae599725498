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
