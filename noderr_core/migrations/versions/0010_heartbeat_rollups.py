"""heartbeat rollups per 5-minute slot (raw heartbeats are then pruned after a retention window)

Why no time partitioning of `heartbeats` on PostgreSQL (yet): with the raw window at 48 h the
retention job deletes one 5-minute slot's rows per run along `ix_heartbeats_received_at`
(≈100k rows per run at 10,000 nodes and a 30 s heartbeat), which autovacuum keeps up with; the
table stays at ≈30 M rows. Declarative partitioning (daily partitions, `DROP` instead of
`DELETE`) becomes worth its operational cost (partition creation ahead of time, a composite key
including `received_at`, no cross-dialect migration) around 100,000 nodes; docs/DEPLOYMENT.md
has the numbers and the plan.

Revision ID: 0010
Revises: 0009
"""

from alembic import op
import sqlalchemy as sa

import noderr_core.tables.base

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heartbeat_slots",
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("slot_start", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("beats", sa.Integer(), nullable=False),
        sa.Column("first_at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("last_at", noderr_core.tables.base.UTCDateTime(), nullable=False),
        sa.Column("uptime_seconds", sa.Float(), nullable=False),
        sa.Column("inference_count", sa.BigInteger(), nullable=False),
        sa.Column("tasks_done", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("latency_p50_ms", sa.Float(), nullable=True),
        sa.Column("latency_p95_ms", sa.Float(), nullable=True),
        sa.Column("cpu_percent", sa.Float(), nullable=True),
        sa.Column("memory_mb", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_heartbeat_slots_node_id_nodes")),
        sa.PrimaryKeyConstraint("node_id", "slot_start", name=op.f("pk_heartbeat_slots")),
    )
    with op.batch_alter_table("heartbeat_slots", schema=None) as batch_op:
        batch_op.create_index("ix_heartbeat_slots_slot_start", ["slot_start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("heartbeat_slots", schema=None) as batch_op:
        batch_op.drop_index("ix_heartbeat_slots_slot_start")
    op.drop_table("heartbeat_slots")
