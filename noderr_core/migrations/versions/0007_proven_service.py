"""proven service and final epochs: challenge tasks, sealed epochs, scoring policy version

Revision ID: 0007
Revises: 0006

- tasks.challenge_expected: the known answer of a challenge task (NULL for client tasks); never
  sent to nodes. tasks.target_node_id: the only node that may lease the task (challenges).
- reward_epochs.policy_version: the scoring policy that produced the shares;
  reward_epochs.sealed_at: when a root covering the epoch was queued for the chain (final after).
- node_rewards: the proven-service inputs and the error penalty of the v2 policy.
"""

from alembic import op
import sqlalchemy as sa

import noderr_core.tables.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("challenge_expected", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("target_node_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_tasks_target_node_id_nodes"), "nodes", ["target_node_id"], ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index(
            "ix_tasks_target_node_open", ["target_node_id"], unique=False,
            sqlite_where=sa.text("target_node_id IS NOT NULL AND leasable_at IS NOT NULL"),
            postgresql_where=sa.text("target_node_id IS NOT NULL AND leasable_at IS NOT NULL"),
        )
    with op.batch_alter_table("reward_epochs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policy_version", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("sealed_at", noderr_core.tables.base.UTCDateTime(), nullable=True))
    with op.batch_alter_table("node_rewards", schema=None) as batch_op:
        for name in ("proven_slots", "challenges_valid", "challenges_invalid"):
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("error_penalty", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("node_rewards", schema=None) as batch_op:
        for name in ("error_penalty", "challenges_invalid", "challenges_valid", "proven_slots"):
            batch_op.drop_column(name)
    with op.batch_alter_table("reward_epochs", schema=None) as batch_op:
        batch_op.drop_column("sealed_at")
        batch_op.drop_column("policy_version")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_target_node_open")
        batch_op.drop_constraint(batch_op.f("fk_tasks_target_node_id_nodes"), type_="foreignkey")
        batch_op.drop_column("target_node_id")
        batch_op.drop_column("challenge_expected")
