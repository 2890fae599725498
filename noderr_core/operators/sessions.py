"""Operator sign-in with their payout wallet (EIP-4361), server-side sessions, wallet changes.

Rules:
- The server issues every message's nonce (random, bound to one address and one purpose, valid
  for NONCE_TTL) and spends it with a conditional UPDATE: a signed message works once, and a
  refused attempt changes nothing (the nonce stays usable until it expires).
- Domain, URI and chain id must be this site's; Issued At, Expiration Time and Not Before are
  checked; the signer recovered from the signature must be the message's address and the payout
  wallet of an operator. The first successful sign-in proves that wallet (`wallet_proven_at`):
  rewards accrue only to proven wallets (noderr_core.rewards.epochs).
- Sessions work like the admin's: the cookie holds a random token, the database its sha256, each
  session has its own CSRF token, and a session is only valid while its wallet is still the
  operator's payout wallet.
- A wallet change is signed by the current (old) wallet; the new wallet is unproven until it signs
  in, and every session of the operator ends. An admin may change it instead, with a reason, audited.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from eth_utils import is_address, to_checksum_address
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.operators.siwe import (
    SiweError,
    SiweMessage,
    SiweSyntaxError,
    check_message,
    format_datetime,
    parse_message,
    verify_signature,
)
from noderr_core.security import new_token, sha256_hex
from noderr_core.tables import Operator
from noderr_core.tables.operators import OperatorSession, SiweNonce
from noderr_core.timeutil import utcnow

NONCE_TTL = timedelta(minutes=10)
MAX_LIVE_NONCES = 20
LAST_SEEN_RESOLUTION = timedelta(minutes=1)
SIGN_IN = "sign_in"
WALLET_CHANGE = "wallet_change"
SIGN_IN_STATEMENT = "Sign in to the Noderr operator pages with your payout wallet."


class SignInRefused(ValueError):
    """Refused sign-in or wallet change; `status` is the HTTP status the adapter answers with."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SignInSite:
    """This relying party, as EIP-4361 names it: the site's authority, its URI, the chain."""

    scheme: str
    domain: str
    uri: str
    chain_id: int

    @classmethod
    def from_base_url(cls, public_base_url: str, chain_id: int) -> "SignInSite":
        parts = urlsplit(public_base_url.rstrip("/"))
        return cls(scheme=parts.scheme, domain=parts.netloc,
                   uri=f"{parts.scheme}://{parts.netloc}/operator", chain_id=chain_id)


@dataclass(frozen=True)
class IssuedOperatorSession:
    """A new session: `token` goes into the cookie and exists nowhere else."""

    session: OperatorSession
    operator: Operator
    token: str
    first_proof: bool


def normalize_address(value: str, what: str = "wallet") -> str:
    if not isinstance(value, str) or not is_address(value.strip()):
        raise SignInRefused(f"{value!r} is not an Ethereum address (0x followed by 40 hex digits)",
                            status=400)
    return to_checksum_address(value.strip())


def operator_by_wallet(session: Session, wallet: str) -> Operator | None:
    return session.scalar(
        select(Operator).where(func.lower(Operator.wallet_address) == wallet.lower()).limit(1)
    )


def issue_challenge(session: Session, site: SignInSite, *, address: str, purpose: str = SIGN_IN,
                    statement: str = SIGN_IN_STATEMENT, new_wallet: str | None = None,
                    now: datetime | None = None) -> SiweMessage:
    """A fresh EIP-4361 message for `address` to sign, with a server-issued single-use nonce."""
    now = now or utcnow()
    address = normalize_address(address)
    # Bounded by the caller's own data: expired nonces of this address go, live ones are capped.
    session.execute(delete(SiweNonce).where(SiweNonce.address == address, SiweNonce.expires_at <= now))
    live = session.scalar(select(func.count()).select_from(SiweNonce).where(
        SiweNonce.address == address, SiweNonce.used_at.is_(None)))
    if live >= MAX_LIVE_NONCES:
        raise SignInRefused(f"too many unfinished sign-ins for {address}: finish one, or wait "
                            f"{int(NONCE_TTL.total_seconds() // 60)} minutes", status=429)
    nonce = secrets.token_hex(16)
    session.add(SiweNonce(nonce=nonce, address=address, purpose=purpose, new_wallet=new_wallet,
                          issued_at=now, expires_at=now + NONCE_TTL))
    session.flush()
    return SiweMessage(
        scheme=site.scheme, domain=site.domain, address=address, statement=statement, uri=site.uri,
        version="1", chain_id=site.chain_id, nonce=nonce, issued_at=format_datetime(now),
        expiration_time=format_datetime(now + NONCE_TTL),
    )


