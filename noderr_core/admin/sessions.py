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
from noderr_core.security import (
    hash_password,
    new_token,
    sha256_hex,
    verify_against_dummy,
    verify_password,
)
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


# --- trusted devices (OWASP "device cookies") ----------------------------------------------------
# A browser that signed in successfully gets a cookie `<device id>.<HMAC(secret, email, device id)>`.
# Attempts that present a valid one for the submitted e-mail count against that device's own
# allowance, not the account's shared one: strangers guessing the admin's password exhaust the
# account's allowance for untrusted clients only, and cannot lock the admin out of a browser they
# used before.
DEVICE_COOKIE_MAX_AGE = 180 * 24 * 3600


def _device_mac(secret_key: str, email: str, device_id: str) -> str:
    message = f"admin-device:{normalize_email(email)}:{device_id}".encode()
    return hmac.new(secret_key.encode(), message, "sha256").hexdigest()


def issue_device_cookie(secret_key: str, email: str, device_id: str | None = None) -> str:
    device_id = device_id or new_token(12)
    return f"{device_id}.{_device_mac(secret_key, email, device_id)}"


def trusted_device(secret_key: str, email: str, cookie: str | None) -> str | None:
    """The device id of a valid device cookie for this e-mail, else None (an untrusted client)."""
    if not cookie or len(cookie) > 200 or "." not in cookie:
        return None
    device_id, _, mac = cookie.partition(".")
    if not device_id or len(device_id) > 64:
        return None
    return device_id if hmac.compare_digest(mac, _device_mac(secret_key, email, device_id)) else None


def _failure_scopes(*, email: str, ip: str, device: str | None):
    account = (
        ("this browser", LoginAttempt.device == device) if device is not None
        else ("account", (LoginAttempt.email == email) & LoginAttempt.device.is_(None))
    )
    return (("IP address", LoginAttempt.ip == ip), account)


def reserve_login_attempt(session: Session, *, email: str, ip: str, device: str | None,
                          limit_per_minute: int) -> LoginAttempt:
    """Record the attempt as a failure and commit it, *then* count: raise LoginRateLimited when over.

    The reservation is committed before counting and before any password is hashed, so concurrent
    attempts see each other: the k-th committed attempt counts at least k failures, hence at most
    `limit_per_minute` attempts per scope reach argon2, however many arrive at once (no
    check-then-act race, on PostgreSQL as on SQLite). A refused attempt stays counted, so a guesser
    that keeps trying stays refused. On success the caller marks the row `succeeded`.
    """
    attempt = LoginAttempt(email=normalize_email(email), ip=ip, device=device, succeeded=False,
                           attempted_at=utcnow())
    session.add(attempt)
    session.commit()
    for scope, condition in _failure_scopes(email=attempt.email, ip=ip, device=device):
        wait = _retry_after(session, condition, limit_per_minute + 1)
        if wait is not None:
            session.commit()  # end the read transaction (SQLite holds its lock until then)
            raise LoginRateLimited(wait, scope)
    return attempt


def check_login_rate_limit(session: Session, *, email: str, ip: str, limit_per_minute: int,
                           device: str | None = None) -> None:
    """Raise LoginRateLimited when the IP or the account (or device) has used up its attempts."""
    for scope, condition in _failure_scopes(email=normalize_email(email), ip=ip, device=device):
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
    device: str | None = None,
) -> IssuedSession:
    """Reserve the attempt (rate limit), check the password, then open a fresh session.

    `device` is the trusted-device id from `trusted_device(...)` (None for an untrusted client).
    The reservation is committed here (see reserve_login_attempt); the caller commits the
    session afterwards. An unknown or disabled account is checked against a dummy hash, so the
    answer takes as long as for a real account (no e-mail oracle). A successful login revokes
    the session the browser arrived with (session fixation).
    """
    email_norm = normalize_email(email)
    attempt = reserve_login_attempt(session, email=email_norm, ip=ip, device=device,
                                    limit_per_minute=limit_per_minute)
    admin = session.scalar(select(AdminUser).where(AdminUser.email == email_norm))
    if admin is None or not admin.is_active:
        ok = verify_against_dummy(password or "")
    else:
        ok = verify_password(admin.password_hash, password or "")
    if not ok:
        raise InvalidCredentials()
    attempt.succeeded = True
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
    keep_session_token: str | None, ip: str = "unknown", device: str | None = None,
    limit_per_minute: int | None = None,
) -> int:
    """Set a new password (argon2id) and sign out every other session; returns how many.

    The bootstrap admin starts with a password from the environment: this is how it becomes a
    secret only the admin knows. With `limit_per_minute`, the current-password check is throttled
    like sign-in (a stolen session cannot be used to guess the password at argon2 speed): the
    attempt is reserved and committed first, LoginRateLimited when over.
    """
    attempt = None
    if limit_per_minute is not None:
        attempt = reserve_login_attempt(session, email=admin.email, ip=ip, device=device,
                                        limit_per_minute=limit_per_minute)
    if not verify_password(admin.password_hash, current_password):
        if attempt is not None:
            session.commit()  # keep the failure counted
        raise PasswordChangeRefused("The current password is wrong.")
    if attempt is not None:
        attempt.succeeded = True
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
