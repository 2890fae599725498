"""POST /webhooks/typeform through the real app on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from noderr_core.db import make_engine, make_session_factory
from noderr_core.tables import OperatorApplication, WebhookDeadLetter
from noderr_demo.typeform_payloads import EXAMPLE_PATH as FIXTURE, application_payload, encode, signed_headers

URL = "/webhooks/typeform"


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def db(settings):
    engine = make_engine(settings.resolved_database_url)
    yield make_session_factory(engine)
    engine.dispose()


def count(db, model) -> int:
    with db() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_typeforms_example_is_stored_verbatim_with_parsed_fields(client, db):
    body = FIXTURE.read_bytes()
    resp = client.post(URL, content=body, headers=signed_headers(body))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "received"
    with db() as s:
        app = s.scalars(select(OperatorApplication)).one()
    assert app.raw_payload == body.decode()
    assert app.form_response_token == "a3a12ec67a1365927098a606107fac15"
    assert (app.email, app.full_name, app.node_tier, app.region) == (
        "laura@example.com", "Laura Example", "standard", "eu-west")
    assert app.wallet_address == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert app.status == "received" and app.status_version == 1
    assert app.hidden_fields["user_id"] == "abc123456"
    assert "readable_ref_date" in app.unmapped_answers


def test_redelivery_is_200_and_creates_nothing(client, db):
    body = encode(application_payload())
    first = client.post(URL, content=body, headers=signed_headers(body))
    again = client.post(URL, content=body, headers=signed_headers(body))
    assert first.status_code == again.status_code == 200
    assert again.json() == {"status": "duplicate", "application_id": first.json()["application_id"]}
    assert count(db, OperatorApplication) == 1


@pytest.mark.parametrize("headers", [{}, {"Typeform-Signature": "sha256=AAAA"},
                                     {"Typeform-Signature": "garbage"}])
def test_unsigned_or_forged_is_401_and_nothing_stored(client, db, headers):
    body = encode(application_payload())
    resp = client.post(URL, content=body, headers=headers)
    assert resp.status_code == 401
    assert "Typeform-Signature" in resp.json()["detail"]
    assert count(db, OperatorApplication) == 0 and count(db, WebhookDeadLetter) == 0


def test_signature_with_another_secret_is_refused(client, db):
    body = encode(application_payload())
    resp = client.post(URL, content=body, headers=signed_headers(body, secret="not-our-secret"))
    assert resp.status_code == 401
    assert count(db, OperatorApplication) == 0


def test_tampered_body_is_refused(client, db):
    body = encode(application_payload())
    headers = signed_headers(body)
    resp = client.post(URL, content=body.replace(b"Ada", b"Eve"), headers=headers)
    assert resp.status_code == 401
    assert count(db, OperatorApplication) == 0


def test_partial_response_is_acknowledged_and_ignored(client, db):
    body = encode(application_payload(event_type="form_response_partial"))
    resp = client.post(URL, content=body, headers=signed_headers(body))
    assert resp.status_code == 200 and resp.json()["status"] == "ignored"
    assert count(db, OperatorApplication) == 0


@pytest.mark.parametrize("body,needle", [
    (b"{not json", "not valid JSON"),
    (json.dumps({"event_type": "form_response", "form_response": {"answers": []}}).encode(), "token"),
    (b"\xff\xfe", "UTF-8"),
])
def test_signed_but_malformed_is_400_and_dead_lettered(client, db, body, needle):
    resp = client.post(URL, content=body, headers=signed_headers(body))
    assert resp.status_code == 400
    assert needle in resp.json()["detail"]
    assert count(db, OperatorApplication) == 0
    with db() as s:
        letter = s.scalars(select(WebhookDeadLetter)).one()
    assert letter.raw_body == body and needle in letter.error
    assert letter.headers["typeform-signature"].startswith("sha256=")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_methods_never_get_404_or_410(client, method):
    for path in (URL, URL + "/", URL + "/anything/else"):
        resp = client.request(method, path)
        assert resp.status_code == 405, (method, path, resp.status_code)
        assert resp.headers["allow"] == "POST"


def test_post_to_a_sub_path_is_still_accepted(client, db):
    body = encode(application_payload())
    resp = client.post(URL + "/", content=body, headers=signed_headers(body))
    assert resp.status_code == 200 and resp.json()["status"] == "received"
    body2 = encode(application_payload())
    resp2 = client.post(URL + "/v1", content=body2, headers=signed_headers(body2))
    assert resp2.status_code == 200
    assert count(db, OperatorApplication) == 2