def _verified(session: Session, site: SignInSite, text: str, signature: str, purpose: str,
              now: datetime) -> tuple[SiweMessage, SiweNonce]:
    """Parse, check and verify a signed message and find its live nonce (not yet spent)."""
    try:
        message = parse_message(text)
        check_message(message, domain=site.domain, uri_prefix=site.uri, chain_id=site.chain_id, now=now)
        verify_signature(message, text, signature)
    except SiweError as exc:
        raise SignInRefused(str(exc), status=400 if isinstance(exc, SiweSyntaxError) else 401) from None
    row = session.scalar(select(SiweNonce).where(SiweNonce.nonce == message.nonce))
    if row is None or row.purpose != purpose or row.address != message.address:
        raise SignInRefused("this message's nonce was not issued by this site for this wallet: "
                            "start the sign-in again")
    if row.used_at is not None:
        raise SignInRefused("this signed message was already used (replay refused): sign in again")
    if row.expires_at <= now:
        raise SignInRefused("the sign-in message has expired: start the sign-in again")
    return message, row


def _spend(session: Session, row: SiweNonce, now: datetime) -> None:
    spent = session.execute(
        update(SiweNonce).where(SiweNonce.id == row.id, SiweNonce.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:
        raise SignInRefused("this signed message was already used (replay refused): sign in again")


def sign_in_with_ethereum(session: Session, site: SignInSite, *, text: str, signature: str,
                          ip: str | None, user_agent: str | None, ttl_hours: int,
                          previous_token: str | None = None,
                          now: datetime | None = None) -> IssuedOperatorSession:
    """Check a signed sign-in message, spend its nonce, prove the wallet, open a session.

    Raises SignInRefused (nothing written) when anything does not hold. The caller commits.
    """
    now = now or utcnow()
    message, nonce_row = _verified(session, site, text, signature, SIGN_IN, now)
    operator = operator_by_wallet(session, message.address)
    if operator is None:
        raise SignInRefused(
            f"{message.address} is not the payout wallet of any Noderr operator: sign in with the "
            "wallet you gave in your application", status=403)
    _spend(session, nonce_row, now)
    if previous_token:
        revoke_session(session, previous_token)
    first_proof = operator.wallet_proven_at is None
    if first_proof:
        operator.wallet_proven_at = now
        audit(session, _operator_actor(operator), "operator.wallet_proven", "operator", operator.id,
              wallet=operator.wallet_address, nonce=message.nonce)
    token = new_token(32)
    row = OperatorSession(
        token_hash=sha256_hex(token), operator_id=operator.id, wallet=message.address,
        csrf_token=new_token(32), created_at=now, last_seen_at=now,
        expires_at=now + timedelta(hours=ttl_hours), ip=(ip or "")[:64] or None,
        user_agent=(user_agent or "")[:400] or None,
    )
    session.add(row)
    audit(session, _operator_actor(operator), "operator.sign_in", "operator", operator.id, ip=ip)
    session.flush()
    return IssuedOperatorSession(session=row, operator=operator, token=token, first_proof=first_proof)


def _operator_actor(operator: Operator) -> Actor:
    return Actor("operator", operator.id, operator.email)


def resolve_operator_session(session: Session, token: str | None) -> tuple[OperatorSession, Operator] | None:
    """The live session and its operator for a cookie token, or None (unknown, expired, revoked,
    or signed in with a wallet that is no longer the operator's payout wallet)."""
    if not token or len(token) > 200:
        return None
    row = session.scalar(select(OperatorSession).where(OperatorSession.token_hash == sha256_hex(token)))
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    operator = session.get(Operator, row.operator_id)
    if operator is None or operator.wallet_address.lower() != row.wallet.lower():
        return None
    if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
        row.last_seen_at = now
    return row, operator


def revoke_session(session: Session, token: str) -> bool:
    result = session.execute(
        update(OperatorSession)
        .where(OperatorSession.token_hash == sha256_hex(token), OperatorSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(result.rowcount)


def sign_out(session: Session, token: str, operator: Operator) -> None:
    if revoke_session(session, token):
        audit(session, _operator_actor(operator), "operator.sign_out", "operator", operator.id)


def _check_new_wallet(session: Session, operator: Operator, new_wallet: str) -> str:
    new_wallet = normalize_address(new_wallet)
    if new_wallet.lower() == operator.wallet_address.lower():
        raise SignInRefused(f"{new_wallet} is already your payout wallet", status=400)
    other = operator_by_wallet(session, new_wallet)
    if other is not None:
        raise SignInRefused(f"{new_wallet} is the payout wallet of another operator: "
                            "one wallet pays one operator", status=409)
    return new_wallet


def wallet_change_statement(operator: Operator, new_wallet: str) -> str:
    return (f"Move the payouts of Noderr operator {operator.id} from {operator.wallet_address} "
            f"to {new_wallet}.")


def issue_wallet_change_challenge(session: Session, site: SignInSite, operator: Operator,
                                  new_wallet: str) -> SiweMessage:
    """The message the CURRENT payout wallet signs to move payouts to `new_wallet`."""
    new_wallet = _check_new_wallet(session, operator, new_wallet)
    return issue_challenge(session, site, address=operator.wallet_address, purpose=WALLET_CHANGE,
                           statement=wallet_change_statement(operator, new_wallet),
                           new_wallet=new_wallet)


def _move_wallet(session: Session, operator: Operator, new_wallet: str, actor: Actor, **details) -> None:
    old = operator.wallet_address
    operator.wallet_address = new_wallet
    operator.wallet_proven_at = None  # the new wallet proves itself at its first sign-in
    revoked = session.execute(
        update(OperatorSession)
        .where(OperatorSession.operator_id == operator.id, OperatorSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    ).rowcount
    audit(session, actor, "operator.wallet_changed", "operator", operator.id,
          old_wallet=old, new_wallet=new_wallet, sessions_ended=revoked, **details)
    session.flush()


def change_wallet_with_signature(session: Session, site: SignInSite, operator: Operator, *,
                                 text: str, signature: str, now: datetime | None = None) -> str:
    """Move payouts to the wallet named when the challenge was issued; returns the new wallet."""
    now = now or utcnow()
    message, nonce_row = _verified(session, site, text, signature, WALLET_CHANGE, now)
    if message.address.lower() != operator.wallet_address.lower():
        raise SignInRefused(
            f"a wallet change must be signed by your current payout wallet "
            f"{operator.wallet_address}, not {message.address}", status=403)
    new_wallet = _check_new_wallet(session, operator, nonce_row.new_wallet or "")
    if message.statement != wallet_change_statement(operator, new_wallet):
        raise SignInRefused("the signed statement does not name this wallet change", status=400)
    _spend(session, nonce_row, now)
    _move_wallet(session, operator, new_wallet, _operator_actor(operator),
                 proof="signature of the old wallet", nonce=message.nonce)
    return new_wallet


def admin_change_wallet(session: Session, *, operator_id: int, new_wallet: str, actor: Actor,
                        reason: str | None) -> Operator:
    """An admin moves an operator's payouts (e.g. the old wallet's key is lost); audited."""
    reason = (reason or "").strip()
    if not reason:
        raise SignInRefused("an admin wallet change needs a reason (it goes into the audit log)",
                            status=400)
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise SignInRefused(f"operator {operator_id} does not exist", status=404)
    new_wallet = _check_new_wallet(session, operator, new_wallet)
    _move_wallet(session, operator, new_wallet, actor, proof="admin action", reason=reason[:2000])
    return operator
