"""Proven-service journey of the demo: the control plane sends every online node a challenge task
with a known answer (Dagster `challenge_job`, as its 5-minute schedule does), the nodes answer
like any leased task, and each node's proven-service figures are shown from the public epoch
document after the epoch closes (rewards.publish_epoch)."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from noderr_core.db import session_scope
from noderr_core.tables.tasks import Task, TaskAssignment
from noderr_core.timeutil import utcnow
from noderr_demo.dagster_ui import DagsterUI
from noderr_demo.report import DemoFailure, wait_until


def prove_service(report, demo) -> None:
    with report.step("rewards", "challenge tasks with known answers; every node answers") as s:
        since = utcnow()
        ui = DagsterUI(demo.dagster_port)
        run_id = ui.run("challenge_job")

        def judged():
            with session_scope() as session:
                rows = session.execute(
                    select(Task.target_node_id, TaskAssignment.outcome)
                    .join(TaskAssignment, TaskAssignment.task_id == Task.id, isouter=True)
                    .where(Task.challenge_expected.is_not(None), Task.created_at >= since)
                ).all()
            if not rows:
                raise DemoFailure("challenge_job created no challenge (no node online?)")
            return rows if all(o in ("valid", "invalid", "error") for _, o in rows) else None

        rows = wait_until(judged, 180, "every node to answer its challenge task")
        wrong = [n for n, o in rows if o != "valid"]
        if wrong:
            raise DemoFailure(f"challenge answered wrongly by {wrong}")
        s.detail = f"{len(rows)} challenges answered correctly (run {ui.run_url(run_id)})"


def proven_service_figures(demo, epoch_date: str) -> str:
    """Per-node inputs and share from the public epoch document, as an operator would read them."""
    doc = httpx.get(f"{demo.api_url}/v1/rewards/epochs/{epoch_date}", timeout=30).json()
    lines = [
        f"{n['node_id']}: {n['proven_slots']} proven slots ({n['challenges_valid']} challenges ok, "
        f"{n['challenges_invalid']} wrong), {n['tasks_valid']}/{n['tasks_invalid']}/{n['tasks_error']} "
        f"valid/invalid/error, score {n['score']}, {int(n['amount']) / 10**18:.2f} NDR"
        for n in doc["nodes"]
    ]
    return f"policy {doc['policy_version']}: " + "; ".join(lines)
