"""Renders email templates (subject, HTML and text parts) with Jinja2."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
PARTS = ("subject", "html", "txt")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


@lru_cache(maxsize=1)
def _environment() -> Environment:
    # StrictUndefined: a missing context value is a bug in the producer, not an empty string in
    # an operator's inbox. Only the HTML part is autoescaped.
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def template_exists(name: str) -> bool:
    return all((TEMPLATES_DIR / f"{name}.{part}.j2").is_file() for part in PARTS)


def render_subject(name: str, context: dict[str, Any]) -> str:
    subject = _environment().get_template(f"{name}.subject.j2").render(**context)
    return " ".join(subject.split())  # one line: headers cannot carry newlines


def render_email(name: str, context: dict[str, Any]) -> RenderedEmail:
    env = _environment()
    return RenderedEmail(
        subject=render_subject(name, context),
        html=env.get_template(f"{name}.html.j2").render(**context),
        text=env.get_template(f"{name}.txt.j2").render(**context),
    )
