"""Admin monitoring pages: network overview, nodes (with suspend / resume / remove / rotate key)
and operators."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Form, HTTPException, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from api.admin.flash import add_flash
from api.admin.routes_onboarding import reissue_node_link
from api.admin.routing import protected_router
from api.admin.templating import templates
from api.admin.views import network, operators
from api.deps import CurrentAdmin, DbId, SessionDep, SettingsDep
from noderr_core.audit import Actor
from noderr_core.network import node_status_counts
from noderr_core.slashing.cases import cases_for_node
from noderr_core.staking import node_stake_view
from noderr_core.tables import NodeStatus

router = protected_router()
PageNumber = Annotated[int, Query(ge=1, le=100_000)]
WINDOWS = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24),
           "7d": timedelta(days=7)}
WindowParam = Annotated[str, Query(pattern="^(1h|6h|24h|7d)$")]


@router.get("/admin", include_in_schema=False)
def overview_page(request: Request, session: SessionDep, window: WindowParam = "6h") -> Response:
    overview = network.network_overview(session, window=WINDOWS[window])
    return templates.TemplateResponse(request, "admin/overview.html", {
        "active_nav": "overview", "o": overview, "window": window, "windows": list(WINDOWS),
    })


@router.get("/admin/nodes", include_in_schema=False)
def nodes_page(
    request: Request, session: SessionDep,
    status_filter: Annotated[str | None, Query(alias="status", max_length=16)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page: PageNumber = 1,
) -> Response:
    if status_filter and status_filter not in {s.value for s in NodeStatus}:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            detail=f"unknown node status {status_filter!r}: use one of "
                            + ", ".join(s.value for s in NodeStatus))
    result = network.list_nodes(session, status=status_filter or None, search=q, page=page)
    return templates.TemplateResponse(request, "admin/nodes.html", {
        "active_nav": "nodes", "page": result, "status_filter": status_filter or "", "q": q or "",
        "statuses": [s.value for s in NodeStatus], "counts": node_status_counts(session),
    })


@router.get("/admin/nodes/{node_id}", include_in_schema=False)
def node_page(request: Request, node_id: str, session: SessionDep, window: WindowParam = "6h") -> Response:
    detail = network.node_detail(session, node_id, window=WINDOWS[window])
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"node {node_id} does not exist")
    return templates.TemplateResponse(request, "admin/node_detail.html", {
        "active_nav": "nodes", "d": detail, "node": detail.node, "window": window,
        "windows": list(WINDOWS), "stake": node_stake_view(session, node_id),
        "slashing_cases": cases_for_node(session, node_id),
    })


def _node_action(request: Request, session, node_id: str, action, message: str) -> Response:
    from noderr_core.nodes import NodeActionError

    try:
        action()
    except NodeActionError as exc:
        session.rollback()
        code = status.HTTP_404_NOT_FOUND if "does not exist" in str(exc) else (
            status.HTTP_400_BAD_REQUEST if "reason" in str(exc) else status.HTTP_409_CONFLICT)
        raise HTTPException(code, detail=str(exc)) from None
    response = RedirectResponse(f"/admin/nodes/{node_id}", status_code=status.HTTP_303_SEE_OTHER)
    add_flash(request, response, message)
    return response


@router.post("/admin/nodes/{node_id}/suspend", include_in_schema=False)
def suspend(request: Request, node_id: str, admin: CurrentAdmin, session: SessionDep,
            reason: Annotated[str | None, Form(max_length=4000)] = None) -> Response:
    from noderr_core.nodes import suspend_node

    return _node_action(
        request, session, node_id,
        lambda: suspend_node(session, node_id=node_id, actor=Actor.admin(admin), reason=reason),
        f"Node {node_id} suspended: it gets no work or rewards, and its on-chain deregistration is queued.")


@router.post("/admin/nodes/{node_id}/resume", include_in_schema=False)
def resume(request: Request, node_id: str, admin: CurrentAdmin, session: SessionDep) -> Response:
    from noderr_core.nodes import resume_node

    return _node_action(
        request, session, node_id,
        lambda: resume_node(session, node_id=node_id, actor=Actor.admin(admin)),
        f"Node {node_id} resumed: it is online again at its next heartbeat; re-registration queued.")


@router.post("/admin/nodes/{node_id}/remove", include_in_schema=False)
def remove(request: Request, node_id: str, admin: CurrentAdmin, session: SessionDep,
           reason: Annotated[str | None, Form(max_length=4000)] = None) -> Response:
    from noderr_core.nodes import remove_node

    return _node_action(
        request, session, node_id,
        lambda: remove_node(session, node_id=node_id, actor=Actor.admin(admin), reason=reason),
        f"Node {node_id} removed: its key no longer works and open download links are revoked.")


@router.post("/admin/nodes/{node_id}/rotate-key", include_in_schema=False)
def rotate_key(request: Request, node_id: str, admin: CurrentAdmin, session: SessionDep,
               settings: SettingsDep) -> Response:
    return reissue_node_link(request, session, settings, admin, node_id, back=f"/admin/nodes/{node_id}")


@router.get("/admin/operators", include_in_schema=False)
def operators_page(request: Request, session: SessionDep,
                   q: Annotated[str | None, Query(max_length=200)] = None,
                   page: PageNumber = 1) -> Response:
    result = operators.list_operators(session, search=q, page=page)
    return templates.TemplateResponse(request, "admin/operators.html", {
        "active_nav": "operators", "page": result, "q": q or "",
    })


@router.get("/admin/operators/{operator_id}", include_in_schema=False)
def operator_page(request: Request, operator_id: DbId, session: SessionDep) -> Response:
    detail = operators.operator_detail(session, operator_id)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"operator {operator_id} does not exist")
    return templates.TemplateResponse(request, "admin/operator_detail.html", {
        "active_nav": "operators", "d": detail,
    })
