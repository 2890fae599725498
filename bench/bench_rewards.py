"""Rewards benchmark: one epoch over generated telemetry on a throwaway PostgreSQL, and the
Merkle tree with every proof for many operators.

Figures (each against a baseline measured in the same run):
  * compute_epoch over 10M heartbeats + 1M judged task results (10k nodes, 2.5k operators)
    vs. the bare SQL aggregation of the same rows (the GROUP BYs alone, no scoring/split/writes);
  * Merkle tree + all proofs for 100k operators vs. hashing the 100k leaves alone;
  * claim gas on the RewardDistributor (eth-tester, py-evm) with a 100k-leaf root vs. a bare ERC-20
    transfer to a fresh address in the same chain (the part of a claim no design avoids). Anchors
    from the issue: Uniswap's MerkleDistributor ~78-95k gas per claim at 100k leaves; 1inch's
    cumulative drop has our shape (cumulative amount per leaf, one claimed-slot write per claim).
ctx.quick divides every size by 100.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eth_account import Account
from eth_utils import to_checksum_address
from sqlalchemy import text

from bench.common import BenchContext, BenchRow
from noderr_core.db import make_engine, make_session_factory
from noderr_core.migrations import upgrade_database
from noderr_core.rewards.epochs import activity_sql, compute_epoch
from noderr_core.rewards.merkle import build_tree, leaf_hash
from noderr_local.postgres import PostgresCluster

POOL = 1_000 * 10**18


def _load(engine, day_start: datetime, nodes: int, operators: int, heartbeats: int, results: int) -> None:
    per_node = heartbeats // nodes
    start = day_start.replace(tzinfo=None)
    with engine.begin() as c:
        c.execute(text("""
            INSERT INTO operators (email, full_name, wallet_address, created_at, wallet_proven_at)
            SELECT 'op' || g || '@bench.local', 'Bench', '0x' || lpad(to_hex(g), 40, '0'), :t, :t
            FROM generate_series(1, :ops) g"""), {"ops": operators, "t": start - timedelta(days=5)})
        c.execute(text("""
            INSERT INTO nodes (id, operator_id, status, api_key_id, api_key_hash, api_key_version,
                               api_key_rotated_at, created_at)
            SELECT 'node_' || lpad(to_hex(g), 16, '0'), 1 + (g % :ops), 'online', 'k' || g, repeat('0', 64), 1, :t, :t
            FROM generate_series(1, :n) g"""), {"ops": operators, "n": nodes, "t": start - timedelta(days=5)})
        # Each node beats every 86400/per_node seconds with a node-specific phase and a node-specific
        # outage (a twelfth of the nodes miss a few hours).
        c.execute(text("""
            INSERT INTO heartbeats (node_id, received_at, uptime_seconds, model_versions,
                                    inference_count, tasks_done, errors)
            SELECT 'node_' || lpad(to_hex(n), 16, '0'),
                   :start + make_interval(secs => ((i * 86400.0 / :per) + (n % 37))),
                   i * 10.0, '{}', i, i, 0
            FROM generate_series(1, :n) n, generate_series(0, :per - 1) i
            WHERE NOT (n % 12 = 0 AND i BETWEEN :per / 4 AND :per / 3)"""),
                  {"start": start, "per": per_node, "n": nodes})
        c.execute(text("INSERT INTO clients (name, created_at) VALUES ('bench', :t)"), {"t": start})
        c.execute(text("""
            INSERT INTO tasks (id, client_id, model_name, inputs, priority, replicas, quorum, tolerance,
                               max_replicas, adaptive, replicas_needed, status, created_at, decided_at)
            SELECT 't_' || lpad(to_hex(g), 24, '0'), (SELECT id FROM clients LIMIT 1), 'iris', '{}', 0, 1, 1,
                   1e-5, 1, false, 1, 'validated', :start, :start + make_interval(secs => g % 86400)
            FROM generate_series(1, :r) g"""), {"start": start, "r": results})
        c.execute(text("""
            INSERT INTO task_assignments (task_id, node_id, operator_id, status, unreplicated, leased_at,
                                          lease_expires_at, submitted_at, outcome, judged_at)
            SELECT 't_' || lpad(to_hex(g), 24, '0'), 'node_' || lpad(to_hex(1 + g % :n), 16, '0'),
                   1 + ((1 + g % :n) % :ops), 'submitted', false, :start, :start, :start,
                   CASE WHEN g % 50 = 0 THEN 'invalid' WHEN g % 97 = 0 THEN 'error' ELSE 'valid' END,
                   :start + make_interval(secs => g % 86400)
            FROM generate_series(1, :r) g"""), {"start": start, "r": results, "n": nodes, "ops": operators})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE"))


def _bare_aggregation(engine, start: datetime, end: datetime) -> int:
    """The same rows grouped by node in plain SQL: no scoring, no split, no writes."""
    sql = activity_sql("postgresql")
    with engine.connect() as c:
        rows = c.execute(text(sql), {"start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)}).all()
    return len(rows)


def _epoch_benchmark(ctx: BenchContext) -> list[BenchRow]:
    scale = 100 if ctx.quick else 1
    nodes, operators = 10_000 // scale, 2_500 // scale
    heartbeats, results = 10_000_000 // scale, 1_000_000 // scale
    root = Path(tempfile.mkdtemp(prefix="noderr-bench-pg-", dir="/tmp"))
    root.chmod(0o755)
    cluster = PostgresCluster(root)
    cluster.start()
    try:
        cluster.admin_execute("CREATE DATABASE bench")
        url = cluster.url("bench")
        upgrade_database(url)
        engine = make_engine(url)
        day = (datetime.now(UTC) - timedelta(days=2)).date()
        start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        t0 = time.perf_counter()
        _load(engine, start, nodes, operators, heartbeats, results)
        load_s = time.perf_counter() - t0
        with engine.connect() as c:
            hb = c.execute(text("SELECT count(*) FROM heartbeats")).scalar()

        factory = make_session_factory(engine)
        # Warm both paths once (buffer cache), then take the best of 3 for each.
        _bare_aggregation(engine, start, start + timedelta(days=1))
        bare, full = [], []
        for _ in range(3):
            t0 = time.perf_counter()
            _bare_aggregation(engine, start, start + timedelta(days=1))
            bare.append(time.perf_counter() - t0)
            with factory() as s:
                t0 = time.perf_counter()
                summary = compute_epoch(s, day, pool=POOL)
                s.commit()
                full.append(time.perf_counter() - t0)
        assert summary.distributed_amount == POOL
        engine.dispose()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    return [BenchRow(
        area="rewards",
        figure=f"epoch: {hb / 1e6:.2f}M heartbeats + {results / 1e6:.2f}M results, {nodes} nodes (s)",
        value=min(full), unit="s",
        baseline_figure="bare SQL GROUP BY of the same rows (s)", baseline_value=min(bare),
        higher_is_better=False,
        notes=f"load {load_s:.0f}s; epoch = aggregation + scoring + exact split + delete/insert "
              f"{summary.node_count} node rows and {summary.operator_count} wallet rows",
    )]


def _random_wallets(n: int) -> list[str]:
    # Random 20-byte addresses: deriving n key pairs (Account.create) costs ~5 ms each and is not
    # what these benchmarks measure.
    return [to_checksum_address(os.urandom(20)) for _ in range(n)]


def _merkle_benchmark(ctx: BenchContext) -> list[BenchRow]:
    n = 1_000 if ctx.quick else 100_000
    values = [(w, 10**18 + i) for i, w in enumerate(_random_wallets(n))]
    t0 = time.perf_counter()
    for addr, amount in values:
        leaf_hash(addr, amount)
    leaves_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tree = build_tree(values)
    proofs = [tree.proof_hex(i) for i in range(n)]
    tree_s = time.perf_counter() - t0
    assert len(proofs) == n
    return [BenchRow(
        area="rewards", figure=f"Merkle tree + {n} proofs (s)", value=tree_s, unit="s",
        baseline_figure=f"keccak of {n} leaves alone (s)", baseline_value=leaves_s,
        higher_is_better=False, notes=f"proof depth {len(proofs[0])}",
    )]


def _claim_gas_benchmark(ctx: BenchContext) -> list[BenchRow]:
    import statistics

    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider, Web3

    from noderr_core.chain.client import ChainClient
    from noderr_core.chain.deploy import deploy_contracts
    from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY

    n = 1_000 if ctx.quick else 100_000
    w3 = Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))
    signer = Account.from_key(LOCAL_CHAIN_SIGNER_KEY).address
    w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": signer, "value": 10**21})
    client = ChainClient(w3, LOCAL_CHAIN_SIGNER_KEY, receipt_timeout=30, poll_latency=0.0)
    values = [(w, 10**18 + i) for i, w in enumerate(_random_wallets(n))]
    total = sum(v for _, v in values)
    client.addresses = deploy_contracts(client, funding=2 * total)
    dist, token = client.distributor(), client.token()
    tree = build_tree(values)
    client.transact(dist.functions.publish_root(20260101, tree.root, total))
    sample = values[:: max(1, n // 25)][:25]

    def claim_gas(tree_) -> list[int]:
        gas = []
        for wallet, _ in sample:
            amount, proof = tree_.proof_for(wallet)
            receipt = client.transact(dist.functions.claim(
                wallet, amount, [bytes.fromhex(p[2:]) for p in proof]))
            gas.append(receipt.gas_used)
        return gas

    first = claim_gas(tree)
    # Next epoch: every leaf grows; a repeated claim pays only the difference (warm claimed slot).
    grown = [(w, v * 2) for w, v in values]
    tree2 = build_tree(grown)
    client.transact(dist.functions.publish_root(20260102, tree2.root, 2 * total))
    again = claim_gas(tree2)
    # Baseline: a bare token transfer to a fresh address (what any claim must at least do).
    holder = ChainClient(w3, LOCAL_CHAIN_SIGNER_KEY, client.addresses, receipt_timeout=30, poll_latency=0.0)
    client.transact(token.functions.mint(signer, 10**20))
    transfers = [holder.transact(token.functions.transfer(Account.create().address, 10**18)).gas_used
                 for _ in range(10)]
    depth = len(tree.proof_hex(0))
    return [
        BenchRow(area="rewards", figure=f"claim gas, first claim, {n} leaves (gas)",
                 value=statistics.median(first), unit="gas",
                 baseline_figure="ERC-20 transfer to a fresh address (gas)",
                 baseline_value=statistics.median(transfers), higher_is_better=False,
                 notes=f"proof depth {depth}; max {max(first)}; anchor Uniswap MerkleDistributor ~78-95k"),
        BenchRow(area="rewards", figure=f"claim gas, cumulative top-up claim, {n} leaves (gas)",
                 value=statistics.median(again), unit="gas",
                 baseline_figure="ERC-20 transfer to a fresh address (gas)",
                 baseline_value=statistics.median(transfers), higher_is_better=False,
                 notes="second epoch's root, same wallets (1inch cumulative-drop pattern)"),
    ]


def run(ctx: BenchContext) -> list[BenchRow]:
    return _merkle_benchmark(ctx) + _claim_gas_benchmark(ctx) + _epoch_benchmark(ctx)
