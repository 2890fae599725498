"""security: login attempts per trusted device, indexed per-account throttle and per-wallet reads

- login_attempts.device: the trusted-device id (OWASP device cookies) an attempt came with, so a
  browser that signed in before keeps its own allowance while strangers are throttled;
- ix_login_attempts_email_at / ix_login_attempts_device_at: the throttle's per-account and
  per-device counts are index range scans;
- ix_node_rewards_wallet_epoch: an operator's public earnings page reads only its own rows.

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_login_attempts_email_at", ["email", "attempted_at"], unique=False)
        batch_op.create_index("ix_login_attempts_device_at", ["device", "attempted_at"], unique=False)
    with op.batch_alter_table("node_rewards", schema=None) as batch_op:
        batch_op.create_index("ix_node_rewards_wallet_epoch", ["operator_wallet", "epoch_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("node_rewards", schema=None) as batch_op:
        batch_op.drop_index("ix_node_rewards_wallet_epoch")
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_login_attempts_device_at")
        batch_op.drop_index("ix_login_attempts_email_at")
        batch_op.drop_column("device")
