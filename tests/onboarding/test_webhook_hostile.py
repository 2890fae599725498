"""Signed but odd Typeform deliveries: each is dead-lettered with its reason and answered 4xx,
never 500 (finding 7). Runs on SQLite and PostgreSQL (PostgreSQL refuses NUL, lone surrogates
and NaN in JSON, which is where these used to fail)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from noderr_core.db import make_engine, make_session_factory
from noderr_core.tables import OperatorApplication, WebhookDeadLetter
from noderr_demo.typeform_payloads import application_payload, encode, signed_headers

URL = "/webhooks/typeform"


def _with_first_answer(mutate) -> bytes:
    payload = application_payload()
    mutate(payload["form_response"]["answers"][0])
    return encode(payload)


def _raw(hidden_json: str) -> bytes:
    return ('{"event_type":"form_response","form_response":{"token":"tok-1","answers":[],'
            f'"hidden":{hidden_json}}}}}').encode()


CASES = {
    "deep nesting (past the parser's recursion)": (_raw("[" * 100_000 + "]" * 100_000), "nests deeper than"),
    "deep nesting (parsable)": (_raw("[" * 500 + "]" * 500), "nests deeper than"),
    "4,300-digit number": (_raw('{"n": ' + "9" * 5000 + "}"), "cannot be read"),
    "lone surrogate": (_raw('{"s": "\\ud800"}'), "lone UTF-16 surrogate"),
    "NaN": (_raw('{"x": NaN}'), "NaN or Infinity"),
    "1e999": (_raw('{"x": 1e999}'), "NaN or Infinity"),
    "non-string ref": (_with_first_answer(lambda a: a["field"].update(ref={"a": 1})),
                       "field.ref must be a string"),
    "list ref": (_with_first_answer(lambda a: a["field"].update(ref=["x"])), "field.ref must be a string"),
    "non-string field id": (_with_first_answer(lambda a: a["field"].update(id=7)), "field.id must be a string"),
}


@pytest.fixture
def client_and_db(settings):
    engine = make_engine(settings.resolved_database_url)
    with TestClient(create_app(settings)) as client:
        yield client, make_session_factory(engine)
    engine.dispose()


@pytest.mark.parametrize("case", list(CASES))
def test_signed_odd_delivery_is_dead_lettered_with_a_4xx(client_and_db, case):
    client, db = client_and_db
    body, needle = CASES[case]
    response = client.post(URL, content=body, headers=signed_headers(body))
    assert 400 <= response.status_code < 500, response.text[:300]
    assert needle in response.json()["detail"] and "kept for review" in response.json()["detail"]
    with db() as s:
        assert s.scalar(select(func.count()).select_from(OperatorApplication)) == 0
        letter = s.scalars(select(WebhookDeadLetter)).one()
    assert letter.raw_body == body and needle in letter.error


def test_odd_but_harmless_values_are_still_ingested(client_and_db):
    """Non-string titles and label lists of the wrong type are ignored, not fatal."""
    client, db = client_and_db
    payload = application_payload()
    payload["form_response"]["definition"]["fields"][0]["title"] = ["not", "a", "title"]
    payload["form_response"]["answers"].append({"type": "choices", "choices": {"labels": 5},
                                                "field": {"id": "zz", "type": "multiple_choice"}})
    body = encode(payload)
    response = client.post(URL, content=body, headers=signed_headers(body))
    assert response.status_code == 200 and response.json()["status"] == "received", response.text
    with db() as s:
        assert s.scalar(select(func.count()).select_from(WebhookDeadLetter)) == 0
