"""Stake and slashing in the demo: operators bond stake before their nodes lease, and a lying node
gets a slashing case.

- `require_stake`: the demo runs with the bonding gate on (NODERR_STAKE_REQUIRED=true), so nodes
  lease only once their operator's bond is observed on-chain.
- `bond_operator_stakes`: each operator's own wallet (gas from the dev chain's funded account,
  tokens minted by the local token's minter, as a faucet) approves and bonds the minimum stake for
  its node; the stake observer sensor mirrors the bonds into node_stakes.
- `lying_node_journey`: the third node's process is stopped and its key is driven from here: it
  leases replicas of new tasks (3 replicas, quorum 2) and answers a wrong class for each. The two
  honest nodes outvote it; the slashing monitor sensor opens a case with that evidence and e-mails
  the operator; the case is on the admin's node page, where it can be dismissed during its
  challenge window. Then the node process is restarted from its bundle, honest again.
"""

from __future__ import annotations

import os
import time

import httpx
from eth_account import Account
from sqlalchemy import select
from web3 import Web3

from noderr_core.chain.addresses import load_addresses
from noderr_core.chain.client import ChainClient, make_web3
from noderr_core.db import session_scope
from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY
from noderr_core.staking import node_stake_view
from noderr_core.staking.chain import bond_stake
from noderr_core.tables.staking import SlashingCase
from noderr_demo import MODEL_NAME
from noderr_demo.report import DemoFailure, wait_until
from noderr_demo.rewards import _send

LYING_TASKS_PER_ROUND = 2
LIES_WANTED = 4  # above the default threshold (3 proven invalid results), below the block (5 in a row)


def require_stake(demo) -> None:
    """Turn the bonding gate on for every process the demo starts (before they start)."""
    from noderr_core.settings import get_settings

    demo.env["NODERR_STAKE_REQUIRED"] = "true"
    os.environ["NODERR_STAKE_REQUIRED"] = "true"
    get_settings.cache_clear()
    demo.settings = get_settings()


def bond_operator_stakes(report, demo, applicants: list) -> None:
    with report.step("operator", "operators bond the minimum stake from their wallets (Stake.bond)") as s:
        settings = demo.settings
        addresses = load_addresses(settings.resolved_chain_addresses_file)
        w3 = make_web3(settings.chain_rpc_url)
        platform = ChainClient(w3, LOCAL_CHAIN_SIGNER_KEY, addresses, poll_latency=0.05)
        minimum = platform.read(platform.stake().functions.min_stake())
        faucet = Account.from_key(LOCAL_CHAIN_SIGNER_KEY)
        for a in applicants:
            _send(w3, faucet, {"to": a.wallet, "value": Web3.to_wei(1, "ether")})
            platform.transact(platform.token().functions.mint(a.wallet, minimum))
            operator = ChainClient(w3, a.account.key.hex(), addresses, poll_latency=0.05)
            bond_stake(operator, a.node_id, minimum)

        def observed():
            with session_scope() as session:
                views = [node_stake_view(session, a.node_id) for a in applicants]
            return views if all(v.allows_leasing for v in views) else None

        views = wait_until(observed, 180, "the stake observer sensor to see every bond (node_stakes)")
        s.detail = (f"{len(views)} nodes bonded {views[0].amount_tokens} NDR each at block "
                    f"{max(v.observed_block for v in views)}; the lease gate is on (NODERR_STAKE_REQUIRED)")


