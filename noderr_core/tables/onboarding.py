"""Operator onboarding and administration: applications, admins, operators, nodes, tokens."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from noderr_core.tables.base import Base
from noderr_core.timeutil import utcnow


class ApplicationStatus(enum.StrEnum):
    """received → screened → pending_review → approved/rejected → provisioned → active."""

    RECEIVED = "received"
    SCREENED = "screened"
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    PROVISIONED = "provisioned"
    ACTIVE = "active"


class NodeStatus(enum.StrEnum):
    PROVISIONED = "provisioned"  # credentials issued, never heard from
    ONLINE = "online"
    OFFLINE = "offline"  # missed heartbeats past the threshold
    SUSPENDED = "suspended"  # an admin stopped it; it gets no work and no rewards
    REMOVED = "removed"


class OperatorApplication(Base):
    __tablename__ = "operator_applications"

    id: Mapped[int] = mapped_column(primary_key=True)
    form_response_token: Mapped[str] = mapped_column(String(128), unique=True)
    form_id: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[str | None] = mapped_column(String(128))
    submitted_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The webhook body exactly as received (bytes decoded as UTF-8), kept for audit and re-parsing.
    raw_payload: Mapped[str] = mapped_column(Text)
    # Mapped answers by our field names, plus everything we did not map: nothing is dropped.
    answers: Mapped[dict] = mapped_column(JSON, default=dict)
    unmapped_answers: Mapped[dict] = mapped_column(JSON, default=dict)
    hidden_fields: Mapped[dict] = mapped_column(JSON, default=dict)

    full_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    wallet_address: Mapped[str | None] = mapped_column(String(64), index=True)
    node_tier: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))

    status: Mapped[str] = mapped_column(String(32), default=ApplicationStatus.RECEIVED, index=True)
    # Bumped on every status change: sensors key their run_key on (id, status_version).
    status_version: Mapped[int] = mapped_column(Integer, default=1)
    screening_notes: Mapped[list] = mapped_column(JSON, default=list)
    screened_at: Mapped[datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("admin_users.id"))
    decided_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]  # when the pipeline carried out the decision
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDeadLetter(Base):
    """Signed but unusable deliveries, kept byte for byte so nothing is lost."""

    __tablename__ = "webhook_dead_letters"

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    raw_body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text)


class AdminUser(Base):
    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class AdminSession(Base):
    """Server-side session; the cookie carries a random token, only its sha256 is stored."""

    __tablename__ = "admin_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    admin_user_id: Mapped[int] = mapped_column(ForeignKey("admin_users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))


class LoginAttempt(Base):
    __tablename__ = "login_attempts"
    __table_args__ = (
        Index("ix_login_attempts_ip_at", "ip", "attempted_at"),
        Index("ix_login_attempts_email_at", "email", "attempted_at"),
        Index("ix_login_attempts_device_at", "device", "attempted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    ip: Mapped[str] = mapped_column(String(64))
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)
    # The trusted-device id the attempt came with (None: an untrusted client).
    device: Mapped[str | None] = mapped_column(String(64))


class AuditLogEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_subject", "subject_type", "subject_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_type: Mapped[str] = mapped_column(String(16))  # admin | system | pipeline
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_label: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict] = mapped_column(JSON, default=dict)


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(200))
    wallet_address: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the operator first signed in with the payout wallet (EIP-4361): until then nothing
    # proves the address typed into the application is theirs, and rewards do not accrue to it.
    wallet_proven_at: Mapped[datetime | None]


class Node(Base):
    __tablename__ = "nodes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # "node_" + 16 hex
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    application_id: Mapped[int | None] = mapped_column(ForeignKey("operator_applications.id"))
    status: Mapped[str] = mapped_column(String(16), default=NodeStatus.PROVISIONED, index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    tier: Mapped[str | None] = mapped_column(String(64))
    region: Mapped[str | None] = mapped_column(String(64))
    # Node API key "nk_<key_id>_<secret>": key_id is a public lookup handle, only sha256 is stored.
    api_key_id: Mapped[str] = mapped_column(String(32), unique=True)
    api_key_hash: Mapped[str] = mapped_column(String(64))
    api_key_version: Mapped[int] = mapped_column(Integer, default=1)
    api_key_rotated_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(index=True)
    chain_registered_at: Mapped[datetime | None]


class DownloadToken(Base):
    """Single-use, expiring link to the node's config bundle (only the sha256 is stored)."""

    __tablename__ = "download_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # The node API key to put in the bundle, encrypted with NODERR_SECRET_KEY until the single
    # download consumes it (then wiped): the key is shown once, in the bundle, and never stored
    # in the clear.
    sealed_api_key: Mapped[str | None] = mapped_column(Text)


class BundleDownload(Base):
    __tablename__ = "bundle_downloads"

    id: Mapped[int] = mapped_column(primary_key=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("download_tokens.id"))
    downloaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
