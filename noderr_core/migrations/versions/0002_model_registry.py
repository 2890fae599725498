"""model registry and version beacon

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa

import noderr_core.tables.base

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("bucket", sa.String(length=63), nullable=False),
        sa.Column("object_key", sa.String(length=512), nullable=False),
        sa.Column("manifest_key", sa.String(length=512), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rollout_percent", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=512), nullable=False),
        sa.Column("parent_version", sa.Integer(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("published_at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("status_changed_at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("activated_at", noderr_core.tables.base.UTCDateTime(), nullable=True),
        sa.Column("retired_at", noderr_core.tables.base.UTCDateTime(), nullable=True),
        sa.Column("published_by", sa.String(length=320), nullable=True),
        sa.CheckConstraint(
            "rollout_percent >= 0 AND rollout_percent <= 100",
            name=op.f("ck_model_versions_rollout_percent_range"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_versions")),
        sa.UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
        sa.UniqueConstraint("name", "sha256", name="uq_model_versions_name_sha256"),
    )
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.create_index("ix_model_versions_name_status", ["name", "status"], unique=False)

    op.create_table(
        "beacon_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_beacon_state")),
    )
    # The single row every publish/promotion locks and bumps.
    op.execute("INSERT INTO beacon_state (id, sequence, updated_at) VALUES (1, 0, CURRENT_TIMESTAMP)")

    op.create_table(
        "model_rollout_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("model_name", sa.String(length=63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("rollout_percent", sa.Integer(), nullable=False),
        sa.Column("actor_type", sa.String(length=16), nullable=False),
        sa.Column("actor_label", sa.String(length=320), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_rollout_events")),
        sa.UniqueConstraint("sequence", name=op.f("uq_model_rollout_events_sequence")),
    )
    with op.batch_alter_table("model_rollout_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_rollout_events_at"), ["at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_model_rollout_events_model_name"), ["model_name"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("model_rollout_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_rollout_events_model_name"))
        batch_op.drop_index(batch_op.f("ix_model_rollout_events_at"))
    op.drop_table("model_rollout_events")
    op.drop_table("beacon_state")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_model_versions_name_status")
    op.drop_table("model_versions")