def lying_node_journey(report, demo, nodes: list, applicants: list) -> None:
    from noderr_core.audit import Actor
    from noderr_core.tasks.clients import create_client
    from noderr_demo.nodes import start_node
    from noderr_demo.operator import wait_for_email

    liar_index = len(nodes) - 1
    liar, honest = applicants[liar_index], nodes[0]
    model = MODEL_NAME
    version = demo.extra["model_version"]
    with report.step("slashing", f"node {liar.node_id} lies: outvoted by a quorum of other operators") as s:
        nodes[liar_index].stop()  # its honest process must not answer the replicas we lie on
        with session_scope() as session:
            _client, client_key = create_client(session, name="demo-slashing-client", actor=Actor.system("demo"))
        node_h = {"Authorization": f"Bearer {liar.env['NODERR_NODE_API_KEY']}"}
        lies: list[str] = []
        with httpx.Client(base_url=demo.api_url, timeout=30) as api:
            deadline = time.monotonic() + 240
            while len(lies) < LIES_WANTED and time.monotonic() < deadline:
                api.post("/v1/nodes/heartbeat", headers=node_h,
                         json={"uptime_seconds": 60, "model_versions": {model: version}})
                rows = [[6.2, 2.9, 4.3, 1.3]] * LYING_TASKS_PER_ROUND
                resp = api.post("/v1/tasks", headers={"Authorization": f"Bearer {client_key}"}, json={
                    "tasks": [{"model": model, "inputs": {"input": [r]}} for r in rows],
                    "policy": {"replicas": 3, "quorum": 2, "adaptive": False}})
                if resp.status_code != 201:
                    raise DemoFailure(f"POST /v1/tasks answered {resp.status_code}: {resp.text[:300]}")
                lease = api.post("/v1/tasks/lease", headers=node_h, json={
                    "models": [{"name": model, "version": version}], "max_tasks": LYING_TASKS_PER_ROUND,
                    "lease_seconds": 60})
                if lease.status_code != 200:
                    raise DemoFailure(f"the lying node's lease answered {lease.status_code}: {lease.text[:300]}")
                results = []
                for task in lease.json()["tasks"]:
                    truth = httpx.post(f"{honest.url}/v1/infer", json={"inputs": task["inputs"]}, timeout=30)
                    results.append({"task_id": task["task_id"], "model_version": version,
                                    "outputs": _wrong(truth.json()["outputs"]), "duration_ms": 1.0})
                if results:
                    acks = api.post("/v1/tasks/results", headers=node_h, json={"results": results}).json()["acks"]
                    lies += [a["task_id"] for a in acks if a["status"] == "accepted"]
        if len(lies) < LIES_WANTED:
            raise DemoFailure(f"the lying node got only {len(lies)} replicas to lie on")
        s.detail = f"{len(lies)} wrong answers reported for tasks {', '.join(t[:10] + '…' for t in lies)}"

    with report.step("slashing", "slashing monitor sensor opens a case with the evidence; operator e-mailed") as s:
        def opened():
            with session_scope() as session:
                return session.scalar(select(SlashingCase).where(SlashingCase.node_id == liar.node_id))

        case = wait_until(opened, 240, "the slashing monitor sensor to open a case for the lying node")
        wait_for_email(demo.state_dir, liar.email, "Slashing case", timeout=180)
        page = demo.admin.get(f"/admin/nodes/{liar.node_id}")
        if f"slashing-case-{case.id}" not in page.text:
            raise DemoFailure("the admin's node page does not show the slashing case")
        agreeing = sorted({n for e in case.evidence for n in e["agreeing_node_ids"]})
        s.detail = (f"case #{case.id}: {case.invalid_count} proven invalid of {case.judged_count} judged, "
                    f"agreeing nodes {', '.join(agreeing)}; {case.fraction_bps / 100:g}% slashed after "
                    f"{case.challenge_ends_at:%Y-%m-%d %H:%M} UTC unless dismissed at "
                    f"{demo.api_url}/admin/nodes/{liar.node_id}#stake")

    with report.step("slashing", "the node restarts from its bundle, honest again") as s:
        restarted = start_node(liar.bundle_dir, liar.node_id, demo.state_dir / "logs")
        nodes[liar_index] = restarted
        wait_until(restarted.ready, 180, f"node {liar.node_id} to load {model} again")
        s.detail = f"{liar.node_id} ready at {restarted.url}"


def _wrong(outputs: dict) -> dict:
    """The same structure with another class: a plausible lie, never an honest mistake."""
    wrong = dict(outputs)
    labels = outputs.get("label")
    if isinstance(labels, list) and labels and isinstance(labels[0], int):
        wrong["label"] = [(v + 1) % 3 for v in labels]
    else:
        wrong["label"] = [-1]
    return wrong
