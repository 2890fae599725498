"""task network: clients, tasks, results, reliability

Revision ID: 0003
Revises: 0002
"""

from alembic import op  # noqa: F401
import sqlalchemy as sa  # noqa: F401

import noderr_core.tables.base  # noqa: F401

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _dt():
    return noderr_core.tables.base.UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", _dt(), nullable=False),
        sa.Column("created_by", sa.String(length=320), nullable=True),
        sa.Column("disabled_at", _dt(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
        sa.UniqueConstraint("name", name=op.f("uq_clients_name")),
    )
    op.create_table(
        "client_api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", _dt(), nullable=False),
        sa.Column("revoked_at", _dt(), nullable=True),
        sa.Column("last_used_at", _dt(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_client_api_keys_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_api_keys")),
        sa.UniqueConstraint("key_id", name=op.f("uq_client_api_keys_key_id")),
    )
    op.create_index("ix_client_api_keys_client_id", "client_api_keys", ["client_id"])

    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("deadline_at", _dt(), nullable=True),
        sa.Column("replicas", sa.Integer(), nullable=False),
        sa.Column("quorum", sa.Integer(), nullable=False),
        sa.Column("tolerance", sa.Float(), nullable=False),
        sa.Column("max_replicas", sa.Integer(), nullable=False),
        sa.Column("adaptive", sa.Boolean(), nullable=False),
        sa.Column("replicas_needed", sa.Integer(), nullable=False),
        sa.Column("leasable_at", _dt(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("agreeing_node_ids", sa.JSON(), nullable=True),
        sa.Column("validated_by", sa.String(length=16), nullable=True),
        sa.Column("fail_reason", sa.Text(), nullable=True),
        sa.Column("created_at", _dt(), nullable=False),
        sa.Column("decided_at", _dt(), nullable=True),
        sa.CheckConstraint("quorum >= 1 AND quorum <= replicas", name=op.f("ck_tasks_quorum_range")),
        sa.CheckConstraint(
            "replicas >= 1 AND max_replicas >= replicas", name=op.f("ck_tasks_replicas_range")
        ),
        sa.ForeignKeyConstraint(["client_id"], ["clients.id"], name=op.f("fk_tasks_client_id_clients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    op.create_index(
        "ix_tasks_leasable",
        "tasks",
        ["model_name", sa.text("priority DESC"), "created_at", "leasable_at"],
        postgresql_where=sa.text("leasable_at IS NOT NULL"),
        sqlite_where=sa.text("leasable_at IS NOT NULL"),
    )
    op.create_index(
        "ix_tasks_open_deadline",
        "tasks",
        ["deadline_at"],
        postgresql_where=sa.text("leasable_at IS NOT NULL AND deadline_at IS NOT NULL"),
        sqlite_where=sa.text("leasable_at IS NOT NULL AND deadline_at IS NOT NULL"),
    )
    op.create_index("ix_tasks_client_created", "tasks", ["client_id", "created_at"])
    op.create_index("ix_tasks_status_decided", "tasks", ["status", "decided_at"])

    op.create_table(
        "task_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.String(length=40), nullable=False),
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("operator_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("unreplicated", sa.Boolean(), nullable=False),
        sa.Column("leased_at", _dt(), nullable=False),
        sa.Column("lease_expires_at", _dt(), nullable=False),
        sa.Column("submitted_at", _dt(), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("judged_at", _dt(), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_assignments_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["node_id"], ["nodes.id"], name=op.f("fk_task_assignments_node_id_nodes")),
        sa.ForeignKeyConstraint(
            ["operator_id"], ["operators.id"], name=op.f("fk_task_assignments_operator_id_operators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_assignments")),
        # A node never holds two replicas of one task.
        sa.UniqueConstraint("task_id", "node_id", name="uq_task_assignments_task_node"),
    )
    op.create_index("ix_task_assignments_node_status", "task_assignments", ["node_id", "status"])
    op.create_index("ix_task_assignments_judged", "task_assignments", ["outcome", "judged_at"])

    op.create_table(
        "node_reliability",
        sa.Column("node_id", sa.String(length=40), nullable=False),
        sa.Column("consecutive_valid", sa.Integer(), nullable=False),
        sa.Column("consecutive_invalid", sa.Integer(), nullable=False),
        sa.Column("consecutive_errors", sa.Integer(), nullable=False),
        sa.Column("results_count", sa.Integer(), nullable=False),
        sa.Column("valid_count", sa.Integer(), nullable=False),
        sa.Column("invalid_count", sa.Integer(), nullable=False),
        sa.Column("error_count", sa.Integer(), nullable=False),
        sa.Column("unreplicated_count", sa.Integer(), nullable=False),
        sa.Column("turnaround_ms_avg", sa.Float(), nullable=True),
        sa.Column("daily_quota", sa.Integer(), nullable=False),
        sa.Column("quota_day", sa.String(length=10), nullable=True),
        sa.Column("quota_used", sa.Integer(), nullable=False),
        sa.Column("last_valid_at", _dt(), nullable=True),
        sa.Column("last_invalid_at", _dt(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("blocked_reason", sa.Text(), nullable=True),
        sa.Column("blocked_at", _dt(), nullable=True),
        sa.Column("updated_at", _dt(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_node_reliability_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("node_id", name=op.f("pk_node_reliability")),
    )


def downgrade() -> None:
    op.drop_table("node_reliability")
    op.drop_index("ix_task_assignments_judged", table_name="task_assignments")
    op.drop_index("ix_task_assignments_node_status", table_name="task_assignments")
    op.drop_table("task_assignments")
    op.drop_index("ix_tasks_status_decided", table_name="tasks")
    op.drop_index("ix_tasks_client_created", table_name="tasks")
    op.drop_index("ix_tasks_open_deadline", table_name="tasks")
    op.drop_index("ix_tasks_leasable", table_name="tasks")
    op.drop_table("tasks")
    op.drop_index("ix_client_api_keys_client_id", table_name="client_api_keys")
    op.drop_table("client_api_keys")
    op.drop_table("clients")
