"""Typeform parsing and signatures on Typeform's published example payload (no database)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from noderr_core.onboarding.typeform import (
    MalformedDelivery,
    load_field_map,
    parse_form_response,
    sign_body,
    signature_valid,
)
from noderr_demo.typeform_payloads import EXAMPLE_PATH as FIXTURE, example_payload


def test_signature_is_typeforms_documented_algorithm():
    body = FIXTURE.read_bytes()
    expected = "sha256=" + base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
    assert sign_body("s3cret", body) == expected
    assert signature_valid("s3cret", body, expected)
    assert not signature_valid("other", body, expected)
    assert not signature_valid("s3cret", body + b" ", expected)
    assert not signature_valid("s3cret", body, None)
    assert not signature_valid("s3cret", body, expected.replace("sha256=", "sha1="))


def test_example_payload_maps_by_ref_through_the_definition():
    # The example's answers carry no ref: the ref is found in definition.fields by field id.
    _, parsed = parse_form_response(example_payload(), load_field_map())
    assert parsed.token == "a3a12ec67a1365927098a606107fac15"
    assert parsed.form_id == "lT4Z3j"
    assert parsed.answers["full_name"] == "Laura Example"
    assert parsed.answers["email"] == "laura@example.com"
    assert parsed.answers["wallet_address"] == "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert parsed.answers["node_tier"] == "standard"
    assert parsed.answers["region"] == "eu-west"
    assert parsed.answers["hardware"] == ["8-core CPU", "NVIDIA RTX 4090", "64 GB RAM"]
    assert parsed.answers["experience"].startswith("I have run Linux servers")
    # Nothing dropped: unknown answers (by ref) and hidden fields are kept.
    assert parsed.unmapped_answers["readable_ref_date"]["value"] == "2018-02-01"
    assert parsed.unmapped_answers["readable_ref_legal"]["value"] is True
    assert parsed.unmapped_answers["readable_ref_calendly"]["value"].startswith("https://calendly.com/")
    assert parsed.hidden_fields == {"user_id": "abc123456", "utm_source": "newsletter"}
    assert parsed.submitted_at.isoformat() == "2018-01-18T18:17:02+00:00"


def test_configurable_field_map_overrides_a_field():
    payload = example_payload()
    for f in payload["form_response"]["definition"]["fields"]:
        if f["ref"] == "email":
            f["ref"] = "work_email"
            f["title"] = "Contact"  # no title keyword either: only the mapping can find it
    payload["form_response"]["answers"][1]["type"] = "text"
    payload["form_response"]["answers"][1]["text"] = payload["form_response"]["answers"][1].pop("email")
    _, default = parse_form_response(payload, load_field_map())
    assert "email" not in default.answers and "work_email" in default.unmapped_answers
    _, custom = parse_form_response(payload, load_field_map(json.dumps({"email": ["work_email"]})))
    assert custom.answers["email"] == "laura@example.com"


def test_title_fallback_when_refs_are_unknown():
    payload = example_payload()
    for f in payload["form_response"]["definition"]["fields"]:
        f["ref"] = f["id"].lower()  # auto-generated refs, as Typeform makes by default
    _, parsed = parse_form_response(payload, load_field_map())
    assert parsed.answers["wallet_address"].startswith("0x5aAeb")
    assert parsed.answers["full_name"] == "Laura Example"
    assert parsed.answers["node_tier"] == "standard"


@pytest.mark.parametrize("bad", ['{"event_type": "form_response"}', '[1, 2]',
                                 '{"event_type": "form_response", "form_response": {"answers": []}}',
                                 '{"event_type": "mystery", "form_response": {"token": "x"}}'])
def test_malformed_shapes_are_explained(bad):
    with pytest.raises(MalformedDelivery) as exc:
        parse_form_response(json.loads(bad), load_field_map())
    assert str(exc.value)


def test_bad_field_map_setting_is_reported():
    with pytest.raises(ValueError, match="NODERR_TYPEFORM_FIELD_MAP"):
        load_field_map("{not json")
    with pytest.raises(ValueError, match="NODERR_TYPEFORM_FIELD_MAP"):
        load_field_map('{"email": 3}')
