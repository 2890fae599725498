"""Start-up tasks: the first admin user from NODERR_BOOTSTRAP_ADMIN_* when there is none."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from noderr_core.audit import record_audit
from noderr_core.tables import AdminUser
from noderr_core.security import hash_password
from noderr_core.settings import Settings


def ensure_bootstrap_admin(session: Session, settings: Settings) -> AdminUser | None:
    if session.scalar(select(func.count()).select_from(AdminUser)):
        return None
    admin = AdminUser(
        email=settings.bootstrap_admin_email.strip().lower(),
        password_hash=hash_password(settings.bootstrap_admin_password.get_secret_value()),
    )
    try:
        # Several API workers start at once on a fresh database: the first insert wins and the
        # others see the unique constraint, which is not an error for them.
        with session.begin_nested():
            session.add(admin)
            session.flush()
    except IntegrityError:
        return None
    record_audit(
        session,
        actor_type="system",
        actor_id=None,
        action="admin.bootstrap",
        subject_type="admin_user",
        subject_id=admin.id,
        details={"email": admin.email},
    )
    return admin
