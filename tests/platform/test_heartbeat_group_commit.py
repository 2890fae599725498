"""Heartbeats are written by a group commit per API process (api/batching.py, api/heartbeat_writer.py):
concurrent heartbeats are all recorded and committed before they are answered, a node coming back
online is audited once however many of its heartbeats share a batch, one bad heartbeat fails alone,
a full buffer sheds with 503 + Retry-After, and shutdown drains what was accepted.
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from api.batching import BatcherFull, GroupCall
from api.heartbeat_writer import heartbeat_writer
from api.main import create_app
from noderr_core.settings import Settings
from noderr_core.tables import AuditLogEntry, Heartbeat, Node, NodeStatus
from noderr_core.telemetry import record_heartbeats
from noderr_protocol.work import HeartbeatIn
from tests.support.factories import make_node


@pytest.fixture
def app(db_url, tmp_path):
    # Generous admission waits: the burst below must be answered, not shed, on a loaded machine.
    return create_app(Settings(env="test", database_url=db_url, state_dir=tmp_path / "state",
                               api_queue_wait_seconds=120, api_max_queued=1000))


def _nodes(session_factory, n: int, status: str = NodeStatus.ONLINE) -> list[tuple[str, str]]:
    with session_factory() as s:
        made = [make_node(s, status=status) for _ in range(n)]
        s.commit()
        return [(node.id, key) for node, key in made]


async def _post_heartbeats(app, keys: list[str]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=120) as http:
        return await asyncio.gather(*(
            http.post("/v1/nodes/heartbeat", json={"uptime_seconds": i, "tasks_done": i},
                      headers={"Authorization": f"Bearer {key}"})
            for i, key in enumerate(keys)))


def test_200_concurrent_heartbeats_are_all_committed_before_they_are_answered(app, session_factory):
    nodes = _nodes(session_factory, 200)

    async def scenario():
        async with app.router.lifespan_context(app):
            answers = await _post_heartbeats(app, [key for _, key in nodes])
            return answers, app.state.heartbeat_writer.batches

    answers, batches = asyncio.run(scenario())
    assert [a.status_code for a in answers] == [200] * 200, {a.status_code: a.text for a in answers}
    assert {a.json()["node_status"] for a in answers} == {"online"}
    assert batches < 200  # written together, not one transaction each
    with session_factory() as s:
        rows = dict(s.execute(select(Heartbeat.node_id, func.count()).group_by(Heartbeat.node_id)).all())
        assert rows == {node_id: 1 for node_id, _ in nodes}
        heard = dict(s.execute(select(Node.id, Node.last_heartbeat_at)).all())
        assert all(heard[node_id] is not None for node_id, _ in nodes)


def test_a_node_coming_back_is_audited_once_when_two_of_its_heartbeats_share_a_batch(session_factory):
    [(back, _)] = _nodes(session_factory, 1, status=NodeStatus.OFFLINE)
    [(steady, _)] = _nodes(session_factory, 1)
    with session_factory() as s:
        receipts = record_heartbeats(s, [(back, HeartbeatIn(uptime_seconds=1)), (steady, HeartbeatIn(uptime_seconds=1)),
                                         (back, HeartbeatIn(uptime_seconds=2))])
        s.commit()
    assert [r.node_status for r in receipts] == ["online", "online", "online"]
    with session_factory() as s:
        assert s.scalar(select(Node.status).where(Node.id == back)) == NodeStatus.ONLINE
        audits = s.scalars(select(AuditLogEntry).where(AuditLogEntry.action == "node.online")).all()
        assert [(a.subject_id, a.details["previous_status"]) for a in audits] == [(back, "offline")]
        assert s.scalar(select(func.count()).select_from(Heartbeat).where(Heartbeat.node_id == back)) == 2


def test_a_heartbeat_that_cannot_be_written_fails_alone(session_factory):
    [(node_id, _)] = _nodes(session_factory, 1)
    writer = heartbeat_writer(session_factory, max_pending=10)
    outcomes = writer._run_batch([("node_gone", HeartbeatIn(uptime_seconds=1)),
                                  (node_id, HeartbeatIn(uptime_seconds=1))])
    assert isinstance(outcomes[0], Exception)
    assert outcomes[1].node_status == "online"
    with session_factory() as s:
        assert s.scalars(select(Heartbeat.node_id)).all() == [node_id]


def _blocked_batcher(max_pending: int) -> tuple[GroupCall, threading.Event, list[list[str]]]:
    release, ran = threading.Event(), []

    def run(jobs: list[str]) -> list[str]:
        release.wait(60)
        ran.append(jobs)
        return [f"done {job}" for job in jobs]

    return GroupCall(run, max_pending=max_pending, max_batch=100, what="jobs"), release, ran


async def _until(condition) -> None:
    for _ in range(6000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_a_full_buffer_sheds_with_503_and_retry_after(app, session_factory):
    [(_, key)] = _nodes(session_factory, 1)

    async def scenario():
        async with app.router.lifespan_context(app):
            blocked, release, _ = _blocked_batcher(max_pending=1)
            app.state.heartbeat_writer = blocked
            running = asyncio.create_task(blocked.submit("a"))  # being written (blocked)
            await _until(lambda: blocked.running == 1)
            waiting = asyncio.create_task(blocked.submit("b"))  # fills the buffer
            await _until(lambda: blocked.pending == 1)
            [shed] = await _post_heartbeats(app, [key])
            release.set()
            return shed, await running, await waiting

    shed, first, second = asyncio.run(scenario())
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "2"
    assert "retry after 2s" in shed.json()["detail"]
    assert (first, second) == ("done a", "done b")  # the accepted ones were still written


def test_batches_form_while_one_runs_and_shutdown_drains_what_was_accepted():
    async def scenario():
        batcher, release, ran = _blocked_batcher(max_pending=10)
        first = asyncio.create_task(batcher.submit("a"))
        await _until(lambda: batcher.running == 1)
        later = [asyncio.create_task(batcher.submit(job)) for job in ("b", "c", "d")]
        await _until(lambda: batcher.pending == 3)
        draining = asyncio.create_task(batcher.drain())
        await asyncio.sleep(0)
        with pytest.raises(BatcherFull):
            await batcher.submit("too late")
        release.set()
        await draining
        return [await t for t in (first, *later)], ran

    results, ran = asyncio.run(scenario())
    assert results == ["done a", "done b", "done c", "done d"]
    assert ran == [["a"], ["b", "c", "d"]]


def test_an_unreachable_database_fails_the_batch_once_not_once_per_heartbeat():
    attempts = []

    def factory():
        attempts.append(1)
        raise OperationalError("connect", {}, ConnectionRefusedError("database is down"))

    writer = heartbeat_writer(factory, max_pending=10)
    outcomes = writer._run_batch([(f"node_{i}", HeartbeatIn(uptime_seconds=1)) for i in range(5)])
    assert len(outcomes) == 5 and all(isinstance(o, OperationalError) for o in outcomes)
    assert len(attempts) == 1
