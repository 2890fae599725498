"""The operator's own pages: wallet sign-in (EIP-4361), nodes, earnings, key rotation, more nodes,
wallet change, and the claim in the browser.

Public:   GET  /operator/sign-in                the sign-in page (the wallet signs in the browser)
          POST /operator/sign-in/challenge      {address} → the EIP-4361 message to sign
          POST /operator/sign-in                {message, signature} → session cookie
          GET  /operator/static/{name}          the page's script and style (no inline script: CSP)
Operator: GET  /operator, /operator/nodes/{id}, /operator/claim.json
          POST /operator/sign-out, /operator/nodes/{id}/rotate-key, /operator/node-requests,
               /operator/wallet/challenge, /operator/wallet   (CSRF token required)

The JSON POSTs accept only `application/json` (a cross-site form cannot send it without a CORS
preflight, which this API never grants) and refuse a foreign Origin; forms carry the session's
CSRF token. The session cookie is HttpOnly, SameSite=Lax, and Secure outside local development.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response, status
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from api.admin.flash import add_flash
from api.deps import (
    OPERATOR_SESSION_COOKIE,
    CurrentOperator,
    SessionDep,
    SettingsDep,
    require_operator,
)
from api.operator.templating import OperatorRoute, templates
from api.operator.views import earnings_series, operator_node, operator_overview
from api.routes.portal import _same_origin
from noderr_core.slashing.cases import cases_for_node
from noderr_core.staking import node_stake_view
from noderr_core.admin.sessions import csrf_matches
from noderr_core.operators.actions import (
    OperatorActionRefused,
    request_further_node,
    rotate_own_node_key,
)
from noderr_core.operators.sessions import (
    SignInRefused,
    SignInSite,
    change_wallet_with_signature,
    issue_challenge,
    issue_wallet_change_challenge,
    operator_by_wallet,
    normalize_address,
    sign_in_with_ethereum,
    sign_out,
)
from noderr_core.settings import Settings

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STATIC_FILES = {"operator.js": "text/javascript", "operator.css": "text/css"}
CSRF_REFUSED = ("This form's security token (CSRF) is missing or does not match your session. "
                "Nothing was changed: reload the page and try again.")
_PRIVATE = {"Cache-Control": "no-store"}

public_router = APIRouter(prefix="/operator", tags=["operator"], include_in_schema=False,
                          route_class=OperatorRoute)


async def require_operator_csrf(request: Request, operator: CurrentOperator) -> None:
    """Refuse a state-changing request whose CSRF token does not match the operator's session."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    submitted = request.headers.get("x-csrf-token")
    if submitted is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        value = (await request.form()).get("csrf_token")
        submitted = value if isinstance(value, str) else None
    if not csrf_matches(request.state.operator_session, submitted):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=CSRF_REFUSED)


router = APIRouter(prefix="/operator", tags=["operator"], include_in_schema=False,
                   route_class=OperatorRoute,
                   dependencies=[Depends(require_operator), Depends(require_operator_csrf)])


def sign_in_site(settings: Settings) -> SignInSite:
    return SignInSite.from_base_url(settings.public_base_url, settings.chain_id)


class ChallengeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str = Field(max_length=64)


class SignedMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(max_length=8000)
    signature: str = Field(max_length=200)


class WalletChangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    new_wallet: str = Field(max_length=64)


def _json_from_this_site(request: Request, settings: Settings) -> None:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            detail="send the request as application/json")
    if not _same_origin(request, settings.public_base_url):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="cross-site request refused: sign in on this site's own page")


def _refused(session, exc: SignInRefused | OperatorActionRefused) -> JSONResponse:
    session.rollback()  # a refusal changes nothing
    return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=_PRIVATE)


# ---- public: sign-in and static files ----------------------------------------------------------

@public_router.get("/sign-in")
def sign_in_page(request: Request, settings: SettingsDep) -> Response:
    site = sign_in_site(settings)
    return templates.TemplateResponse(request, "operator/sign_in.html", {
        "site": site, "session_hours": settings.session_ttl_hours,
    }, headers=_PRIVATE)


@public_router.post("/sign-in/challenge")
def sign_in_challenge(body: ChallengeRequest, request: Request, session: SessionDep,
                      settings: SettingsDep) -> Response:
    _json_from_this_site(request, settings)
    try:
        address = normalize_address(body.address)
        # Nonces are only issued to operators' wallets, so anonymous callers cannot fill the table.
        if operator_by_wallet(session, address) is None:
            raise SignInRefused(f"{address} is not the payout wallet of any Noderr operator: "
                                "connect the wallet you gave in your application", status=403)
        message = issue_challenge(session, sign_in_site(settings), address=address)
    except SignInRefused as exc:
        return _refused(session, exc)
    return JSONResponse({"message": message.to_text(), "nonce": message.nonce,
                         "expires_at": message.expiration_time}, headers=_PRIVATE)


@public_router.post("/sign-in")
def sign_in(body: SignedMessage, request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    _json_from_this_site(request, settings)
    try:
        issued = sign_in_with_ethereum(
            session, sign_in_site(settings), text=body.message, signature=body.signature,
            ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"), ttl_hours=settings.session_ttl_hours,
            previous_token=request.cookies.get(OPERATOR_SESSION_COOKIE),
        )
    except SignInRefused as exc:
        return _refused(session, exc)
    response = JSONResponse({"redirect": "/operator", "wallet": issued.operator.wallet_address,
                             "wallet_proven_now": issued.first_proof}, headers=_PRIVATE)
    response.set_cookie(OPERATOR_SESSION_COOKIE, issued.token, max_age=settings.session_ttl_hours * 3600,
                        path="/operator", httponly=True, samesite="lax", secure=not settings.is_local)
    if issued.first_proof:
        add_flash(request, response, f"Your payout wallet {issued.operator.wallet_address} is proven: "
                                     "rewards now accrue to it.")
    return response


@public_router.get("/static/{name}")
def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no static file {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name],
                        headers={"Cache-Control": "no-cache"})


