"""Portal helpers for tests: an approved, provisioned node and its emailed single-use download link."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from sqlalchemy import select

from noderr_core.audit import Actor
from noderr_core.onboarding.applications import decide_application
from noderr_core.onboarding.portal import form_nonce
from noderr_core.onboarding.provisioning import carry_out_decision
from noderr_core.onboarding.screening import screen_application
from noderr_core.onboarding.typeform import ingest_delivery, load_field_map
from noderr_core.security import unseal
from noderr_core.settings import Settings
from noderr_core.tables import OutboxMessage
from noderr_demo.typeform_payloads import application_payload, encode


def provision(session_factory, settings: Settings) -> tuple[str, str]:
    """An approved, provisioned node; returns (node_id, emailed download path)."""
    actor = Actor.system("test")
    with session_factory() as s:
        app_id = ingest_delivery(s, encode(application_payload()), load_field_map()).application_id
        screen_application(s, app_id, actor)
        decide_application(s, application_id=app_id, actor=actor, decision="approve", reason=None)
        outcome = carry_out_decision(s, application_id=app_id, settings=settings, actor=actor)
        s.commit()
    return outcome.node_id, latest_link(session_factory, settings)


def latest_link(session_factory, settings: Settings) -> str:
    with session_factory() as s:
        msg = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")
                        .order_by(OutboxMessage.id.desc())).first()
    url = json.loads(unseal(msg.payload["sealed_context"], settings.secret_key.get_secret_value()))["portal_url"]
    return urlsplit(url).path


def nonce_for(settings, path: str) -> str:
    return form_nonce(settings, path.rsplit("/", 1)[1])
