"""Operator sign-in with the payout wallet (EIP-4361) through the real app, on SQLite and PostgreSQL.

A good signature opens a session and proves the wallet once; every bad input (forged signature,
expired message, replayed nonce, another domain or chain id, a wallet no operator has) is refused
with a message saying why, and leaves the database as it was.
"""

from __future__ import annotations

from datetime import timedelta

from eth_account import Account
from sqlalchemy import func, select

from noderr_core.operators.sessions import SignInSite, issue_challenge
from noderr_core.tables import AuditLogEntry, Operator
from noderr_core.tables.operators import OperatorSession, SiweNonce
from noderr_core.timeutil import utcnow
from tests.support.operators import operator_csrf, operator_sign_in, sign_text, siwe_challenge

KEY = "0x6370fd033278c143179d81c5526140625662b8daa446c22ee2d73db3707e620c"
WALLET = Account.from_key(KEY).address


def _make_operator(portal_db, wallet: str = WALLET, email: str = "ada@example.com") -> int:
    with portal_db() as s:
        op = Operator(email=email, full_name="Ada Lovelace", wallet_address=wallet)
        s.add(op)
        s.commit()
        return op.id


def _state(portal_db) -> dict:
    with portal_db() as s:
        return {
            "sessions": s.scalar(select(func.count()).select_from(OperatorSession)),
            "spent_nonces": s.scalar(select(func.count()).select_from(SiweNonce).where(SiweNonce.used_at.is_not(None))),
            "proven": [o.wallet_proven_at is not None for o in s.scalars(select(Operator).order_by(Operator.id))],
            "audit": s.scalar(select(func.count()).select_from(AuditLogEntry).where(AuditLogEntry.actor_type == "operator")),
        }