# ---- the operator's pages ----------------------------------------------------------------------

def _chain_ids(request: Request, settings: Settings) -> tuple[str | None, int]:
    from api.routes.rewards import _chain_view

    addresses, _client = _chain_view(request, settings)
    return (addresses.reward_distributor if addresses else None,
            addresses.chain_id if addresses else settings.chain_id)


@router.get("")
def overview_page(request: Request, operator: CurrentOperator, session: SessionDep,
                  settings: SettingsDep) -> Response:
    overview = operator_overview(session, operator)
    distributor, chain_id = _chain_ids(request, settings)
    return templates.TemplateResponse(request, "operator/overview.html", {
        "o": overview, "earnings_chart": earnings_series(overview.earnings),
        "distributor": distributor, "chain_id": chain_id, "chain_id_hex": hex(chain_id),
    }, headers=_PRIVATE)


@router.get("/nodes/{node_id}")
def node_page(node_id: str, request: Request, operator: CurrentOperator, session: SessionDep) -> Response:
    found = operator_node(session, operator, node_id[:64])
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"node {node_id[:64]} is not one of your nodes")
    view, earnings = found
    return templates.TemplateResponse(request, "operator/node.html", {
        "n": view, "node": view.node, "earnings": earnings,
        "earnings_chart": earnings_series(earnings),
        "stake": node_stake_view(session, view.node.id),
        "slashing_cases": cases_for_node(session, view.node.id),
    }, headers=_PRIVATE)


@router.get("/claim.json")
def claim_document(request: Request, operator: CurrentOperator, session: SessionDep,
                   settings: SettingsDep) -> Response:
    """The operator's claim: cumulative amount and proof, and claimed/claimable read on-chain."""
    from api.routes.rewards import _claim_with_chain_state

    return JSONResponse(_claim_with_chain_state(request, session, settings, operator.wallet_address),
                        headers=_PRIVATE)


@router.post("/sign-out")
def sign_out_submit(request: Request, operator: CurrentOperator, session: SessionDep) -> Response:
    sign_out(session, request.cookies.get(OPERATOR_SESSION_COOKIE, ""), operator)
    response = RedirectResponse("/operator/sign-in", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(OPERATOR_SESSION_COOKIE, path="/operator")
    return response


def _back(request: Request, target: str, message: str, level: str = "success") -> Response:
    response = RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    add_flash(request, response, message, level)
    return response


@router.post("/nodes/{node_id}/rotate-key")
def rotate_key(node_id: str, request: Request, operator: CurrentOperator, session: SessionDep,
               settings: SettingsDep) -> Response:
    node_id = node_id[:64]
    try:
        rotate_own_node_key(session, operator, node_id, settings)
    except OperatorActionRefused as exc:  # SessionDep rolls back on the exception
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _back(request, f"/operator/nodes/{node_id}",
                 f"Node {node_id} has a new API key: a single-use download link for its new bundle "
                 f"is on its way to {operator.email}. The old key stops working now.")


@router.post("/node-requests")
def request_node(request: Request, operator: CurrentOperator, session: SessionDep,
                 region: Annotated[str | None, Form(max_length=200)] = None,
                 tier: Annotated[str | None, Form(max_length=200)] = None,
                 note: Annotated[str | None, Form(max_length=4000)] = None) -> Response:
    try:
        app = request_further_node(session, operator, region=region, tier=tier, note=note)
    except OperatorActionRefused as exc:  # SessionDep rolls back on the exception
        raise HTTPException(exc.status, detail=str(exc)) from None
    return _back(request, "/operator",
                 f"Request #{app.id} for another node was sent to the admins; you will get an e-mail "
                 "with its download link once it is approved.")


@router.post("/wallet/challenge")
def wallet_change_challenge(body: WalletChangeRequest, request: Request, operator: CurrentOperator,
                            session: SessionDep, settings: SettingsDep) -> Response:
    _json_from_this_site(request, settings)
    try:
        message = issue_wallet_change_challenge(session, sign_in_site(settings), operator, body.new_wallet)
    except SignInRefused as exc:
        return _refused(session, exc)
    return JSONResponse({"message": message.to_text(), "sign_with": operator.wallet_address},
                        headers=_PRIVATE)


@router.post("/wallet")
def wallet_change(body: SignedMessage, request: Request, operator: CurrentOperator,
                  session: SessionDep, settings: SettingsDep) -> Response:
    _json_from_this_site(request, settings)
    try:
        new_wallet = change_wallet_with_signature(session, sign_in_site(settings), operator,
                                                  text=body.message, signature=body.signature)
    except SignInRefused as exc:
        return _refused(session, exc)
    response = JSONResponse({"redirect": "/operator/sign-in", "wallet": new_wallet}, headers=_PRIVATE)
    response.delete_cookie(OPERATOR_SESSION_COOKIE, path="/operator")
    add_flash(request, response, f"Payouts now go to {new_wallet}. Sign in with it to prove it: "
                                 "rewards accrue to it from then on.")
    return response
