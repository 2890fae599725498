"""Jinja2 templates for server-rendered pages (api/templates) with the admin layout's context.

Every admin page extends `admin/base.html` (navigation, flash messages, sign-out form). The
context processor gives each template `current_admin`, `csrf_token` and `flashes`; forms include
`{{ csrf_field() }}`.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from api.admin.flash import read_flashes
from noderr_core.timeutil import utcnow

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"

NAV_ITEMS = [
    ("overview", "/admin", "Network"),
    ("applications", "/admin/applications", "Applications"),
    ("nodes", "/admin/nodes", "Nodes"),
    ("operators", "/admin/operators", "Operators"),
    ("models", "/admin/models", "Models"),
    ("clients", "/admin/clients", "Clients"),
    ("rewards", "/admin/rewards", "Rewards"),
    ("audit", "/admin/audit", "Audit log"),
]


def _admin_context(request: Request) -> dict[str, Any]:
    admin_session = getattr(request.state, "admin_session", None)
    csrf = admin_session.csrf_token if admin_session is not None else getattr(
        request.state, "login_csrf", ""
    )

    def csrf_field() -> Markup:
        return Markup('<input type="hidden" name="csrf_token" value="{}">').format(csrf)

    return {
        "current_admin": getattr(request.state, "admin", None),
        "csrf_token": csrf,
        "csrf_field": csrf_field,
        "flashes": read_flashes(request),
        "nav_items": NAV_ITEMS,
        "now": utcnow(),
    }


def format_datetime(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    return value.strftime(fmt) if value else "—"


def format_ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((utcnow() - value).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def pretty_json(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def format_number(value: float | int | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def format_token_amount(value: int | str | None, decimals: int = 18, digits: int = 4) -> str:
    """Token base units (wei-like integers, possibly stored as strings) → human amount."""
    if value is None:
        return "—"
    return f"{int(value) / 10**decimals:,.{digits}f}"


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f} %"


def status_badge(value: str | None) -> Markup:
    text = value or "unknown"
    return Markup('<span class="badge badge-{}">{}</span>').format(
        escape(text.replace(" ", "_")), escape(text.replace("_", " "))
    )


templates = Jinja2Templates(directory=str(TEMPLATE_DIR), context_processors=[_admin_context])
def _charts():
    # Imported lazily: the chart module pulls in the monitoring queries (and every ORM model).
    from api.admin import charts

    return charts


templates.env.globals["line_chart"] = lambda *a, **k: _charts().line_chart(*a, **k)
templates.env.globals["presence_strip"] = lambda *a, **k: _charts().presence_strip(*a, **k)
templates.env.filters.update(
    dt=format_datetime,
    ago=format_ago,
    pretty_json=pretty_json,
    number=format_number,
    token_amount=format_token_amount,
    badge=status_badge,
    percent=percent,
)
