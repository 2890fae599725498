"""Admin pages for the model registry (promote, canary %, retire, roll back), task API clients
(create with a key shown once, issue, revoke, disable) and reward epochs.

Each action calls the owning area's core function, which validates it and writes the audit entry.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse
from sqlalchemy import select

from api.admin.flash import add_flash
from api.admin.routing import protected_router
from api.admin.templating import templates
from api.deps import CurrentAdmin, DbId, SessionDep
from api.admin.views.network import model_rollouts
from noderr_core.audit import Actor
from noderr_core.rewards.history import latest_epoch_leaderboard, recent_epochs

router = protected_router()


# ---- models ------------------------------------------------------------------------------------

@router.get("/admin/models", include_in_schema=False)
def models_page(request: Request, session: SessionDep) -> Response:
    from noderr_core.modelstore.registry import list_rollout_events

    return templates.TemplateResponse(request, "admin/models.html", {
        "active_nav": "models",
        "rollouts": model_rollouts(session),
        "events": list_rollout_events(session, limit=30),
    })


def _registry_action(request: Request, session, action, message) -> Response:
    """Run a registry change; `message(result)` says what happened (flash)."""
    from noderr_core.modelstore.registry import ModelVersionNotFound, RegistryError

    try:
        result = action()
    except ModelVersionNotFound as exc:
        session.rollback()
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except RegistryError as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    response = RedirectResponse("/admin/models", status_code=status.HTTP_303_SEE_OTHER)
    add_flash(request, response, message(result))
    return response


@router.post("/admin/models/{model_name}/versions/{version}/promote",
             include_in_schema=False)
def promote(request: Request, model_name: str, version: DbId, admin: CurrentAdmin,
            session: SessionDep, to_status: Annotated[str, Form(max_length=16)] = "",
            rollout_percent: Annotated[int | None, Form(ge=0, le=100)] = None) -> Response:
    from noderr_core.modelstore.registry import promote_model_version

    if to_status not in ("canary", "active", "retired", "staged"):
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            detail="choose what to do: canary (with a %), active or retired")
    if to_status == "canary" and rollout_percent is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            detail="a canary needs a rollout percentage between 1 and 99")
    label = {"canary": f"in canary at {rollout_percent} %", "active": "active for every node",
             "retired": "retired", "staged": "back to staged"}[to_status]
    return _registry_action(
        request, session,
        lambda: promote_model_version(session, model_name=model_name, version=version,
                                      to_status=to_status, rollout_percent=rollout_percent,
                                      actor=Actor.admin(admin)),
        lambda _row: f"{model_name} v{version} is now {label}. "
        "Nodes pick it up at their next beacon poll.")


@router.post("/admin/models/{model_name}/rollback", include_in_schema=False)
def rollback(request: Request, model_name: str, admin: CurrentAdmin, session: SessionDep,
             to_version: Annotated[int | None, Form(ge=1)] = None) -> Response:
    from noderr_core.modelstore.registry import rollback_model

    return _registry_action(
        request, session,
        lambda: rollback_model(session, model_name=model_name, to_version=to_version,
                               actor=Actor.admin(admin)),
        lambda row: f"{model_name} rolled back: v{row.version} is active again.")


# ---- clients -----------------------------------------------------------------------------------

def _clients_page(request: Request, session, *, new_key: str | None = None,
                  new_key_client: str | None = None, status_code: int = 200) -> Response:
    from noderr_core.tasks.clients import list_clients

    return templates.TemplateResponse(request, "admin/clients.html", {
        "active_nav": "clients", "clients": list_clients(session),
        "new_key": new_key, "new_key_client": new_key_client,
    }, status_code=status_code, headers={"Cache-Control": "no-store"} if new_key else None)


@router.get("/admin/clients", include_in_schema=False)
def clients_page(request: Request, session: SessionDep) -> Response:
    return _clients_page(request, session)


def _client_error(session, exc: Exception) -> HTTPException:
    session.rollback()
    text = str(exc)
    code = status.HTTP_404_NOT_FOUND if text.startswith("no client") else (
        status.HTTP_409_CONFLICT if "already exists" in text or "disabled" in text
        else status.HTTP_400_BAD_REQUEST)
    return HTTPException(code, detail=text)


@router.post("/admin/clients", include_in_schema=False)
def create_client_submit(request: Request, admin: CurrentAdmin, session: SessionDep,
                         name: Annotated[str, Form(max_length=400)] = "") -> Response:
    """Creates the client and shows its API key on this response only (it is never stored)."""
    from noderr_core.tasks.clients import ClientError, create_client

    try:
        client, plaintext = create_client(session, name=name, actor=Actor.admin(admin))
    except ClientError as exc:
        raise _client_error(session, exc) from None
    return _clients_page(request, session, new_key=plaintext, new_key_client=client.name,
                         status_code=status.HTTP_201_CREATED)


@router.post("/admin/clients/{client_id}/keys", include_in_schema=False)
def issue_key_submit(request: Request, client_id: DbId, admin: CurrentAdmin,
                     session: SessionDep) -> Response:
    from noderr_core.tables.tasks import Client
    from noderr_core.tasks.clients import ClientError, issue_client_key

    try:
        _key, plaintext = issue_client_key(session, client_id=client_id, actor=Actor.admin(admin))
    except ClientError as exc:
        raise _client_error(session, exc) from None
    client = session.get(Client, client_id)
    return _clients_page(request, session, new_key=plaintext, new_key_client=client.name,
                         status_code=status.HTTP_201_CREATED)


@router.post("/admin/clients/keys/{key_id}/revoke", include_in_schema=False)
def revoke_key_submit(request: Request, key_id: str, admin: CurrentAdmin,
                      session: SessionDep) -> Response:
    from noderr_core.tasks.clients import ClientError, revoke_client_key

    try:
        revoke_client_key(session, key_id=key_id, actor=Actor.admin(admin))
    except ClientError as exc:
        raise _client_error(session, exc) from None
    response = RedirectResponse("/admin/clients", status_code=status.HTTP_303_SEE_OTHER)
    add_flash(request, response, f"Key {key_id} revoked: requests with it are refused from now on.")
    return response


@router.post("/admin/clients/{client_id}/disable", include_in_schema=False)
def disable_client_submit(request: Request, client_id: DbId, admin: CurrentAdmin,
                          session: SessionDep) -> Response:
    from noderr_core.tasks.clients import ClientError, disable_client

    try:
        client = disable_client(session, client_id=client_id, actor=Actor.admin(admin))
    except ClientError as exc:
        raise _client_error(session, exc) from None
    response = RedirectResponse("/admin/clients", status_code=status.HTTP_303_SEE_OTHER)
    add_flash(request, response, f"Client {client.name} disabled: all its keys stop working.")
    return response


# ---- rewards -----------------------------------------------------------------------------------

@router.get("/admin/rewards", include_in_schema=False)
def rewards_page(request: Request, session: SessionDep) -> Response:
    from noderr_core.tables.rewards import ChainTransaction

    return templates.TemplateResponse(request, "admin/rewards.html", {
        "active_nav": "rewards",
        "epochs": recent_epochs(session),
        "current": latest_epoch_leaderboard(session, top=20),
        "chain_txs": list(session.scalars(
            select(ChainTransaction).order_by(ChainTransaction.created_at.desc()).limit(20))),
    })
