"""Operator portal: the emailed download link.

GET  /portal/download/{token}  shows the operator's status and a Download button; never consumes
                               (mail scanners and link previews open links).
POST /portal/download/{token}  consumes the token once and returns the zip bundle.

Status codes for unusable links: 410 Gone for a link that existed but was used, expired or was
revoked (it will never work again, and the page says why); 404 for a token we never issued. The
difference leaks nothing: a valid-looking token carries 256 random bits.

CSRF: the token in the path is itself the capability (256 bits, single use), so a cross-site
attacker who could forge the POST would already hold the secret. We still refuse cross-origin POSTs
(Origin, else Referer, must be our origin when the browser sends one) and require the form nonce
that only our GET page carries (an HMAC of the token under NODERR_SECRET_KEY): a POST that did not
come from our page — a scanner, a prefetcher, another site — cannot spend the link.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from api.deps import SessionDep, SettingsDep
from noderr_core.onboarding.portal import (
    DownloadLinkView,
    LinkState,
    LinkUnavailable,
    consume_download_token,
    form_nonce,
    form_nonce_valid,
    inspect_download_link,
)

router = APIRouter(prefix="/portal", tags=["portal"], include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))

# The URL carries a secret: never cache the page, never leak it in a Referer, never index it.
_PRIVATE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                    "X-Robots-Tag": "noindex, nofollow"}

_UNAVAILABLE = {
    LinkState.USED: (410, "This link was already used",
                     "The configuration bundle was downloaded with this link on {used}. Each link works once."),
    LinkState.EXPIRED: (410, "This link has expired",
                        "This download link expired on {expires}."),
    LinkState.REVOKED: (410, "This link was replaced",
                        "A newer download link was issued for this node on {revoked}; this one no longer works."),
    LinkState.UNKNOWN: (404, "Unknown link",
                        "This download link does not exist. Check that you copied the whole link from the email."),
}


def _fmt(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "an earlier date"


def _unavailable(request: Request, view: DownloadLinkView) -> HTMLResponse:
    status, heading, message = _UNAVAILABLE[view.state]
    message = message.format(used=_fmt(view.used_at), expires=_fmt(view.expires_at), revoked=_fmt(view.revoked_at))
    return templates.TemplateResponse(
        request, "portal/unavailable.html",
        {"heading": heading, "message": message, "state": view.state.value, "view": view},
        status_code=status, headers=_PRIVATE_HEADERS,
    )


def _forbidden(request: Request, message: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "portal/unavailable.html",
        {"heading": "Request refused", "message": message, "state": "forbidden", "view": None},
        status_code=403, headers=_PRIVATE_HEADERS,
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _same_origin(request: Request, public_base_url: str) -> bool:
    allowed = {_origin(public_base_url), _origin(str(request.base_url))}
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return origin.lower() in allowed
    referer = request.headers.get("referer")
    if referer:
        return _origin(referer) in allowed
    return True  # non-browser clients send neither; the nonce still has to match


@router.get("/download/{token}", response_class=HTMLResponse)
def download_page(request: Request, token: str, session: SessionDep, settings: SettingsDep) -> HTMLResponse:
    view = inspect_download_link(session, token)
    if view.state != LinkState.VALID:
        return _unavailable(request, view)
    return templates.TemplateResponse(
        request, "portal/download.html",
        {"view": view, "nonce": form_nonce(settings, token), "action": f"/portal/download/{token}"},
        headers=_PRIVATE_HEADERS,
    )


@router.post("/download/{token}")
def download_bundle(request: Request, token: str, session: SessionDep, settings: SettingsDep,
                    nonce: Annotated[str | None, Form()] = None) -> Response:
    if not _same_origin(request, settings.public_base_url):
        return _forbidden(request, "Cross-site request refused: open the link from your email and use its Download button.")
    if not form_nonce_valid(settings, token, nonce):
        return _forbidden(request, "This download must be started from the download page: open the link from your email and press Download.")
    client = request.client.host if request.client else None
    try:
        bundle = consume_download_token(session, token, settings, ip=client,
                                        user_agent=request.headers.get("user-agent"))
    except LinkUnavailable as exc:
        return _unavailable(request, exc.view)
    # SessionDep commits before the body is sent: the token is spent only if the download is recorded.
    return Response(
        bundle.content,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{bundle.filename}"', **_PRIVATE_HEADERS},
    )
