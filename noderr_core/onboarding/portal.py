"""The operator's download link: look at it (never consumes) and consume it once.

The token in the emailed URL is a capability: only its sha256 is stored. Looking at the page is
safe for mail scanners that open links; only `consume_download_token` (a POST) uses the token, with
a conditional UPDATE so that exactly one of any number of concurrent consumers wins.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from noderr_core.audit import Actor, audit
from noderr_core.tables import (
    BundleDownload,
    DownloadToken,
    Node,
    Operator,
    OperatorApplication,
)
from noderr_core.onboarding.bundle import Bundle, build_bundle
from noderr_core.security import sha256_hex, unseal
from noderr_core.settings import Settings
from noderr_core.timeutil import utcnow


class LinkState(StrEnum):
    VALID = "valid"
    USED = "used"
    EXPIRED = "expired"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DownloadLinkView:
    state: LinkState
    node_id: str | None = None
    node_status: str | None = None
    operator_email: str | None = None
    operator_name: str | None = None
    application_status: str | None = None
    expires_at: datetime | None = None
    used_at: datetime | None = None
    revoked_at: datetime | None = None


class LinkUnavailable(Exception):
    def __init__(self, view: DownloadLinkView):
        super().__init__(view.state)
        self.view = view


def _state(row: DownloadToken, now: datetime) -> LinkState:
    if row.used_at is not None:
        return LinkState.USED
    if row.revoked_at is not None:
        return LinkState.REVOKED
    if row.expires_at <= now:
        return LinkState.EXPIRED
    return LinkState.VALID


def inspect_download_link(session: Session, token: str) -> DownloadLinkView:
    row = session.scalar(select(DownloadToken).where(DownloadToken.token_hash == sha256_hex(token)))
    if row is None:
        return DownloadLinkView(LinkState.UNKNOWN)
    node = session.get(Node, row.node_id)
    operator = session.get(Operator, node.operator_id) if node else None
    application = session.get(OperatorApplication, node.application_id) if node and node.application_id else None
    return DownloadLinkView(
        state=_state(row, utcnow()),
        node_id=row.node_id,
        node_status=node.status if node else None,
        operator_email=operator.email if operator else None,
        operator_name=operator.full_name if operator else None,
        application_status=application.status if application else None,
        expires_at=row.expires_at,
        used_at=row.used_at,
        revoked_at=row.revoked_at,
    )


def form_nonce(settings: Settings, token: str) -> str:
    """A value only our GET page can put in the form (HMAC of the token under NODERR_SECRET_KEY)."""
    key = hashlib.sha256(b"noderr-portal-form:" + settings.secret_key.get_secret_value().encode()).digest()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def form_nonce_valid(settings: Settings, token: str, nonce: str | None) -> bool:
    return bool(nonce) and hmac.compare_digest(form_nonce(settings, token), nonce)


def consume_download_token(session: Session, token: str, settings: Settings, *, ip: str | None,
                           user_agent: str | None) -> Bundle:
    """Use the link once: returns the bundle, or raises LinkUnavailable with the link's state.

    The conditional UPDATE (used_at IS NULL AND revoked_at IS NULL AND not expired) is the
    single-use guarantee: under concurrent POSTs only one UPDATE matches a row (PostgreSQL
    re-checks the condition after the winner commits; SQLite serializes writers).
    """
    now = utcnow()
    token_hash = sha256_hex(token)
    row = session.scalar(select(DownloadToken).where(DownloadToken.token_hash == token_hash))
    if row is None or _state(row, now) != LinkState.VALID or not row.sealed_api_key:
        raise LinkUnavailable(inspect_download_link(session, token))
    sealed = row.sealed_api_key
    claimed = session.execute(
        update(DownloadToken)
        .where(DownloadToken.id == row.id, DownloadToken.used_at.is_(None),
               DownloadToken.revoked_at.is_(None), DownloadToken.expires_at > now)
        .values(used_at=now, sealed_api_key=None)  # the key leaves the database with this download
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        session.rollback()
        raise LinkUnavailable(inspect_download_link(session, token))
    api_key = unseal(sealed, settings.secret_key.get_secret_value())
    node = session.get(Node, row.node_id)
    bundle = build_bundle(settings, node_id=row.node_id, api_key=api_key,
                          tier=node.tier if node is not None else None)
    session.add(BundleDownload(node_id=row.node_id, token_id=row.id, downloaded_at=now,
                               ip=(ip or "")[:64] or None, user_agent=(user_agent or "")[:400] or None))
    audit(session, Actor("operator", None, "portal"), "node.bundle_downloaded", "node", row.node_id,
          token_id=row.id, ip=ip)
    session.flush()
    return bundle
