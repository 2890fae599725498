"""Admin authentication: password login with a rate limit, and server-side sessions.

The browser only ever holds a random session token; the database keeps its sha256, so a leaked
database (or backup) cannot be replayed as a cookie. Each session has its own CSRF token.
"""

from __future__ import annotations

import hmac
import math
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.tables import AdminSession, AdminUser, LoginAttempt
from noderr_core.security import hash_password, new_token, sha256_hex, verify_password
from noderr_core.timeutil import utcnow

RATE_LIMIT_WINDOW = timedelta(minutes=1)
# Refresh last_seen_at at most this often, so reading pages does not write on every request.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


class LoginRateLimited(Exception):
    """Too many failed attempts for this IP or e-mail in the window."""

    def __init__(self, retry_after_seconds: int, scope: str):
        self.retry_after_seconds = retry_after_seconds
        self.scope = scope
        super().__init__(
            f"Too many failed sign-in attempts from this {scope}. "
            f"Try again in {retry_after_seconds} seconds."
        )


class InvalidCredentials(Exception):
    def __init__(self) -> None:
        super().__init__("Wrong e-mail or password.")


@dataclass(frozen=True)
class IssuedSession:
    """A new session: `token` goes into the cookie and exists nowhere else."""

    session: AdminSession
    token: str


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def _retry_after(session: Session, condition, limit: int) -> int | None:
    """Seconds until a slot frees up when `limit` failures in the window are reached, else None."""
    since = utcnow() - RATE_LIMIT_WINDOW
    failures = select(LoginAttempt.attempted_at).where(
        condition, LoginAttempt.succeeded.is_(False), LoginAttempt.attempted_at > since
    )
    count = session.scalar(select(func.count()).select_from(failures.subquery()))
    if not count or count < limit:
        return None
    # The (count - limit + 1)-th oldest failure is the one whose expiry brings us below the limit.
    oldest = session.scalar(
        failures.order_by(LoginAttempt.attempted_at.asc()).offset(count - limit).limit(1)
    )
    wait = (oldest + RATE_LIMIT_WINDOW - utcnow()).total_seconds()
    return max(1, math.ceil(wait))


def check_login_rate_limit(session: Session, *, email: str, ip: str, limit_per_minute: int) -> None:
    """Raise LoginRateLimited when the IP or the e-mail has used up its failed attempts."""
    for scope, condition in (
        ("IP address", LoginAttempt.ip == ip),
        ("account", LoginAttempt.email == normalize_email(email)),
    ):
        wait = _retry_after(session, condition, limit_per_minute)
        if wait is not None:
            raise LoginRateLimited(wait, scope)


def authenticate_admin(
    session: Session,
    *,
    email: str,
    password: str,
    ip: str,
    user_agent: str | None,
    ttl_hours: int,
    limit_per_minute: int,
    previous_token: str | None = None,
) -> IssuedSession:
    """Check the rate limit and the password, then open a fresh session.

    Every attempt is recorded in login_attempts (the rate limit's source of truth). A successful
    login revokes the session the browser arrived with, so a token planted before login
    (session fixation) is worthless afterwards. The caller commits, and must commit on failure
    too so that the failed attempt counts.
    """
    email_norm = normalize_email(email)
    check_login_rate_limit(session, email=email_norm, ip=ip, limit_per_minute=limit_per_minute)
    admin = session.scalar(select(AdminUser).where(AdminUser.email == email_norm))
    ok = (
        admin is not None
        and admin.is_active
        and verify_password(admin.password_hash, password or "")
    )
    session.add(LoginAttempt(email=email_norm, ip=ip, succeeded=ok))
    if not ok:
        session.flush()
        raise InvalidCredentials()
    if previous_token:
        revoke_session(session, previous_token)
    issued = open_session(session, admin, ip=ip, user_agent=user_agent, ttl_hours=ttl_hours)
    admin.last_login_at = utcnow()
    audit(session, Actor.admin(admin), "admin.login", "admin_user", admin.id, ip=ip)
    return issued


def open_session(
    session: Session, admin: AdminUser, *, ip: str | None, user_agent: str | None, ttl_hours: int
) -> IssuedSession:
    token = new_token(32)
    now = utcnow()
    row = AdminSession(
        token_hash=sha256_hex(token),
        admin_user_id=admin.id,
        csrf_token=new_token(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=ttl_hours),
        ip=ip,
        user_agent=(user_agent or "")[:400] or None,
    )
    session.add(row)
    session.flush()
    return IssuedSession(session=row, token=token)


def resolve_session(session: Session, token: str | None) -> tuple[AdminSession, AdminUser] | None:
    """The live session and its admin for a cookie token, or None (unknown, expired, revoked)."""
    if not token or len(token) > 200:
        return None
    row = session.scalar(select(AdminSession).where(AdminSession.token_hash == sha256_hex(token)))
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    admin = session.get(AdminUser, row.admin_user_id)
    if admin is None or not admin.is_active:
        return None
    if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
        row.last_seen_at = now
    return row, admin


def revoke_session(session: Session, token: str) -> bool:
    """Invalidate the session behind a cookie token; True if a live one was revoked."""
    result = session.execute(
        update(AdminSession)
        .where(AdminSession.token_hash == sha256_hex(token), AdminSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(result.rowcount)


def logout(session: Session, token: str, admin: AdminUser) -> None:
    if revoke_session(session, token):
        audit(session, Actor.admin(admin), "admin.logout", "admin_user", admin.id)


def csrf_matches(admin_session: AdminSession, submitted: str | None) -> bool:
    return bool(submitted) and hmac.compare_digest(admin_session.csrf_token, submitted)


MIN_PASSWORD_LENGTH = 12


class PasswordChangeRefused(ValueError):
    """The change was refused; the message says why, for the admin."""


def change_admin_password(
    session: Session, admin: AdminUser, *, current_password: str, new_password: str,
    keep_session_token: str | None,
) -> int:
    """Set a new password (argon2id) and sign out every other session; returns how many.

    The bootstrap admin starts with a password from the environment: this is how it becomes a
    secret only the admin knows.
    """
    if not verify_password(admin.password_hash, current_password):
        raise PasswordChangeRefused("The current password is wrong.")
    if len(new_password) < MIN_PASSWORD_LENGTH:
        raise PasswordChangeRefused(f"The new password needs at least {MIN_PASSWORD_LENGTH} characters.")
    if new_password == current_password:
        raise PasswordChangeRefused("The new password must differ from the current one.")
    admin.password_hash = hash_password(new_password)
    keep_hash = sha256_hex(keep_session_token) if keep_session_token else None
    result = session.execute(
        update(AdminSession)
        .where(
            AdminSession.admin_user_id == admin.id,
            AdminSession.revoked_at.is_(None),
            AdminSession.token_hash != (keep_hash or ""),
        )
        .values(revoked_at=utcnow())
    )
    audit(session, Actor.admin(admin), "admin.password_changed", "admin_user", admin.id,
          other_sessions_revoked=result.rowcount)
    return result.rowcount
