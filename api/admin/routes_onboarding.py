"""Admin pages for operator onboarding: applications (list, detail, decisions) and the audit log.

A decision click only records the decision (noderr_core.onboarding.applications); the onboarding
pipeline carries it out, and the detail page shows its progress.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, HTTPException, Query, Request, Response, status
from fastapi.responses import RedirectResponse

from api.admin.flash import add_flash
from api.admin.routing import protected_router
from api.admin.templating import templates
from api.admin.views import applications
from api.deps import CurrentAdmin, DbId, SessionDep, SettingsDep
from noderr_core.audit import Actor, audit_filter_choices
from noderr_core.onboarding.applications import application_status_counts
from noderr_core.tables import ApplicationStatus, OperatorApplication

router = protected_router()
PageNumber = Annotated[int, Query(ge=1, le=100_000)]


@router.get("/admin/applications", include_in_schema=False)
def applications_page(
    request: Request,
    session: SessionDep,
    status_filter: Annotated[str | None, Query(alias="status", max_length=32)] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    page: PageNumber = 1,
) -> Response:
    if status_filter and status_filter not in {s.value for s in ApplicationStatus}:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail=f"unknown status {status_filter!r}: use one of "
            + ", ".join(s.value for s in ApplicationStatus),
        )
    result = applications.list_applications(session, status=status_filter or None, search=q, page=page)
    return templates.TemplateResponse(request, "admin/applications.html", {
        "active_nav": "applications",
        "page": result,
        "status_filter": status_filter or "",
        "q": q or "",
        "counts": application_status_counts(session),
        "statuses": [s.value for s in ApplicationStatus],
    })


@router.get("/admin/applications/{application_id}", include_in_schema=False)
def application_page(request: Request, application_id: DbId, session: SessionDep) -> Response:
    detail = applications.application_detail(session, application_id)
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"application {application_id} does not exist")
    return templates.TemplateResponse(request, "admin/application_detail.html", {
        "active_nav": "applications",
        "d": detail,
        "app": detail.application,
        "can_decide": detail.application.status == ApplicationStatus.PENDING_REVIEW,
    })


def _decide(request: Request, session, admin, application_id: int, decision: str,
            reason: str | None) -> Response:
    from noderr_core.onboarding.applications import DecisionError, decide_application

    try:
        decide_application(session, application_id=application_id, actor=Actor.admin(admin),
                           decision=decision, reason=reason)
    except DecisionError as exc:
        session.rollback()
        app = session.get(OperatorApplication, application_id)
        if app is None:
            code = status.HTTP_404_NOT_FOUND
        elif app.status != ApplicationStatus.PENDING_REVIEW:
            code = status.HTTP_409_CONFLICT  # decided already (double click, second admin)
        else:
            code = status.HTTP_400_BAD_REQUEST
        raise HTTPException(code, detail=str(exc)) from None
    response = RedirectResponse(f"/admin/applications/{application_id}",
                                status_code=status.HTTP_303_SEE_OTHER)
    verb = "approved" if decision == "approve" else "rejected"
    add_flash(request, response, f"Application {application_id} {verb}. The onboarding pipeline "
              "now carries the decision out; this page shows its progress.")
    return response


@router.post("/admin/applications/{application_id}/approve",
             include_in_schema=False)
def approve_application(request: Request, application_id: DbId, admin: CurrentAdmin,
                        session: SessionDep,
                        reason: Annotated[str | None, Form(max_length=4000)] = None) -> Response:
    return _decide(request, session, admin, application_id, "approve", reason)


@router.post("/admin/applications/{application_id}/reject",
             include_in_schema=False)
def reject_application(request: Request, application_id: DbId, admin: CurrentAdmin,
                       session: SessionDep,
                       reason: Annotated[str | None, Form(max_length=4000)] = None) -> Response:
    return _decide(request, session, admin, application_id, "reject", reason)


@router.post("/admin/applications/{application_id}/reissue-link",
             include_in_schema=False)
def reissue_link(request: Request, application_id: DbId, admin: CurrentAdmin, session: SessionDep,
                 settings: SettingsDep,
                 node_id: Annotated[str | None, Form(max_length=40)] = None) -> Response:
    """New single-use download link for a provisioned application's node (rotates its API key)."""
    from noderr_core.onboarding.applications import LinkReissueRefused, node_for_link_reissue

    try:
        node_id = node_for_link_reissue(session, application_id=application_id, node_id=node_id)
    except LinkReissueRefused as exc:
        code = {"not_found": status.HTTP_404_NOT_FOUND, "not_provisioned": status.HTTP_409_CONFLICT,
                "node_required": status.HTTP_400_BAD_REQUEST}[exc.reason]
        raise HTTPException(code, detail=str(exc)) from None
    return reissue_node_link(request, session, settings, admin, node_id,
                             back=f"/admin/applications/{application_id}")


def reissue_node_link(request: Request, session, settings, admin, node_id: str, back: str) -> Response:
    from noderr_core.nodes import NodeActionError, rotate_node_key

    try:
        rotate_node_key(session, node_id=node_id, settings=settings, actor=Actor.admin(admin))
    except (NodeActionError, ValueError) as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    response = RedirectResponse(back, status_code=status.HTTP_303_SEE_OTHER)
    add_flash(request, response, f"Node {node_id}: API key rotated, older links revoked, and a new "
              "single-use download link e-mailed to the operator.")
    return response


@router.get("/admin/audit", include_in_schema=False)
def audit_page(
    request: Request,
    session: SessionDep,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor: Annotated[str | None, Query(max_length=320)] = None,
    subject_type: Annotated[str | None, Query(max_length=32)] = None,
    subject_id: Annotated[str | None, Query(max_length=64)] = None,
    page: PageNumber = 1,
) -> Response:
    result = applications.list_audit_log(session, action=action, actor=actor, subject_type=subject_type,
                                    subject_id=subject_id, page=page)
    actions, subjects = audit_filter_choices(session)
    return templates.TemplateResponse(request, "admin/audit.html", {
        "active_nav": "audit",
        "page": result,
        "filters": {"action": action or "", "actor": actor or "",
                    "subject_type": subject_type or "", "subject_id": subject_id or ""},
        "actions": actions,
        "subjects": subjects,
    })
