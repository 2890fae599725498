"""The admin dashboard (/admin): sign-in, applications, audit log and network monitoring pages.

The pages live in api/admin/routes_*.py; this module assembles them into the one `router` that
api/main.py includes. Everything except the sign-in form requires an admin session (each page
router is built with `protected_router()`, i.e. a router-level `require_admin` dependency).
"""

from fastapi import APIRouter

from api.admin import routes_auth, routes_catalog, routes_monitoring, routes_onboarding
from api.admin import routes_operator_wallet

router = APIRouter()
router.include_router(routes_auth.public_router)
router.include_router(routes_auth.session_router)
router.include_router(routes_monitoring.router)
router.include_router(routes_onboarding.router)
router.include_router(routes_catalog.router)
router.include_router(routes_operator_wallet.router)
