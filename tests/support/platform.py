"""Fixtures of the platform area: nodes with a chosen heartbeat age, an alert admin; one tick of
the node health sensor and one run of its job, in process."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg
import pytest

from noderr_core.tables import AdminUser, NodeStatus
from noderr_core.security import hash_password
from noderr_core.timeutil import utcnow
from noderr_pipelines.defs.network.jobs import node_health_job
from noderr_pipelines.defs.network.resources import NodeHealthPolicy
from noderr_pipelines.defs.network.sensors import node_health_sensor
from noderr_pipelines.resources import DatabaseResource
from tests.support.factories import make_node

HEALTH_THRESHOLD = 60  # seconds of silence before a node is offline, in the health tests


@pytest.fixture
def alert_admin(session_factory) -> str:
    """An active admin user (alert emails go to every active admin by default); returns the email."""
    email = "ops-admin@noderr.example"
    with session_factory() as s:
        s.add(AdminUser(email=email, password_hash=hash_password("ops-admin-password")))
        s.commit()
    return email


@pytest.fixture
def node_with_heartbeat_age(session_factory):
    """`node_id, operator_email = node_with_heartbeat_age(seconds, status=...)`: committed node whose
    last heartbeat was `seconds` ago (None = never reported)."""

    def create(seconds: float | None, status: str = NodeStatus.ONLINE,
               email: str | None = None) -> tuple[str, str]:
        with session_factory() as s:
            node, _key = make_node(s, status=status, email=email)
            if seconds is not None:
                node.last_heartbeat_at = utcnow() - timedelta(seconds=seconds)
            else:
                node.created_at = utcnow() - timedelta(hours=1)
            operator_email = node_operator_email(s, node)
            s.commit()
            return node.id, operator_email

    return create


def node_operator_email(session, node) -> str:
    from noderr_core.tables import Operator

    return session.get(Operator, node.operator_id).email


def sensor_tick(db_url: str, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={
            "database": DatabaseResource(database_url=db_url),
            "node_health": NodeHealthPolicy(offline_after_seconds=HEALTH_THRESHOLD),
        },
    )
    return node_health_sensor(context)


def run_job(db_url: str, run_request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    return node_health_job.execute_in_process(
        run_config=run_request.run_config,
        resources={
            "database": DatabaseResource(database_url=db_url),
            "node_health": NodeHealthPolicy(offline_after_seconds=HEALTH_THRESHOLD),
        },
    )
