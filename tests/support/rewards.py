"""Rewards test data: operators with nodes, heartbeats and judged task results in the real schema."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, time, timedelta

import pytest
from eth_account import Account
from sqlalchemy import insert, select

from noderr_core.tables import Heartbeat, Node, Operator
from noderr_core.tables.tasks import Client, Task, TaskAssignment
from noderr_core.security import NODE_KEY_PREFIX, issue_api_key


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def make_operator(session, wallet: str | None = None) -> Operator:
    # Proven: rewards accrue only to wallets their operator signed in with (EIP-4361).
    op = Operator(email=f"op-{secrets.token_hex(4)}@example.com", full_name="Reward Operator",
                  wallet_address=wallet or Account.create().address,
                  wallet_proven_at=datetime.now(UTC))
    session.add(op)
    session.flush()
    return op


def make_reward_node(session, operator: Operator, created_at: datetime, node_id: str | None = None) -> Node:
    key = issue_api_key(NODE_KEY_PREFIX)
    node = Node(id=node_id or f"node_{secrets.token_hex(8)}", operator_id=operator.id, status="online",
                api_key_id=key.key_id, api_key_hash=key.key_hash, created_at=created_at)
    session.add(node)
    session.flush()
    return node


def add_heartbeats(session, node_id: str, start: datetime, end: datetime, every: timedelta) -> int:
    rows, t = [], start
    while t < end:
        rows.append({"node_id": node_id, "received_at": t, "uptime_seconds": 0.0, "model_versions": {},
                     "inference_count": 0, "tasks_done": 0, "errors": 0})
        t += every
    if rows:
        session.execute(insert(Heartbeat), rows)
    return len(rows)


def _client(session) -> Client:
    client = session.scalar(select(Client).where(Client.name == "rewards-test"))
    if client is None:
        client = Client(name="rewards-test")
        session.add(client)
        session.flush()
    return client


def add_judged_results(session, node: Node, judged_at: datetime, *, valid: int = 0, invalid: int = 0,
                       error: int = 0, pending: int = 0) -> None:
    """Task assignments of `node` judged at `judged_at` with the given outcomes (one task each)."""
    client = _client(session)
    outcomes = ["valid"] * valid + ["invalid"] * invalid + ["error"] * error + ["pending"] * pending
    tasks, assignments = [], []
    for outcome in outcomes:
        tid = f"t_{secrets.token_hex(12)}"
        tasks.append({"id": tid, "client_id": client.id, "model_name": "iris", "inputs": {"input": [[1, 2, 3, 4]]},
                      "priority": 0, "replicas": 1, "quorum": 1, "tolerance": 1e-5, "max_replicas": 1,
                      "adaptive": False, "replicas_needed": 1, "status": "validated",
                      "created_at": judged_at - timedelta(seconds=5), "decided_at": judged_at})
        assignments.append({"task_id": tid, "node_id": node.id, "operator_id": node.operator_id,
                            "status": "submitted", "unreplicated": False,
                            "leased_at": judged_at - timedelta(seconds=5),
                            "lease_expires_at": judged_at + timedelta(seconds=60),
                            "submitted_at": judged_at, "outcome": outcome,
                            "judged_at": None if outcome == "pending" else judged_at})
    if tasks:
        session.execute(insert(Task), tasks)
        session.execute(insert(TaskAssignment), assignments)


@pytest.fixture
def past_days():
    """The three UTC days before yesterday's end: epochs are only computed for finished days."""
    today = datetime.now(UTC).date()
    return [today - timedelta(days=3), today - timedelta(days=2), today - timedelta(days=1)]


def seed_reward_history(session, *, epochs: int, wallets: int, first_day: date = date(2025, 1, 1)) -> list[str]:
    """`epochs` computed days × `wallets` paid wallets, the last epoch's tree built and published.

    Bulk rows (no scoring run): for read-path cost tests and the claims benchmark.
    """
    from sqlalchemy import insert

    from noderr_core.rewards.tree import build_epoch_tree
    from noderr_core.tables.rewards import EpochStatus, OperatorReward, RewardEpoch

    addresses = sorted(Account.from_key(bytes([1 + i // 250, i % 250 + 1]) + b"\x01" * 30).address
                       for i in range(wallets))
    epoch_rows = []
    for n in range(epochs):
        day = first_day + timedelta(days=n)
        epoch_rows.append({"epoch_date": day, "starts_at": day_start(day), "ends_at": day_start(day + timedelta(days=1)),
                           "pool_amount": 10**21, "distributed_amount": wallets * 10**18,
                           "status": EpochStatus.ROOT_READY, "computed_at": day_start(day + timedelta(days=1)),
                           "scoring": {}})
    session.execute(insert(RewardEpoch), epoch_rows)
    ids = dict(session.execute(select(RewardEpoch.epoch_date, RewardEpoch.id)).all())
    rows = [{"epoch_id": ids[r["epoch_date"]], "wallet": w, "node_count": 1, "amount": 10**18 + i}
            for r in epoch_rows for i, w in enumerate(addresses)]
    for start in range(0, len(rows), 20_000):
        session.execute(insert(OperatorReward), rows[start:start + 20_000])
    last = epoch_rows[-1]["epoch_date"]
    build_epoch_tree(session, last)
    epoch = session.scalar(select(RewardEpoch).where(RewardEpoch.epoch_date == last))
    epoch.status = EpochStatus.PUBLISHED
    epoch.published_tx_hash = "0x" + "ab" * 32
    session.flush()
    return addresses


def add_served_slots(session, node: Node, start: datetime, slots: int, *, outcome: str = "valid",
                     every: timedelta = timedelta(minutes=5)) -> None:
    """One judged result per 5-minute slot from `start` (a node serving tasks or challenges)."""
    for i in range(slots):
        add_judged_results(session, node, start + i * every + timedelta(seconds=30), **{outcome: 1})
