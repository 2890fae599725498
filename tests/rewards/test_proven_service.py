"""Availability proven by serving: challenge tasks with known answers, computed with onnxruntime on
the model published in SeaweedFS, leased only by their target node, judged against the answer,
and scored by policy 2026-11-v2 (proven slots). On SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select, update

from noderr_core.audit import Actor
from noderr_core.modelstore.checks import inference_session
from noderr_core.modelstore.registry import promote_model_version
from noderr_core.rewards.epochs import compute_epoch
from noderr_core.tables import Heartbeat, Node
from noderr_core.tables.rewards import NodeReward
from noderr_core.tables.tasks import Task, TaskAssignment
from noderr_core.tasks import lease_tasks, submit_results
from noderr_core.tasks.challenges import challenge_outcome, create_challenges, s3_model_loader
from noderr_protocol.work import TaskResultIn
from tests.support.models import publish_bytes, reference_onnx
from tests.support.rewards import day_start
from tests.support.tasks import TEST_SIGNING_KEY

MODEL = "iris-classifier"
POOL = 900


def _serve(inputs: dict) -> dict:
    """What an honest node computes: onnxruntime over the leased inputs, JSON-encoded."""
    session = inference_session(reference_onnx())
    feeds = {i.name: np.asarray(inputs[i.name], dtype=np.float32) for i in session.get_inputs()}
    names = [o.name for o in session.get_outputs()]
    return {n: (v.tolist() if isinstance(v, np.ndarray) else v) for n, v in zip(names, session.run(names, feeds))}


def _wrong(outputs: dict) -> dict:
    bad = dict(outputs)
    label_key = next(k for k in outputs if "label" in k)
    bad[label_key] = [(outputs[label_key][0] + 1) % 3]
    return bad


@pytest.fixture
def published_model(session_factory, s3_server, s3_bucket):
    client = s3_server.client()
    with session_factory() as s:
        outcome = publish_bytes(s, client, s3_bucket, TEST_SIGNING_KEY, name=MODEL)
        promote_model_version(s, model_name=MODEL, version=outcome.model_version.version, to_status="active", actor=Actor.system("test"))
        s.commit()
    return s3_model_loader(client)


def test_challenges_prove_service_heartbeats_do_not_and_wrong_answers_are_penalised(
        db_url, session_factory, node_factory, published_model, past_days):
    day = past_days[0]
    honest, _ = node_factory()
    liar, _ = node_factory()
    idle, _ = node_factory()  # heartbeats only
    rng = random.Random(7)
    for i in range(3):
        now = day_start(day) + timedelta(hours=10, minutes=5 * i, seconds=10)
        with session_factory() as s:
            for node in (honest, liar, idle):
                s.add(Heartbeat(node_id=node.id, received_at=now, uptime_seconds=60.0 * i))
            s.execute(update(Node).values(last_heartbeat_at=now))
            report = create_challenges(s, load_model=published_model, now=now, rng=rng)
            s.commit()
        # The idle node never leases its first challenge, so it is not given another one.
        assert report.created == (3 if i == 0 else 2) and report.models == {MODEL: [1]}
        for node, answer_wrongly in ((honest, False), (liar, i == 1)):
            with session_factory() as s:
                grants = lease_tasks(s, node_id=node.id, operator_id=node.operator_id, model_names=[MODEL],
                                     max_tasks=8, lease_seconds=60, now=now + timedelta(seconds=5)).grants
                s.commit()
            # Only its own challenge; nothing in the grant tells it apart from a client task.
            assert len(grants) == 1 and set(vars(grants[0])) == {
                "task_id", "model_name", "inputs_json", "lease_expires_at", "unreplicated"}
            outputs = _serve(grants[0].inputs)
            with session_factory() as s:
                acks = submit_results(s, node_id=node.id, now=now + timedelta(seconds=20), results=[
                    TaskResultIn(task_id=grants[0].task_id, model_version=1, duration_ms=2.0,
                                 outputs=_wrong(outputs) if answer_wrongly else outputs)])
                s.commit()
            assert acks[0].status == "accepted"

    with session_factory() as s:
        outcomes = {(a.node_id, a.outcome) for a in s.scalars(select(TaskAssignment))}
        assert (liar.id, "invalid") in outcomes and (honest.id, "invalid") not in outcomes
        # The known answer never leaves the control plane: it is not in the inputs.
        for task in s.scalars(select(Task)):
            assert "answers" not in task.inputs and task.target_node_id in (honest.id, liar.id, idle.id)
        compute_epoch(s, day, pool=POOL)
        s.commit()
        rows = {r.node_id: r for r in s.scalars(select(NodeReward))}
    assert (rows[honest.id].proven_slots, rows[honest.id].challenges_valid) == (3, 3)
    assert (rows[liar.id].proven_slots, rows[liar.id].challenges_valid, rows[liar.id].challenges_invalid) == (2, 2, 1)
    assert rows[liar.id].invalid_penalty == 25
    assert rows[honest.id].score == 3 * 10 + 3 * 5
    assert rows[liar.id].score == 2 * 10 + 2 * 5 - 25  # less than its two proven slots alone
    assert rows[idle.id].uptime_slots == 3 and rows[idle.id].proven_slots == 0 and rows[idle.id].amount == 0
    assert rows[honest.id].amount + rows[liar.id].amount == POOL
    assert rows[honest.id].amount == POOL * 45 // 50


def test_an_open_challenge_is_not_doubled_and_an_offline_node_gets_none(
        session_factory, node_factory, published_model, past_days):
    now = day_start(past_days[0]) + timedelta(hours=3)
    online, _ = node_factory()
    offline, _ = node_factory()
    with session_factory() as s:
        s.execute(update(Node).where(Node.id == online.id).values(last_heartbeat_at=now))
        s.execute(update(Node).where(Node.id == offline.id).values(last_heartbeat_at=now - timedelta(hours=1)))
        first = create_challenges(s, load_model=published_model, now=now)
        again = create_challenges(s, load_model=published_model, now=now + timedelta(minutes=5))
        s.commit()
    assert (first.created, first.nodes_online) == (1, 1)
    assert (again.created, again.nodes_with_open_challenge) == (0, 1)
    # The other node's lease never sees it.
    with session_factory() as s:
        grants = lease_tasks(s, node_id=offline.id, operator_id=offline.operator_id, model_names=[MODEL],
                             max_tasks=8, lease_seconds=60, now=now).grants
    assert grants == []


def test_challenge_outcome_uses_the_reported_version_and_the_tolerance():
    expected = {"answers": {"1": {"p": [[0.5, 0.5]]}, "2": {"p": [[0.9, 0.1]]}}}
    assert challenge_outcome(expected, {"p": [[0.50001, 0.5]]}, 1) == "valid"
    assert challenge_outcome(expected, {"p": [[0.9, 0.1]]}, 1) == "invalid"
    assert challenge_outcome(expected, {"p": [[0.9, 0.1]]}, 7) == "valid"  # unknown version: any answer
    assert challenge_outcome(expected, {"p": [[0.51, 0.5]]}, 1) == "invalid"
    assert challenge_outcome(expected, None, 1) == "invalid"


def test_challenge_job_creates_challenges_through_dagster(db_url, session_factory, node_factory, published_model,
                                                          s3_server, s3_bucket, tmp_path, monkeypatch):
    from noderr_core.timeutil import utcnow
    from noderr_pipelines.definitions import defs
    from noderr_pipelines.lib.model_resources import ModelBucketResource
    from noderr_pipelines.resources import DatabaseResource

    monkeypatch.setenv("NODERR_STATE_DIR", str(tmp_path / "state"))
    node, _ = node_factory()
    with session_factory() as s:
        s.execute(update(Node).values(last_heartbeat_at=utcnow()))
        s.commit()
    result = defs.resolve_job_def("challenge_job").execute_in_process(resources={
        "database": DatabaseResource(database_url=db_url),
        "model_bucket": ModelBucketResource(
            endpoint_url=s3_server.endpoint_url, aws_access_key_id=s3_server.access_key_id,
            aws_secret_access_key=s3_server.secret_access_key, bucket=s3_bucket),
    })
    assert result.success and result.output_for_node("create_challenge_tasks")["created"] == 1
    with session_factory() as s:
        task = s.scalar(select(Task))
        assert task.target_node_id == node.id and task.model_name == MODEL
        assert set(task.challenge_expected["answers"]) == {"1"}
