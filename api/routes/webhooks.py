"""Typeform webhook: `POST /webhooks/typeform` (signature check, then idempotent intake).

Typeform disables a webhook for good when it answers 404 or 410, so this router never does: any
method or sub-path under /webhooks/typeform gets a deliberate answer (POST is handled, trailing
slashes and sub-paths included, since a mistyped webhook URL must not silently lose applications;
other methods get 405).
"""

from __future__ import annotations


from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ErrorDetail
from noderr_core.onboarding.intake import UningestableDelivery, receive_delivery
from noderr_core.onboarding.typeform import (
    SIGNATURE_HEADER,
    IngestOutcome,
    MalformedDelivery,
    load_field_map,
    signature_valid,
)

router = APIRouter(tags=["webhooks"])

MAX_BODY_BYTES = 1_000_000  # Typeform payloads are a few kB; refuse anything absurd
_HEADERS_NOT_KEPT = {"cookie", "authorization"}


def _intake(request: Request, body: bytes, headers: dict[str, str]) -> JSONResponse:
    settings = request.app.state.settings
    factory = request.app.state.session_factory
    try:
        field_map = load_field_map(settings.typeform_field_map)
    except ValueError as exc:  # operator misconfiguration: 500 makes Typeform retry later
        return JSONResponse({"detail": str(exc)}, status_code=500)
    try:
        result = receive_delivery(factory, body=body, headers=headers, field_map=field_map)
    except (MalformedDelivery, UningestableDelivery) as exc:
        status_code = 400 if isinstance(exc, MalformedDelivery) else 422
        return JSONResponse({"detail": f"{exc}. The body was kept for review."}, status_code=status_code)
    if result.outcome == IngestOutcome.IGNORED_PARTIAL:
        return JSONResponse({"status": "ignored", "reason": "partial responses are not applications"})
    if result.outcome == IngestOutcome.DUPLICATE:
        return JSONResponse({"status": "duplicate", "application_id": result.application_id})
    return JSONResponse({"status": "received", "application_id": result.application_id})


async def _receive(request: Request) -> JSONResponse:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return JSONResponse({"detail": f"body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
    secret = request.app.state.settings.typeform_secret.get_secret_value()
    if not signature_valid(secret, body, request.headers.get(SIGNATURE_HEADER)):
        # Nothing is stored: an unsigned body is not ours to keep.
        detail = ("missing Typeform-Signature header" if SIGNATURE_HEADER.lower() not in request.headers
                  else "Typeform-Signature does not match the body (check NODERR_TYPEFORM_SECRET)")
        return JSONResponse({"detail": detail}, status_code=401)
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HEADERS_NOT_KEPT}
    return await run_in_threadpool(_intake, request, body, headers)


def _method_not_allowed() -> JSONResponse:
    return JSONResponse({"detail": "this endpoint only accepts POST from Typeform"}, status_code=405,
                        headers={"Allow": "POST"})


# Documented so the published OpenAPI lists every answer Typeform (or a fuzzer) can get.
_WEBHOOK_RESPONSES = {
    400: {"model": ErrorDetail, "description": "malformed delivery (kept as a dead letter for review)"},
    422: {"model": ErrorDetail, "description": "signed delivery that could not be ingested (kept as a dead letter)"},
    401: {"model": ErrorDetail, "description": "missing or wrong Typeform-Signature"},
    413: {"model": ErrorDetail, "description": f"body larger than {MAX_BODY_BYTES} bytes"},
}


@router.post("/webhooks/typeform", summary="Typeform form_response webhook", responses=_WEBHOOK_RESPONSES)
async def typeform_webhook(request: Request) -> JSONResponse:
    return await _receive(request)


@router.post("/webhooks/typeform/{subpath:path}", include_in_schema=False)
async def typeform_webhook_subpath(request: Request, subpath: str) -> JSONResponse:
    return await _receive(request)


@router.api_route("/webhooks/typeform", methods=["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                  include_in_schema=False)
@router.api_route("/webhooks/typeform/{subpath:path}",
                  methods=["GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"], include_in_schema=False)
async def typeform_webhook_other_methods() -> JSONResponse:
    return _method_not_allowed()
