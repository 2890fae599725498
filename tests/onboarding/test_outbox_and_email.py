"""The outbox (idempotent enqueue, leases, backoff) and the email relay against a real SMTP server."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from noderr_core.email import UnknownEmailTemplate, enqueue_email
from noderr_core.email.relay import EmailHandler
from noderr_core.tables import OutboxAttempt, OutboxMessage
from noderr_core.outbox import claim_due, enqueue, record_failure, record_success, relay_due
from noderr_core.settings import Settings
from noderr_core.timeutil import utcnow


def test_enqueue_is_insert_if_absent(session_factory):
    with session_factory() as s:
        first = enqueue(s, kind="chain", idempotency_key="chain:register_node:n1",
                        payload={"action": "register_node", "node_id": "n1"})
        s.commit()
    with session_factory() as s:
        again = enqueue(s, kind="chain", idempotency_key="chain:register_node:n1",
                        payload={"action": "something else"})
        s.commit()
        assert again.id == first.id and again.payload == {"action": "register_node", "node_id": "n1"}
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_concurrent_producers_of_one_key_make_one_row(session_factory):
    errors: list[BaseException] = []

    def produce():
        try:
            with session_factory() as s:
                enqueue(s, kind="email", idempotency_key="email:approval:7", payload={"n": 1})
                s.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_claimed_rows_are_leased_and_failures_back_off(session_factory):
    with session_factory() as s:
        enqueue(s, kind="chain", idempotency_key="k1", payload={})
        s.commit()
    with session_factory() as s:
        [msg] = claim_due(s, kind="chain", limit=10, lock_seconds=60)
        s.commit()
    with session_factory() as s:
        assert claim_due(s, kind="chain", limit=10, lock_seconds=60) == []  # leased
        assert claim_due(s, kind="email", limit=10, lock_seconds=60) == []  # other kind
        s.commit()
    with session_factory() as s:
        row = record_failure(s, msg, "rpc down")
        s.commit()
        assert row.status == "pending" and row.attempts == 1
        assert row.next_attempt_at > utcnow() + timedelta(seconds=5)
    with session_factory() as s:
        assert claim_due(s, kind="chain", limit=10, lock_seconds=60) == []  # backing off
        [again] = claim_due(s, kind="chain", limit=10, lock_seconds=60, now=utcnow() + timedelta(hours=2))
        s.commit()
    with session_factory() as s:
        record_success(s, again, {"tx": "0xabc"})
        s.commit()
        attempts = s.scalars(select(OutboxAttempt).order_by(OutboxAttempt.id)).all()
        assert [a.succeeded for a in attempts] == [False, True]
        assert s.get(OutboxMessage, msg.id).status == "sent"


def test_gives_up_after_max_attempts_or_non_retryable(session_factory):
    with session_factory() as s:
        a = enqueue(s, kind="email", idempotency_key="a", payload={}, max_attempts=2)
        b = enqueue(s, kind="email", idempotency_key="b", payload={})
        s.commit()
    with session_factory() as s:
        assert record_failure(s, a, "x").status == "pending"
        assert record_failure(s, a, "x").status == "failed"
        assert record_failure(s, b, "550 no such user", retryable=False).status == "failed"
        s.commit()


def test_postgres_relays_never_claim_the_same_row(pg_url):
    from noderr_core.db import make_engine, make_session_factory

    engine = make_engine(pg_url)
    factory = make_session_factory(engine)
    with factory() as s:
        for i in range(10):
            enqueue(s, kind="email", idempotency_key=f"k{i}", payload={})
        s.commit()
    first, second = factory(), factory()
    try:
        a = claim_due(first, kind="email", limit=6, lock_seconds=60)  # holds row locks, uncommitted
        b = claim_due(second, kind="email", limit=6, lock_seconds=60)  # SKIP LOCKED: the other 4
        assert len(a) == 6 and len(b) == 4
        assert not {m.id for m in a} & {m.id for m in b}
    finally:
        first.rollback(), second.rollback(), first.close(), second.close()
        engine.dispose()


def test_unknown_template_is_refused(session_factory):
    with session_factory() as s, pytest.raises(UnknownEmailTemplate):
        enqueue_email(s, template="nope", to="a@example.com", context={}, idempotency_key="x")


def _settings(smtp_url: str, tmp_path) -> Settings:
    return Settings(env="test", smtp_url=smtp_url, state_dir=tmp_path / "state")


def _queue_approval(session_factory, key="email:approval:1", to="laura@example.com"):
    with session_factory() as s:
        enqueue_email(s, template="approval", to=to,
                      context={"full_name": "Laura", "node_id": "node_1", "expires_at": "2030-01-01 00:00"},
                      secret_context={"portal_url": "http://127.0.0.1:8000/portal/download/SECRET123"},
                      secret_key=Settings(env="test").secret_key.get_secret_value(),
                      idempotency_key=key, subject_type="application", subject_id=1)
        s.commit()


def test_relay_sends_html_and_text_and_wipes_the_sealed_link(session_factory, smtp_server, tmp_path):
    _queue_approval(session_factory)
    with session_factory() as s:
        row = s.scalars(select(OutboxMessage)).one()
        assert "SECRET123" not in str(row.payload)  # sealed at rest
    report = relay_due(session_factory, EmailHandler(_settings(smtp_server.url, tmp_path)))
    assert report.sent == [row.id]
    [mail] = smtp_server.messages()
    assert mail.subject == "Your Noderr node node_1 is approved"
    assert mail.to == ["laura@example.com"]
    assert "http://127.0.0.1:8000/portal/download/SECRET123" in mail.links
    assert 'href="http://127.0.0.1:8000/portal/download/SECRET123"' in mail.html
    assert "Laura" in mail.text
    with session_factory() as s:
        row = s.get(OutboxMessage, row.id)
        assert row.status == "sent" and row.result["smtp_status"] == 250
        assert "sealed_context" not in row.payload
        assert row.result["message_id"] == mail.message_id
    # Nothing due: a second relay sends nothing.
    assert relay_due(session_factory, EmailHandler(_settings(smtp_server.url, tmp_path))).claimed == 0
    assert len(smtp_server.messages()) == 1


def test_smtp_down_keeps_messages_queued_then_sends_each_once(session_factory, smtp_server, tmp_path):
    settings = _settings(smtp_server.url, tmp_path)
    _queue_approval(session_factory, key="email:approval:1", to="a@example.com")
    _queue_approval(session_factory, key="email:approval:2", to="b@example.com")
    smtp_server.stop()
    report = relay_due(session_factory, EmailHandler(settings))
    assert report.sent == [] and len(report.retrying) == 2
    assert all("unreachable" in e for e in report.errors.values())
    with session_factory() as s:
        rows = s.scalars(select(OutboxMessage)).all()
        assert {r.status for r in rows} == {"pending"} and {r.attempts for r in rows} == {1}
        assert s.scalar(select(func.count()).select_from(OutboxAttempt)) == 2
    # Still down later: another failed attempt, still queued.
    later = utcnow() + timedelta(hours=2)
    assert len(relay_due(session_factory, EmailHandler(settings), now=later).retrying) == 2
    smtp_server.start()
    much_later = utcnow() + timedelta(hours=6)
    report = relay_due(session_factory, EmailHandler(settings), now=much_later)
    assert len(report.sent) == 2
    # And again: nothing more goes out.
    assert relay_due(session_factory, EmailHandler(settings), now=much_later + timedelta(hours=6)).claimed == 0
    messages = smtp_server.messages()
    assert sorted(m.to[0] for m in messages) == ["a@example.com", "b@example.com"]
    with session_factory() as s:
        attempts = s.scalars(select(OutboxAttempt).order_by(OutboxAttempt.id)).all()
        assert [a.succeeded for a in attempts] == [False, False, False, False, True, True]


def test_permanent_smtp_rejection_is_not_retried(session_factory, smtp_server, tmp_path):
    class Refusing:
        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
            return "550 5.1.1 no such mailbox"

    smtp_server.stop()
    smtp_server.handler_backup = smtp_server.handler
    smtp_server.handler = Refusing()
    smtp_server.start()
    _queue_approval(session_factory)
    report = relay_due(session_factory, EmailHandler(_settings(smtp_server.url, tmp_path)))
    assert len(report.failed) == 1 and "550" in next(iter(report.errors.values()))
