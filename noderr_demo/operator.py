"""Operator and admin journeys, driven the way people drive them: over HTTP and email.

Applicants post a signed Typeform webhook; an admin logs in and approves in the dashboard; the
approval email is read from the local mailbox and its link downloads the config bundle.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import zipfile
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path

import httpx
from eth_account import Account
from sqlalchemy import select

from noderr_core.db import session_scope
from noderr_local.mailbox import read_mailbox
from noderr_core.tables import ApplicationStatus, OperatorApplication
from noderr_core.onboarding.typeform import SIGNATURE_HEADER, sign_body
from noderr_demo.typeform_payloads import application_payload
from noderr_demo.report import DemoFailure, wait_until

_INPUT_RE = re.compile(r"<input[^>]*>", re.I)
_ATTR_RE = re.compile(r'(\w[\w-]*)\s*=\s*"([^"]*)"')


def form_fields(html: str) -> dict[str, str]:
    """Hidden and prefilled inputs of every form on the page (name -> value)."""
    fields: dict[str, str] = {}
    for tag in _INPUT_RE.findall(html):
        attrs = dict(_ATTR_RE.findall(tag))
        if "name" in attrs:
            fields[attrs["name"]] = unescape(attrs.get("value", ""))
    return fields


@dataclass
class Applicant:
    full_name: str
    email: str
    region: str
    account: object = field(default_factory=Account.create)  # the operator's own wallet
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    application_id: int | None = None
    node_id: str | None = None
    bundle_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def wallet(self) -> str:
        return self.account.address


def typeform_payload(applicant: Applicant) -> dict:
    """A delivery shaped like Typeform's documented webhook example, for one applicant."""
    return application_payload(email=applicant.email, wallet=applicant.wallet,
                               name=applicant.full_name, token=applicant.token, region=applicant.region)


def submit_application(api: httpx.Client, secret: str, applicant: Applicant) -> None:
    body = json.dumps(typeform_payload(applicant)).encode()
    resp = api.post(
        "/webhooks/typeform",
        content=body,
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign_body(secret, body)},
    )
    if resp.status_code != 200:
        raise DemoFailure(f"webhook answered {resp.status_code}: {resp.text[:300]}")


def application_by_token(token: str) -> OperatorApplication | None:
    with session_scope() as s:
        return s.scalar(select(OperatorApplication).where(OperatorApplication.form_response_token == token))


def wait_for_status(applicant: Applicant, statuses: set[str], timeout: float) -> OperatorApplication:
    def check():
        app = application_by_token(applicant.token)
        if app is not None and app.status == ApplicationStatus.REJECTED and ApplicationStatus.REJECTED not in statuses:
            raise DemoFailure(f"application {app.id} was rejected: {app.decision_reason or app.screening_notes}")
        return app if app is not None and app.status in statuses else None

    app = wait_until(check, timeout, f"application of {applicant.email} to reach {sorted(statuses)}")
    applicant.application_id = app.id
    return app


class AdminBrowser:
    """An admin using the dashboard: real login form, session cookie, CSRF tokens from pages."""

    def __init__(self, base_url: str):
        self.http = httpx.Client(base_url=base_url, timeout=30, follow_redirects=True)

    def login(self, email: str, password: str) -> None:
        page = self.http.get("/admin/login")
        data = form_fields(page.text) | {"email": email, "password": password}
        resp = self.http.post("/admin/login", data=data)
        if resp.status_code != 200 or "/admin/login" in str(resp.url):
            raise DemoFailure(f"admin login failed ({resp.status_code}) at {resp.url}")

    def decide(self, application_id: int, decision: str, reason: str | None = None) -> None:
        page = self.http.get(f"/admin/applications/{application_id}")
        if page.status_code != 200:
            raise DemoFailure(f"application page answered {page.status_code}")
        data = {"csrf_token": form_fields(page.text)["csrf_token"]}
        if reason:
            data["reason"] = reason
        resp = self.http.post(f"/admin/applications/{application_id}/{decision}", data=data)
        if resp.status_code != 200:
            raise DemoFailure(f"{decision} answered {resp.status_code}: {resp.text[:300]}")

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)


def wait_for_email(state_dir: Path, to: str, subject_contains: str, timeout: float):
    def check():
        for msg in read_mailbox(state_dir):
            if to in msg.to and subject_contains.lower() in msg.subject.lower():
                return msg
        return None

    return wait_until(check, timeout, f"an email to {to} about '{subject_contains}'")


def download_bundle(link: str, target: Path) -> dict[str, str]:
    """Open the emailed link (GET shows the page), press Download (POST), unpack the zip."""
    with httpx.Client(timeout=30, follow_redirects=True) as http:
        page = http.get(link)
        if page.status_code != 200:
            raise DemoFailure(f"portal page answered {page.status_code}")
        resp = http.post(link, data=form_fields(page.text), headers={"Origin": _origin(link)})
        if resp.status_code != 200 or resp.headers.get("content-type") != "application/zip":
            raise DemoFailure(f"bundle download answered {resp.status_code} {resp.headers.get('content-type')}")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(resp.content)) as zf:
        names = zf.namelist()
        zf.extractall(target)
    env_path = next(target.rglob(".env"), None)
    if env_path is None:
        raise DemoFailure(f"bundle has no .env (files: {names})")
    env = {}
    for line in env_path.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
