"""Typeform intake: signature check, payload parsing by field ref, idempotent storage.

Typeform signs each delivery: header ``Typeform-Signature: sha256=<base64(HMAC-SHA256(secret,
raw body))>``. We verify it over the raw bytes, in constant time, before anything is parsed.

Answers are matched to our fields by the question's ``ref`` (set in the Typeform builder, stable
across question wording changes). The default mapping is `DEFAULT_FIELD_MAP`; NODERR_TYPEFORM_FIELD_MAP
(JSON ``{"our_field": ["ref", ...]}``) extends or overrides it per field. When an answer carries no
ref (older payloads) the ref is looked up in ``form_response.definition.fields`` by field id; when
no ref matches, the question's title is tried against a few keywords. Nothing is dropped: answers
we do not map are kept in ``unmapped_answers`` by ref (or id), hidden fields in ``hidden_fields``,
and the body verbatim in ``raw_payload``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from noderr_core.tables import OperatorApplication, WebhookDeadLetter
from noderr_core.timeutil import utcnow

SIGNATURE_HEADER = "Typeform-Signature"

# our field -> Typeform refs that feed it (first answer found wins).
DEFAULT_FIELD_MAP: dict[str, list[str]] = {
    "full_name": ["full_name", "name"],
    "email": ["email", "email_address"],
    "wallet_address": ["wallet_address", "wallet", "eth_address"],
    "node_tier": ["node_tier", "tier"],
    "region": ["region", "country", "location"],
    "hardware": ["hardware", "hardware_specs"],
    "experience": ["experience", "operator_experience"],
    "uptime_commitment": ["uptime_commitment", "availability"],
    "referral": ["referral", "how_did_you_hear"],
}

# Columns of operator_applications filled from mapped answers (the rest stay in `answers`).
COLUMN_FIELDS = ("full_name", "email", "wallet_address", "node_tier", "region")
_COLUMN_LIMITS = {"full_name": 200, "email": 320, "wallet_address": 64, "node_tier": 64, "region": 64}

# Fallback when no ref matches: keywords in the question title (checked in this order).
_TITLE_KEYWORDS: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"\be-?mail\b", re.I)),
    ("wallet_address", re.compile(r"\bwallet\b|\beth(ereum)? address\b", re.I)),
    ("node_tier", re.compile(r"\btier\b", re.I)),
    ("region", re.compile(r"\bregion\b|\bcountry\b|\blocation\b", re.I)),
    ("hardware", re.compile(r"\bhardware\b|\bgpu\b|\bcpu\b", re.I)),
    ("experience", re.compile(r"\bexperience\b", re.I)),
    ("full_name", re.compile(r"\bname\b", re.I)),
]


class MalformedDelivery(ValueError):
    """A correctly signed delivery we cannot use; the message says what is wrong."""


class IngestOutcome(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"  # redelivery of a known form_response.token
    IGNORED_PARTIAL = "ignored_partial"


@dataclass(frozen=True)
class IngestResult:
    outcome: IngestOutcome
    application_id: int | None
    token: str | None = None


@dataclass
class ParsedResponse:
    event_id: str | None
    form_id: str | None
    token: str
    submitted_at: datetime | None
    answers: dict[str, Any]
    unmapped_answers: dict[str, Any]
    hidden_fields: dict[str, Any]


def sign_body(secret: str, body: bytes) -> str:
    """The header value Typeform sends for `body` (used by tests, the demo and the benchmark)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def signature_valid(secret: str, body: bytes, header_value: str | None) -> bool:
    if not header_value or not secret:
        return False
    return hmac.compare_digest(sign_body(secret, body).encode(), header_value.strip().encode())


def load_field_map(override_json: str = "") -> dict[str, list[str]]:
    """DEFAULT_FIELD_MAP with NODERR_TYPEFORM_FIELD_MAP's entries replacing whole fields."""
    mapping = {k: list(v) for k, v in DEFAULT_FIELD_MAP.items()}
    if not override_json.strip():
        return mapping
    try:
        override = json.loads(override_json)
    except json.JSONDecodeError as exc:
        raise ValueError(f"NODERR_TYPEFORM_FIELD_MAP is not valid JSON: {exc}") from exc
    if not isinstance(override, dict):
        raise ValueError('NODERR_TYPEFORM_FIELD_MAP must be a JSON object like {"email": ["work_email"]}')
    for field, refs in override.items():
        if isinstance(refs, str):
            refs = [refs]
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"NODERR_TYPEFORM_FIELD_MAP[{field!r}] must be a ref or a list of refs")
        mapping[field] = refs
    return mapping


