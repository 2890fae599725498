"""Sign in and sign out of the admin dashboard."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse

from api.deps import (
    CSRF_REFUSED,
    SESSION_COOKIE,
    CurrentAdmin,
    SessionDep,
    SettingsDep,
    safe_next_path,
)
from api.admin.flash import add_flash
from api.admin.routing import AdminRoute, protected_router
from api.admin.templating import templates
from noderr_core.admin.sessions import (
    MIN_PASSWORD_LENGTH,
    InvalidCredentials,
    PasswordChangeRefused,
    change_admin_password,
    DEVICE_COOKIE_MAX_AGE,
    LoginRateLimited,
    authenticate_admin,
    issue_device_cookie,
    logout,
    trusted_device,
)
from noderr_core.security import PasswordHashBusy, new_token

# Before there is a session, the login form is protected by a double-submit token: a random
# value in a SameSite cookie that must come back in the form (a cross-site page can neither read
# nor set it), so nobody can sign a victim's browser into an attacker's account.
LOGIN_CSRF_COOKIE = "noderr_login_csrf"
# OWASP device cookie: a browser that signed in before keeps its own sign-in allowance.
DEVICE_COOKIE = "noderr_admin_device"
BUSY_RETRY_AFTER_SECONDS = 5


def _device_for(request: Request, email: str) -> str | None:
    secret = request.app.state.settings.secret_key.get_secret_value()
    return trusted_device(secret, email, request.cookies.get(DEVICE_COOKIE))

public_router = APIRouter(route_class=AdminRoute, tags=["admin"])
session_router = protected_router()


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login_page(request: Request, *, next_path: str, email: str = "", error: str | None = None,
                status_code: int = 200, headers: dict | None = None) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_token(24)
    request.state.login_csrf = token
    response = templates.TemplateResponse(
        request,
        "admin/login.html",
        {"next": next_path, "email": email, "error": error},
        status_code=status_code,
        headers=headers,
    )
    settings = request.app.state.settings
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, max_age=3600, path="/admin/login", httponly=True,
        samesite="strict", secure=not settings.is_local,
    )
    return response


@public_router.get("/admin/login", include_in_schema=False)
def login_form(request: Request, next: str = "/admin") -> Response:
    return _login_page(request, next_path=safe_next_path(next))


@public_router.post("/admin/login", include_in_schema=False)
def login_submit(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=500)] = "/admin",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected or not csrf_token or not hmac.compare_digest(expected, csrf_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=CSRF_REFUSED)
    next_path = safe_next_path(next)
    device = _device_for(request, email)
    try:
        issued = authenticate_admin(
            session,
            email=email,
            password=password,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
            ttl_hours=settings.session_ttl_hours,
            limit_per_minute=settings.login_rate_limit_per_minute,
            previous_token=request.cookies.get(SESSION_COOKIE),
            device=device,
        )
    except PasswordHashBusy as exc:
        return _login_page(
            request, next_path=next_path, email=email, error=str(exc),
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
        )
    except LoginRateLimited as exc:
        return _login_page(
            request, next_path=next_path, email=email, error=str(exc),
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": str(exc.retry_after_seconds)},
        )
    except InvalidCredentials as exc:
        # The attempt was recorded (and committed) before the password was checked.
        return _login_page(
            request, next_path=next_path, email=email, error=str(exc),
            status_code=status.HTTP_401_UNAUTHORIZED,
        )
    response = RedirectResponse(next_path, status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        SESSION_COOKIE,
        issued.token,
        max_age=settings.session_ttl_hours * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=not settings.is_local,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin/login")
    response.set_cookie(
        DEVICE_COOKIE,
        issue_device_cookie(settings.secret_key.get_secret_value(), email, device),
        max_age=DEVICE_COOKIE_MAX_AGE, path="/admin", httponly=True, samesite="strict",
        secure=not settings.is_local,
    )
    return response


@session_router.post("/admin/logout", include_in_schema=False)
def logout_submit(request: Request, admin: CurrentAdmin, session: SessionDep) -> Response:
    logout(session, request.cookies.get(SESSION_COOKIE, ""), admin)
    response = RedirectResponse("/admin/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(SESSION_COOKIE, path="/")
    add_flash(request, response, "You are signed out.", "info")
    return response


def _account_page(request: Request, *, error: str | None = None, status_code: int = 200,
                  headers: dict | None = None) -> Response:
    return templates.TemplateResponse(
        request, "admin/account.html",
        {"error": error, "min_length": MIN_PASSWORD_LENGTH},
        status_code=status_code, headers={"Cache-Control": "no-store", **(headers or {})},
    )


@session_router.get("/admin/account", include_in_schema=False)
def account_page(request: Request, admin: CurrentAdmin) -> Response:
    return _account_page(request)


@session_router.post("/admin/account/password", include_in_schema=False)
def change_password_submit(
    request: Request,
    admin: CurrentAdmin,
    session: SessionDep,
    current_password: Annotated[str, Form(max_length=1024)] = "",
    new_password: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    settings = request.app.state.settings
    try:
        revoked = change_admin_password(
            session, admin, current_password=current_password, new_password=new_password,
            keep_session_token=request.cookies.get(SESSION_COOKIE),
            ip=client_ip(request), device=_device_for(request, admin.email),
            limit_per_minute=settings.login_rate_limit_per_minute,
        )
    except LoginRateLimited as exc:
        return _account_page(request, error=str(exc), status_code=status.HTTP_429_TOO_MANY_REQUESTS,
                             headers={"Retry-After": str(exc.retry_after_seconds)})
    except PasswordHashBusy as exc:
        return _account_page(request, error=str(exc), status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
                             headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})
    except PasswordChangeRefused as exc:
        return _account_page(request, error=str(exc), status_code=status.HTTP_400_BAD_REQUEST)
    response = RedirectResponse("/admin/account", status_code=status.HTTP_303_SEE_OTHER)
    add_flash(request, response, f"Password changed; {revoked} other session(s) signed out.", "info")
    return response
