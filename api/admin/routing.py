"""The admin router's route class: refusals become readable pages, and flash cookies are cleared.

FastAPI renders HTTPException as JSON. An admin in a browser should instead see a page saying what
went wrong and how to go on, with the navigation still there; API clients keep getting JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from api.deps import wants_html
from api.admin.flash import FLASH_COOKIE
from api.admin.templating import templates

_TITLES = {
    400: "Bad request",
    403: "Refused",
    404: "Not found",
    409: "Already done",
    422: "Incomplete form",
    429: "Too many attempts",
}


def render_error(request: Request, status_code: int, message: str, headers=None, *,
                 page_templates=templates, template: str = "admin/error.html") -> Response:
    return page_templates.TemplateResponse(
        request,
        template,
        {"status_code": status_code, "title": _TITLES.get(status_code, "Error"), "message": message},
        status_code=status_code,
        headers=headers,
    )


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err.get("loc", ())[1:]) or "request"
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "the form is incomplete"


def _only_path_errors(exc: RequestValidationError) -> bool:
    errors = exc.errors()
    return bool(errors) and all((err.get("loc") or ("",))[0] == "path" for err in errors)


class AdminRoute(APIRoute):
    # A subclass for other signed-in pages (the operator's) renders refusals with its own layout.
    error_templates = templates
    error_template = "admin/error.html"

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        page = {"page_templates": self.error_templates, "template": self.error_template}

        async def admin_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except HTTPException as exc:
                if exc.status_code < 400 or not wants_html(request):
                    raise
                response = render_error(request, exc.status_code, str(exc.detail), exc.headers, **page)
            except RequestValidationError as exc:
                if _only_path_errors(exc):
                    # An id outside the column range (or not a number) names no row: 404.
                    message = "There is no such record: check the address."
                    if not wants_html(request):
                        return JSONResponse({"detail": message}, status_code=404)
                    response = render_error(request, 404, message)
                elif not wants_html(request):
                    raise
                else:
                    response = render_error(request, 422, _validation_message(exc), **page)
            if getattr(request.state, "flashes_read", False) and not any(
                h.startswith(f"{FLASH_COOKIE}=") for h in response.headers.getlist("set-cookie")
            ):
                response.delete_cookie(FLASH_COOKIE, path="/")
            return response

        return admin_handler


def protected_router(**kwargs: Any) -> APIRouter:
    """A router whose every route requires a signed-in admin (policy at router level)."""
    from api.deps import require_admin

    return APIRouter(
        route_class=AdminRoute, dependencies=[Depends(require_admin)], tags=["admin"], **kwargs
    )
