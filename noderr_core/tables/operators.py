"""Operator sign-in: single-use Sign-In with Ethereum nonces and server-side operator sessions.

Like the admin's: the browser only holds a random session token, the database keeps its sha256.
A nonce row is the server's half of one EIP-4361 message: it is issued for one address and one
purpose, expires, and is spent by a conditional UPDATE, so a signed message works at most once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from noderr_core.tables.base import Base
from noderr_core.timeutil import utcnow


class SiweNonce(Base):
    __tablename__ = "operator_siwe_nonces"

    id: Mapped[int] = mapped_column(primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    # The checksummed address the message was issued for; a signature by anyone else is refused.
    address: Mapped[str] = mapped_column(String(42))
    purpose: Mapped[str] = mapped_column(String(16))  # sign_in | wallet_change
    # For wallet_change: the wallet the signer (the current payout wallet) moves payouts to.
    new_wallet: Mapped[str | None] = mapped_column(String(42))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]


class OperatorSession(Base):
    """Server-side operator session; the cookie carries a random token, only its sha256 is stored."""

    __tablename__ = "operator_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id", ondelete="CASCADE"), index=True)
    wallet: Mapped[str] = mapped_column(String(42))  # the address that signed in
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