def answer_value(answer: dict[str, Any]) -> Any:
    """The value of one Typeform answer, whatever its type."""
    kind = answer.get("type")
    value = answer.get(kind) if isinstance(kind, str) else None
    if kind == "choice" and isinstance(value, dict):
        return value.get("label") if value.get("label") is not None else value.get("other")
    if kind == "choices" and isinstance(value, dict):
        labels = list(value["labels"]) if isinstance(value.get("labels"), list) else []
        if value.get("other"):
            labels.append(value["other"])
        return labels
    return value


def parse_form_response(payload: Any, field_map: dict[str, list[str]]) -> tuple[str, ParsedResponse | None]:
    """Validate the delivery's shape; return (event_type, parsed response or None when partial)."""
    if not isinstance(payload, dict):
        raise MalformedDelivery("the body must be a JSON object with event_type and form_response")
    event_type = payload.get("event_type")
    if event_type == "form_response_partial":
        return event_type, None
    if event_type != "form_response":
        raise MalformedDelivery(
            f"unsupported event_type {event_type!r}: expected 'form_response' (or 'form_response_partial')"
        )
    response = payload.get("form_response")
    if not isinstance(response, dict):
        raise MalformedDelivery("form_response is missing or not an object")
    token = response.get("token")
    if not isinstance(token, str) or not token.strip():
        raise MalformedDelivery("form_response.token is missing: it identifies the submission")
    if len(token) > 128:
        raise MalformedDelivery("form_response.token is longer than 128 characters")
    answers = response.get("answers", [])
    if answers is None:
        answers = []
    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
        raise MalformedDelivery("form_response.answers must be a list of answer objects")
    hidden = response.get("hidden") or {}
    if not isinstance(hidden, dict):
        raise MalformedDelivery("form_response.hidden must be an object")
    definition = response.get("definition") or {}
    fields = definition.get("fields") if isinstance(definition, dict) else None
    fields_by_id = {
        f["id"]: f for f in (fields if isinstance(fields, list) else [])
        if isinstance(f, dict) and isinstance(f.get("id"), str)
    }

    field_for_ref = {ref: ours for ours, refs in field_map.items() for ref in refs}
    mapped: dict[str, Any] = {}
    unmapped: dict[str, Any] = {}
    for index, answer in enumerate(answers):
        field = answer.get("field") if isinstance(answer.get("field"), dict) else {}
        for key in ("id", "ref"):
            if field.get(key) is not None and not isinstance(field[key], str):
                raise MalformedDelivery(
                    f"form_response.answers[{index}].field.{key} must be a string, not "
                    f"{type(field[key]).__name__}"
                )
        # Ids, refs and titles are strings in every Typeform delivery; any other type is ignored
        # (a list or object there would not even be hashable).
        field_id = _text(field.get("id"))
        definition_field = fields_by_id.get(field_id, {})
        ref = _text(field.get("ref")) or _text(definition_field.get("ref"))
        title = _text(definition_field.get("title"))
        value = answer_value(answer)
        ours = field_for_ref.get(ref) if ref else None
        if ours is None and answer.get("type") == "email" and "email" not in mapped:
            ours = "email"
        if ours is None and title:
            ours = next((name for name, rx in _TITLE_KEYWORDS if rx.search(title)), None)
        if ours is not None and ours not in mapped:
            mapped[ours] = value
        else:
            key = ref or field_id or f"answer_{len(unmapped)}"
            unmapped[key] = {"title": title, "type": _text(answer.get("type")), "field_type": _text(field.get("type")),
                             "value": value}
    return event_type, ParsedResponse(
        event_id=payload.get("event_id") if isinstance(payload.get("event_id"), str) else None,
        form_id=response.get("form_id") if isinstance(response.get("form_id"), str) else None,
        token=token,
        submitted_at=_parse_time(response.get("submitted_at")),
        answers=mapped,
        unmapped_answers=unmapped,
        hidden_fields=hidden,
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _column_value(field: str, value: Any) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    text = text.strip()
    if field == "email":
        text = text.lower()
    return text[: _COLUMN_LIMITS[field]] or None


MAX_JSON_DEPTH = 32  # Typeform deliveries nest 5 levels; anything far deeper is not one
_SURROGATE = re.compile("[\ud800-\udfff]")


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKETS = re.compile(r"[\[\]{}]")


def json_nesting_depth(text: str) -> int:
    """The deepest nesting of arrays/objects in a JSON text, without parsing it (strings skipped)."""
    brackets = _JSON_BRACKETS.findall(_JSON_STRING.sub("", text))
    depth = deepest = 0
    for bracket in brackets:
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def unstorable_value(payload: Any) -> str | None:
    """Why a parsed delivery cannot be stored as is (None when it can); iterative, so any depth."""
    stack: list[tuple[Any, int]] = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"the body nests deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(value, str):
            if "\x00" in value:
                return "the delivery contains a NUL character (\\u0000), which cannot be stored"
            if _SURROGATE.search(value):
                return "the delivery contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"
        elif isinstance(value, float) and not math.isfinite(value):
            return "the delivery contains NaN or Infinity, which JSON does not allow"
        elif isinstance(value, dict):
            stack.extend((k, depth) for k in value)
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def ingest_delivery(session: Session, raw_body: bytes, field_map: dict[str, list[str]]) -> IngestResult:
    """Store a verified delivery once per form_response.token (insert-or-ignore, race-free)."""
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedDelivery(f"the body is not UTF-8 text: {exc}") from exc
    if json_nesting_depth(text) > MAX_JSON_DEPTH:
        # Checked before parsing: the C parser recurses once per level, and a deep enough body
        # overflows a worker thread's stack wherever the recursion limit has been raised.
        raise MalformedDelivery(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedDelivery(f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise MalformedDelivery(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError as exc:  # e.g. an integer past Python's 4,300-digit conversion limit
        raise MalformedDelivery(f"the body holds a value that cannot be read: {exc}") from exc
    problem = unstorable_value(payload)
    if problem:
        # PostgreSQL cannot store U+0000 or lone surrogates in text columns, and deep nesting
        # breaks every recursive reader: keep such a delivery as a dead letter (Typeform would
        # retry a 500 forever).
        raise MalformedDelivery(problem)
    event_type, parsed = parse_form_response(payload, field_map)
    if parsed is None:
        return IngestResult(IngestOutcome.IGNORED_PARTIAL, None)
    now = utcnow()
    values = {
        "form_response_token": parsed.token,
        "form_id": parsed.form_id,
        "event_id": parsed.event_id,
        "submitted_at": parsed.submitted_at,
        "received_at": now,
        "raw_payload": text,
        "answers": parsed.answers,
        "unmapped_answers": parsed.unmapped_answers,
        "hidden_fields": parsed.hidden_fields,
        "status": "received",
        "status_version": 1,
        "screening_notes": [],
        "updated_at": now,
    }
    for field in COLUMN_FIELDS:
        values[field] = _column_value(field, parsed.answers.get(field))
    insert_fn = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = (
        # Core insert on the table (not the ORM bulk path): the hot path of the webhook.
        insert_fn(OperatorApplication.__table__)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["form_response_token"])
        .returning(OperatorApplication.__table__.c.id)
    )
    new_id = session.execute(stmt).scalar()
    if new_id is None:
        existing = session.scalar(
            select(OperatorApplication.id).where(OperatorApplication.form_response_token == parsed.token)
        )
        return IngestResult(IngestOutcome.DUPLICATE, existing, parsed.token)
    return IngestResult(IngestOutcome.CREATED, new_id, parsed.token)


def record_dead_letter(session: Session, *, raw_body: bytes, headers: dict[str, str], error: str,
                       source: str = "typeform") -> WebhookDeadLetter:
    letter = WebhookDeadLetter(source=source, raw_body=raw_body, headers=headers, error=error,
                               received_at=utcnow())
    session.add(letter)
    session.flush()
    return letter
