"""stake and slashing: node_stakes (bond cache), stake_sync_cursors, slashing_cases

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa

import noderr_core.tables.base
import noderr_core.tables.rewards

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _dt():
    return noderr_core.tables.base.UTCDateTime()


def _amount():
    return noderr_core.tables.rewards.TokenAmount()


def _block():
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "node_stakes",
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("operator_wallet", sa.String(length=42), nullable=True),
        sa.Column("amount", _amount(), nullable=False),
        sa.Column("min_stake", _amount(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("withdrawable_at", _dt(), nullable=True),
        sa.Column("observed_block", _block(), nullable=False),
        sa.Column("updated_at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_node_stakes_node_id_nodes"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_node_stakes")),
    )
    op.create_table(
        "stake_sync_cursors",
        sa.Column("contract", sa.String(length=42), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("last_block", _block(), nullable=False),
        sa.Column("updated_at", _dt(), nullable=False),
        sa.PrimaryKeyConstraint("contract", name=op.f("pk_stake_sync_cursors")),
    )
    op.create_table(
        "slashing_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("evidence_key", sa.String(length=64), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("invalid_count", sa.Integer(), nullable=False),
        sa.Column("judged_count", sa.Integer(), nullable=False),
        sa.Column("window_start", _dt(), nullable=False),
        sa.Column("window_end", _dt(), nullable=False),
        sa.Column("fraction_bps", sa.Integer(), nullable=False),
        sa.Column("opened_at", _dt(), nullable=False),
        sa.Column("challenge_ends_at", _dt(), nullable=False),
        sa.Column("decided_at", _dt(), nullable=True),
        sa.Column("decided_by", sa.String(length=320), nullable=True),
        sa.Column("dismiss_reason", sa.Text(), nullable=True),
        sa.Column("chain_case_id", sa.String(length=66), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("slashed_amount", _amount(), nullable=True),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_slashing_cases_node_id_nodes")),
        sa.ForeignKeyConstraint(["operator_id"], ["operators.id"],
                                name=op.f("fk_slashing_cases_operator_id_operators")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slashing_cases")),
        sa.UniqueConstraint("evidence_key", name=op.f("uq_slashing_cases_evidence_key")),
    )
    with op.batch_alter_table("slashing_cases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slashing_cases_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_slashing_cases_operator_id"), ["operator_id"], unique=False)
        batch_op.create_index("ix_slashing_cases_status_challenge", ["status", "challenge_ends_at"],
                              unique=False)
        batch_op.create_index(
            "uq_slashing_cases_active_node",
            ["node_id"],
            unique=True,
            sqlite_where=sa.text("status IN ('open', 'slashing')"),
            postgresql_where=sa.text("status IN ('open', 'slashing')"),
        )


def downgrade() -> None:
    with op.batch_alter_table("slashing_cases", schema=None) as batch_op:
        batch_op.drop_index("uq_slashing_cases_active_node")
        batch_op.drop_index("ix_slashing_cases_status_challenge")
        batch_op.drop_index(batch_op.f("ix_slashing_cases_operator_id"))
        batch_op.drop_index(batch_op.f("ix_slashing_cases_node_id"))
    op.drop_table("slashing_cases")
    op.drop_table("stake_sync_cursors")
    op.drop_table("node_stakes")
