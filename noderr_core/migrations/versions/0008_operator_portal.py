"""operator portal: proven payout wallets, SIWE nonces, operator sessions

Revision ID: 0008
Revises: 0007
"""

from alembic import op
import sqlalchemy as sa

import noderr_core.tables.base

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("wallet_proven_at", noderr_core.tables.base.UTCDateTime(), nullable=True)
        )
    op.create_table(
        "operator_siwe_nonces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=42), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("new_wallet", sa.String(length=42), nullable=True),
        sa.Column("issued_at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("expires_at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("used_at", noderr_core.tables.base.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_siwe_nonces")),
        sa.UniqueConstraint("nonce", name=op.f("uq_operator_siwe_nonces_nonce")),
    )
    with op.batch_alter_table("operator_siwe_nonces", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operator_siwe_nonces_expires_at"), ["expires_at"], unique=False)
    op.create_table(
        "operator_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("expires_at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", noderr_core.tables.base.UTCDateTime(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=400), nullable=True),
        sa.ForeignKeyConstraint(["operator_id"], ["operators.id"], ondelete="CASCADE",
                                name=op.f("fk_operator_sessions_operator_id_operators")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_operator_sessions_token_hash")),
    )
    with op.batch_alter_table("operator_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_operator_sessions_operator_id"), ["operator_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("operator_sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_sessions_operator_id"))
    op.drop_table("operator_sessions")
    with op.batch_alter_table("operator_siwe_nonces", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_siwe_nonces_expires_at"))
    op.drop_table("operator_siwe_nonces")
    with op.batch_alter_table("operators", schema=None) as batch_op:
        batch_op.drop_column("wallet_proven_at")