def test_signing_in_proves_the_wallet_once_and_opens_a_session(portal_client, portal_db):
    operator_id = _make_operator(portal_db)
    assert portal_client.get("/operator", headers={"accept": "text/html"}, follow_redirects=False).headers[
        "location"] == "/operator/sign-in"
    assert portal_client.get("/operator", headers={"accept": "application/json"}).status_code == 401

    challenge = siwe_challenge(portal_client, WALLET.lower())  # any case: the message has EIP-55
    assert challenge["message"].startswith("http://testserver wants you to sign in with your Ethereum account:\n" + WALLET)
    assert "\nChain ID: 1337\n" in challenge["message"] and "URI: http://testserver/operator" in challenge["message"]
    response = portal_client.post("/operator/sign-in", json={
        "message": challenge["message"], "signature": sign_text(KEY, challenge["message"])})
    assert response.status_code == 200, response.text
    assert response.json() == {"redirect": "/operator", "wallet": WALLET, "wallet_proven_now": True}
    cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("noderr_operator_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/operator" in cookie
    page = portal_client.get("/operator", headers={"accept": "text/html"})
    assert page.status_code == 200 and "proven by signature" in page.text and WALLET in page.text
    assert "payout wallet" in page.text and "is proven" in page.text  # the flash message

    # A second sign-in opens another session but proves nothing new.
    again = operator_sign_in(portal_client, KEY)
    assert again.json()["wallet_proven_now"] is False
    with portal_db() as s:
        actions = s.scalars(select(AuditLogEntry.action).where(AuditLogEntry.subject_id == str(operator_id))).all()
    assert actions.count("operator.wallet_proven") == 1 and actions.count("operator.sign_in") == 2

    # Sign-out needs the session's CSRF token, then ends the session.
    assert portal_client.post("/operator/sign-out", data={}, headers={"accept": "text/html"}).status_code == 403
    out = portal_client.post("/operator/sign-out", data={"csrf_token": operator_csrf(portal_client)},
                             follow_redirects=False)
    assert out.status_code == 303
    assert portal_client.get("/operator", headers={"accept": "application/json"}).status_code == 401


def test_bad_sign_ins_are_refused_with_a_reason_and_change_nothing(portal_client, portal_db, portal_settings):
    _make_operator(portal_db)
    stranger = Account.create()
    site = SignInSite.from_base_url(portal_settings.public_base_url, portal_settings.chain_id)

    def attempt(message: str, signature: str) -> tuple[int, str]:
        before = _state(portal_db)
        r = portal_client.post("/operator/sign-in", json={"message": message, "signature": signature})
        assert _state(portal_db) == before, f"a refused sign-in changed the database: {r.text}"
        assert "noderr_operator_session" not in r.headers.get("set-cookie", "")
        return r.status_code, r.json()["detail"]

    message = siwe_challenge(portal_client, WALLET)["message"]
    # Forged: signed by somebody else's key.
    assert attempt(message, sign_text(stranger.key.hex(), message)) == (
        401, f"the signature was made by {stranger.address}, not by {WALLET} named in the message")
    # Garbage signature.
    code, detail = attempt(message, "0x" + "11" * 65)
    assert code == 401 and "valid Ethereum signature" in detail
    # Another site's domain, another chain id (signed correctly by the right wallet).
    evil = message.replace("testserver wants", "evil.example wants")
    assert attempt(evil, sign_text(KEY, evil))[1].startswith("this message is for evil.example, not testserver")
    other_chain = message.replace("Chain ID: 1337", "Chain ID: 8453")
    code, detail = attempt(other_chain, sign_text(KEY, other_chain))
    assert code == 401 and "chain id 8453" in detail and "1337" in detail
    # A nonce the server never issued.
    made_up = message.replace(message.split("Nonce: ")[1].split("\n")[0], "deadbeefdeadbeef")
    assert "not issued by this site" in attempt(made_up, sign_text(KEY, made_up))[1]
    # Malformed text: 400 naming the line.
    code, detail = attempt("hello", sign_text(KEY, "hello"))
    assert code == 400 and "line 1" in detail
    # Expired: a message issued (and signed) 20 minutes ago.
    with portal_db() as s:
        old = issue_challenge(s, site, address=WALLET, now=utcnow() - timedelta(minutes=20)).to_text()
        s.commit()
    assert "expired" in attempt(old, sign_text(KEY, old))[1]
    # A wallet that is no operator's: refused at the challenge, and at sign-in if it had a nonce.
    r = portal_client.post("/operator/sign-in/challenge", json={"address": stranger.address})
    assert r.status_code == 403 and "not the payout wallet of any Noderr operator" in r.json()["detail"]
    with portal_db() as s:
        theirs = issue_challenge(s, site, address=stranger.address).to_text()
        s.commit()
    code, detail = attempt(theirs, sign_text(stranger.key.hex(), theirs))
    assert code == 403 and "sign in with the wallet you gave in your application" in detail

    # The good signature still works once (refusals did not spend the nonce) ...
    good = sign_text(KEY, message)
    ok = portal_client.post("/operator/sign-in", json={"message": message, "signature": good})
    assert ok.status_code == 200
    # ... and never twice: a replay is refused.
    code, detail = attempt(message, good)
    assert code == 401 and "already used (replay refused)" in detail


def test_sign_in_endpoints_refuse_cross_site_and_non_json_requests(portal_client, portal_db):
    _make_operator(portal_db)
    r = portal_client.post("/operator/sign-in/challenge", json={"address": WALLET},
                           headers={"origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    r = portal_client.post("/operator/sign-in", data={"message": "x", "signature": "y"})
    assert r.status_code in (415, 422)
    r = portal_client.post("/operator/sign-in/challenge", json={"address": "0x123"})
    assert r.status_code == 400 and "not an Ethereum address" in r.json()["detail"]
    r = portal_client.post("/operator/sign-in/challenge", json={"address": WALLET, "extra": 1})
    assert r.status_code == 422


def test_unfinished_sign_ins_are_capped_per_wallet(portal_client, portal_db, portal_settings):
    from noderr_core.operators.sessions import MAX_LIVE_NONCES

    _make_operator(portal_db)
    site = SignInSite.from_base_url(portal_settings.public_base_url, portal_settings.chain_id)
    with portal_db() as s:  # expired ones do not count and are cleaned away
        for _ in range(5):
            issue_challenge(s, site, address=WALLET, now=utcnow() - timedelta(hours=1))
        s.commit()
    for _ in range(MAX_LIVE_NONCES):
        siwe_challenge(portal_client, WALLET)
    r = portal_client.post("/operator/sign-in/challenge", json={"address": WALLET})
    assert r.status_code == 429 and "too many unfinished sign-ins" in r.json()["detail"]
    with portal_db() as s:
        assert s.scalar(select(func.count()).select_from(SiweNonce)) == MAX_LIVE_NONCES
