"""The admin dashboard (/admin): sign-in, applications, audit log and network monitoring pages.

The pages live in api/admin/routes_*.py; this module assembles them into the one `router` that
api/main.py includes. Everything except the sign-in form requires an admin session (each page
router is built with `protected_router()`, i.e. a router-level `require_admin` dependency).
"""

from fastapi import APIRouter, Depends

from api.admin import routes_auth, routes_catalog, routes_monitoring, routes_onboarding, routes_slashing
from api.admin import routes_operator_wallet
from api.deps import require_csrf

# require_csrf passes GET/HEAD/OPTIONS untouched, so it can cover whole routers.
_CSRF = [Depends(require_csrf)]

router = APIRouter()
router.include_router(routes_auth.public_router)
router.include_router(routes_auth.session_router, dependencies=_CSRF)
router.include_router(routes_monitoring.router, dependencies=_CSRF)
router.include_router(routes_onboarding.router, dependencies=_CSRF)
router.include_router(routes_catalog.router, dependencies=_CSRF)
router.include_router(routes_slashing.router, dependencies=_CSRF)
router.include_router(routes_operator_wallet.router, dependencies=_CSRF)
