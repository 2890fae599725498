"""Admin decision on a slashing case: dismiss it in its challenge window (CSRF-protected, audited).

The click only records the decision (noderr_core.slashing.cases.dismiss_case); an undismissed case
is slashed by the slashing job once the window ends. The case and the node's bond are shown on the
node page (admin/_node_stake.html).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse

from api.admin.flash import add_flash
from api.admin.routing import protected_router
from api.deps import CurrentAdmin, DbId, SessionDep, SettingsDep
from noderr_core.audit import Actor
from noderr_core.slashing.cases import CaseNotDismissable, dismiss_case

router = protected_router()


@router.post("/admin/slashing/{case_id}/dismiss", include_in_schema=False)
def dismiss(request: Request, case_id: DbId, admin: CurrentAdmin, session: SessionDep, settings: SettingsDep,
            reason: Annotated[str, Form(max_length=2000)] = "") -> Response:
    try:
        case = dismiss_case(session, case_id, actor=Actor.admin(admin), reason=reason, settings=settings)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except CaseNotDismissable as exc:  # SessionDep rolls back on the exception
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None
    response = RedirectResponse(f"/admin/nodes/{case.node_id}#stake", status_code=status.HTTP_303_SEE_OTHER)
    add_flash(request, response, f"Slashing case {case_id} dismissed: nothing will be slashed; the operator is told why.")
    return response
