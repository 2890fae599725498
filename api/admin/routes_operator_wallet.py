"""Admin action: move an operator's payouts to another wallet (the old wallet's key is lost).

Operators change their wallet themselves with a signature of the old one (api/routes/operator.py).
When they cannot, an admin does it here after checking who they are: a reason is required and the
change goes into the audit log; the new wallet is unproven until the operator signs in with it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse

from api.admin.flash import add_flash
from api.admin.routing import protected_router
from api.deps import CurrentAdmin, DbId, SessionDep
from noderr_core.audit import Actor
from noderr_core.operators.sessions import SignInRefused, admin_change_wallet

router = protected_router()


@router.post("/admin/operators/{operator_id}/wallet", include_in_schema=False)
def change_operator_wallet(request: Request, operator_id: DbId, admin: CurrentAdmin, session: SessionDep,
                           new_wallet: Annotated[str, Form(max_length=64)],
                           reason: Annotated[str | None, Form(max_length=2000)] = None) -> Response:
    try:
        operator = admin_change_wallet(session, operator_id=operator_id, new_wallet=new_wallet,
                                       actor=Actor.admin(admin), reason=reason)
    except SignInRefused as exc:  # SessionDep rolls back on the exception
        raise HTTPException(exc.status, detail=str(exc)) from None
    response = RedirectResponse(f"/admin/operators/{operator_id}", status_code=status.HTTP_303_SEE_OTHER)
    add_flash(request, response, f"Payouts of operator {operator_id} now go to {operator.wallet_address}; "
                                 "the wallet is unproven until the operator signs in with it.")
    return response
