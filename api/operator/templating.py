"""Templates of the operator's pages (api/templates/operator) and their route class.

Every page extends `operator/base.html`; the context processor gives it `current_operator`,
`csrf_token`, `csrf_field()` and the flash messages. Formatting filters and the SVG charts are the
admin dashboard's, so both audiences read the same numbers the same way.

`OperatorRoute` renders refusals as readable pages for a browser (API clients keep JSON) and clears
a flash cookie once its messages were shown.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from api.admin import templating as admin_templating
from api.admin.flash import read_flashes
from api.admin.routing import AdminRoute
from noderr_core.timeutil import utcnow


def _operator_context(request: Request) -> dict[str, Any]:
    operator_session = getattr(request.state, "operator_session", None)
    csrf = operator_session.csrf_token if operator_session is not None else ""

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="csrf_token" value="{}">').format(csrf)

    return {
        "current_operator": getattr(request.state, "operator", None),
        "csrf_token": csrf,
        "csrf_field": csrf_field,
        "flashes": read_flashes(request),
        "now": utcnow(),
    }


templates = Jinja2Templates(directory=str(admin_templating.TEMPLATE_DIR),
                            context_processors=[_operator_context])
templates.env.globals.update(line_chart=admin_templating.templates.env.globals["line_chart"],
                             presence_strip=admin_templating.templates.env.globals["presence_strip"])
templates.env.filters.update(admin_templating.templates.env.filters)


class OperatorRoute(AdminRoute):
    """The admin's route class (readable refusal pages, flash cookie cleared) with this layout."""

    error_templates = templates
    error_template = "operator/error.html"
