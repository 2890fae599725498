"""reward epochs, rewards, chain

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa

import noderr_core.tables.base
import noderr_core.tables.rewards

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _dt():
    return noderr_core.tables.base.UTCDateTime()


def _amount():
    return noderr_core.tables.rewards.TokenAmount()


def upgrade() -> None:
    op.create_table(
        "reward_epochs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch_date", sa.Date(), nullable=False),
        sa.Column("starts_at", _dt(), nullable=False),
        sa.Column("ends_at", _dt(), nullable=False),
        sa.Column("pool_amount", _amount(), nullable=False),
        sa.Column("distributed_amount", _amount(), nullable=False),
        sa.Column("node_count", sa.Integer(), nullable=False),
        sa.Column("operator_count", sa.Integer(), nullable=False),
        sa.Column("total_score", sa.BigInteger(), nullable=False),
        sa.Column("scoring", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("computed_at", _dt(), nullable=False),
        sa.Column("merkle_root", sa.String(length=66), nullable=True),
        sa.Column("total_cumulative", _amount(), nullable=True),
        sa.Column("leaf_count", sa.Integer(), nullable=True),
        sa.Column("tree_built_at", _dt(), nullable=True),
        sa.Column("publish_outbox_id", sa.Integer(), nullable=True),
        sa.Column("published_tx_hash", sa.String(length=66), nullable=True),
        sa.Column("published_at", _dt(), nullable=True),
        sa.Column("publish_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["publish_outbox_id"], ["outbox.id"],
            name=op.f("fk_reward_epochs_publish_outbox_id_outbox"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_epochs")),
        sa.UniqueConstraint("epoch_date", name=op.f("uq_reward_epochs_epoch_date")),
    )
    op.create_table(
        "node_rewards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("operator_wallet", sa.String(length=42), nullable=False),
        sa.Column("heartbeat_count", sa.BigInteger(), nullable=False),
        sa.Column("uptime_slots", sa.Integer(), nullable=False),
        sa.Column("eligible_slots", sa.Integer(), nullable=False),
        sa.Column("tasks_valid", sa.BigInteger(), nullable=False),
        sa.Column("tasks_invalid", sa.BigInteger(), nullable=False),
        sa.Column("tasks_error", sa.BigInteger(), nullable=False),
        sa.Column("uptime_points", sa.BigInteger(), nullable=False),
        sa.Column("task_points", sa.BigInteger(), nullable=False),
        sa.Column("invalid_penalty", sa.BigInteger(), nullable=False),
        sa.Column("downtime_penalty", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.BigInteger(), nullable=False),
        sa.Column("amount", _amount(), nullable=False),
        sa.ForeignKeyConstraint(
            ["epoch_id"], ["reward_epochs.id"],
            name=op.f("fk_node_rewards_epoch_id_reward_epochs"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_node_rewards_node_id_nodes")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_node_rewards")),
        sa.UniqueConstraint("epoch_id", "node_id", name="uq_node_rewards_epoch_node"),
    )
    op.create_index("ix_node_rewards_node_epoch", "node_rewards", ["node_id", "epoch_id"])
    op.create_table(
        "operator_rewards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch_id", sa.Integer(), nullable=False),
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("node_count", sa.Integer(), nullable=False),
        sa.Column("amount", _amount(), nullable=False),
        sa.ForeignKeyConstraint(
            ["epoch_id"], ["reward_epochs.id"],
            name=op.f("fk_operator_rewards_epoch_id_reward_epochs"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_rewards")),
        sa.UniqueConstraint("epoch_id", "wallet", name="uq_operator_rewards_epoch_wallet"),
    )
    op.create_index("ix_operator_rewards_wallet_epoch", "operator_rewards", ["wallet", "epoch_id"])
    op.create_table(
        "reward_leaves",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("epoch_id", sa.Integer(), nullable=False),
        sa.Column("wallet", sa.String(length=42), nullable=False),
        sa.Column("cumulative_amount", _amount(), nullable=False),
        sa.ForeignKeyConstraint(
            ["epoch_id"], ["reward_epochs.id"],
            name=op.f("fk_reward_leaves_epoch_id_reward_epochs"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_leaves")),
        sa.UniqueConstraint("epoch_id", "wallet", name="uq_reward_leaves_epoch_wallet"),
    )
    op.create_index("ix_reward_leaves_wallet_epoch", "reward_leaves", ["wallet", "epoch_id"])
    op.create_table(
        "chain_transactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=80), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("revert_reason", sa.Text(), nullable=True),
        sa.Column("created_at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["outbox.id"],
            name=op.f("fk_chain_transactions_outbox_id_outbox"), ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_transactions")),
    )
    op.create_index("ix_chain_transactions_outbox", "chain_transactions", ["outbox_id"])
    op.create_index(
        op.f("ix_chain_transactions_created_at"), "chain_transactions", ["created_at"]
    )


def downgrade() -> None:
    op.drop_table("chain_transactions")
    op.drop_table("reward_leaves")
    op.drop_table("operator_rewards")
    op.drop_table("node_rewards")
    op.drop_table("reward_epochs")
