"""The whole system in one command: the four journeys against a freshly started local stack.

ML team → model active in the beacon; three operators apply → screening → an admin approves in the
dashboard → emails → bundles; three nodes start from their bundles and sync the model; a client
submits tasks that nodes lease, infer and validate by quorum; the reward epoch is computed and its
root published on the local chain; an operator claims. Exits 0 only if every step happened.
"""

from __future__ import annotations

import signal
import sys
import time
import traceback

import httpx

from noderr_demo import MODEL_NAME, stake
from noderr_local.process import LocalStack
from noderr_demo.model_catalog import catalog_journey
from noderr_demo.container_node import release_signed_node_image, start_bundled_container
from noderr_demo import operator_portal
from noderr_demo.report import DemoFailure, DemoReport, wait_until
from noderr_demo.stack import DemoEnvironment, prepare_environment, start_platform

APPLICANTS = [
    ("Ada Lovelace", "ada@operators.example", "eu-west"),
    ("Grace Hopper", "grace@operators.example", "us-east"),
    ("Alan Turing", "alan@operators.example", "eu-central"),
]


def _exit_on_sigterm(signum, _frame):
    # SIGTERM (e.g. `timeout`, CI cancelling) unwinds like Ctrl-C, so every service gets stopped.
    raise KeyboardInterrupt(f"signal {signum}")


def run_demo() -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    report = DemoReport()
    demo = prepare_environment()
    stake.require_stake(demo)
    stack = LocalStack(demo.settings, log_dir=demo.state_dir / "logs")
    nodes = []
    ok = False
    try:
        _platform(report, demo, stack)
        _model_journey(report, demo)
        catalog_journey(report, demo)
        release_signed_node_image(report, demo, stack)
        applicants = _operator_journey(report, demo)
        stake.bond_operator_stakes(report, demo, applicants)
        nodes = _node_journey(report, demo, applicants)
        _task_journey(report, demo, nodes)
        operator_portal.sign_in_operators(report, demo, applicants)  # wallet proof before rewards
        stake.lying_node_journey(report, demo, nodes, applicants)
        _reward_journey(report, demo, applicants)
        operator_portal.claim_in_browser(report, demo, applicants)
        _monitoring(report, demo, nodes)
        ok = True
    except DemoFailure as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every service", file=sys.stderr)
    except Exception:
        traceback.print_exc()
        print("\nDEMO FAILED with an unexpected error (above)", file=sys.stderr)
    finally:
        for node in nodes:
            node.stop()
        report.print_summary()
        print(f"\nlogs: {demo.state_dir / 'logs'}")
        stack.stop()
    return 0 if ok else 1


def _platform(report: DemoReport, demo: DemoEnvironment, stack: LocalStack) -> None:
    from noderr_core.chain.deploy import ensure_deployed
    from noderr_core.keys import model_public_key_hex
    from noderr_core.migrations import upgrade_database

    with report.step("platform", "migrate the database, create the model-signing key") as s:
        upgrade_database(demo.settings.resolved_database_url)
        s.detail = f"signing key {model_public_key_hex(demo.settings)[:16]}…"
    with report.step("platform", "start SMTP mailbox, S3, chain, API, Dagster") as s:
        start_platform(stack, demo)
        s.detail = f"{len(stack.running)} services"
    with report.step("platform", "deploy contracts to the local chain") as s:
        outcome = ensure_deployed(demo.settings)
        s.detail = f"registry {outcome.addresses.node_registry}, distributor {outcome.addresses.reward_distributor}"
    report.where_to_look.update(
        {
            "admin dashboard": f"{demo.api_url}/admin  ({demo.settings.bootstrap_admin_email} / "
            f"{demo.settings.bootstrap_admin_password.get_secret_value()})",
            "Dagster UI": demo.dagster_url,
            "mailbox": f"{demo.state_dir / 'mailbox'}  (or `noderr mailbox list`)",
            "API docs": f"{demo.api_url}/docs",
        }
    )


def _model_journey(report: DemoReport, demo: DemoEnvironment) -> None:
    from noderr_core.db import session_scope
    from noderr_core.modelstore import list_model_versions
    from noderr_demo.dagster_ui import DagsterUI

    ui = DagsterUI(demo.dagster_port)
    with report.step("model", "materialize the `models` group from the Dagster webserver") as s:
        run_id = ui.run("publish_iris_classifier_job", timeout=900)
        with session_scope() as session:
            versions = list_model_versions(session, MODEL_NAME)
        if not versions:
            raise DemoFailure("the run succeeded but no model version was published")
        latest = versions[0] if versions[0].version >= versions[-1].version else versions[-1]
        s.detail = f"{MODEL_NAME} v{latest.version} staged, sha256 {latest.sha256[:12]}… (run {ui.run_url(run_id)})"
    version = latest.version
    with report.step("model", "staged rollout: canary 50%, then active") as s:
        ui.run("promote_model_job", _promote_config(version, "canary", 50))
        ui.run("promote_model_job", _promote_config(version, "active", None))
        with session_scope() as session:
            row = next(v for v in list_model_versions(session, MODEL_NAME) if v.version == version)
        if row.status != "active":
            raise DemoFailure(f"{MODEL_NAME} v{version} is {row.status}, expected active")
        s.detail = f"v{version} active in the signed version beacon"
    demo.extra = {"model_version": version}


def _promote_config(version: int, to_status: str, percent: int | None) -> dict:
    config = {"model_name": MODEL_NAME, "version": version, "to_status": to_status}
    if percent is not None:
        config["rollout_percent"] = percent
    return {"ops": {"promote_model_version_op": {"config": config}}}


def _operator_journey(report: DemoReport, demo: DemoEnvironment) -> list:
    from noderr_demo.operator import (
        AdminBrowser,
        Applicant,
        download_bundle,
        submit_application,
        wait_for_email,
        wait_for_status,
    )

    applicants = [Applicant(full_name=n, email=e, region=r) for n, e, r in APPLICANTS]
    secret = demo.settings.typeform_secret.get_secret_value()
    with report.step("operator", "operators apply: signed Typeform webhooks") as s:
        with httpx.Client(base_url=demo.api_url, timeout=30) as api:
            for a in applicants:
                submit_application(api, secret, a)
            # A redelivery of the first one (Typeform retries) must create nothing new.
            submit_application(api, secret, applicants[0])
        s.detail = f"{len(applicants)} applications (+1 redelivery ignored)"
    with report.step("operator", "Dagster screening sensor → pending_review") as s:
        for a in applicants:
            app = wait_for_status(a, {"pending_review"}, timeout=300)
        s.detail = f"e.g. application {app.id}: {len(app.screening_notes)} screening notes"
    admin = AdminBrowser(demo.api_url)
    with report.step("admin", "admin logs in and approves in the dashboard") as s:
        admin.login(demo.settings.bootstrap_admin_email,
                    demo.settings.bootstrap_admin_password.get_secret_value())
        for a in applicants:
            admin.decide(a.application_id, "approve")
        s.detail = f"approved applications {[a.application_id for a in applicants]}"
    with report.step("operator", "decision sensor provisions node + key, queues email") as s:
        for a in applicants:
            app = wait_for_status(a, {"provisioned", "active"}, timeout=300)
        s.detail = f"application {app.id} provisioned"
    with report.step("operator", "approval email arrives in the local mailbox") as s:
        links = {}
        for a in applicants:
            msg = wait_for_email(demo.state_dir, a.email, "approved", timeout=300)
            link = next((u for u in msg.links if "/portal/download/" in u), None)
            if link is None:
                raise DemoFailure(f"approval email to {a.email} has no portal link: {msg.links}")
            links[a.email] = link
        s.detail = f"“{msg.subject}”"
    with report.step("operator", "portal link downloads the config bundle") as s:
        for a in applicants:
            a.bundle_dir = demo.state_dir / "operators" / a.email.split("@")[0]
            a.env = download_bundle(links[a.email], a.bundle_dir)
            a.bundle_dir = next(a.bundle_dir.rglob(".env")).parent  # the zip's per-node folder
            a.node_id = a.env["NODERR_NODE_ID"]
        s.detail = f"bundle of {applicants[0].node_id}: .env, docker-compose.yml, README.md"
    with report.step("operator", "provisioning registers each node on-chain (chain outbox)") as s:
        s.detail = _wait_for_chain_registration(demo, applicants)
    with report.step("admin", "application page shows the provisioning progress") as s:
        page = admin.get(f"/admin/applications/{applicants[0].application_id}")
        if applicants[0].node_id not in page.text:
            raise DemoFailure("the application page does not show the provisioned node")
        s.detail = f"{demo.api_url}/admin/applications/{applicants[0].application_id}"
    demo.admin = admin
    return applicants


def _wait_for_chain_registration(demo: DemoEnvironment, applicants: list) -> str:
    from web3 import Web3

    from noderr_core.chain.addresses import load_addresses
    from noderr_core.chain.contracts import abi_of
    from noderr_core.chain.client import node_id_bytes32

    addresses = load_addresses(demo.settings.resolved_chain_addresses_file)
    w3 = Web3(Web3.HTTPProvider(demo.settings.chain_rpc_url))
    registry = w3.eth.contract(address=addresses.node_registry, abi=abi_of("NodeRegistry"))

    def registered():
        for a in applicants:
            key = node_id_bytes32(a.node_id)
            if not registry.functions.is_active(key).call():
                return None
            if registry.functions.operator_of(key).call() != a.wallet:
                raise DemoFailure(f"{a.node_id} is registered to the wrong operator")
        return True

    wait_until(registered, 300, "the chain outbox sensor to register every node on-chain")
    return (f"{len(applicants)} nodes active in NodeRegistry {addresses.node_registry[:10]}…, "
            f"{registry.functions.active_nodes().call()} active in all")


def _node_journey(report: DemoReport, demo: DemoEnvironment, applicants: list) -> list:
    from noderr_demo.nodes import start_node

    nodes = []
    with report.step("node", "three nodes start from their bundles (one as a podman container, its "
                     "image verified at pull) and sync the model") as s:
        for a in applicants[:-1]:
            nodes.append(start_node(a.bundle_dir, a.node_id, demo.state_dir / "logs"))
        nodes.append(start_bundled_container(applicants[-1].bundle_dir, applicants[-1].node_id, demo))
        version = demo.extra["model_version"]
        for node in nodes:
            wait_until(node.ready, 180, f"node {node.node_id} to load {MODEL_NAME}")
        s.detail = f"{len(nodes)} nodes ready on {MODEL_NAME} v{version}"
    with report.step("node", "a node serves inference (POST /v1/infer)") as s:
        resp = httpx.post(f"{nodes[0].url}/v1/infer",
                          json={"inputs": {"input": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}},
                          timeout=30)
        if resp.status_code != 200:
            raise DemoFailure(f"/v1/infer answered {resp.status_code}: {resp.text[:300]}")
        s.detail = f"outputs {list(resp.json().get('outputs', {}))}"
    return nodes


def _task_journey(report: DemoReport, demo: DemoEnvironment, nodes: list) -> None:
    from noderr_core.audit import Actor
    from noderr_core.db import session_scope
    from noderr_core.tasks.clients import create_client

    with report.step("tasks", "admin creates a client API key") as s:
        with session_scope() as session:
            client, key = create_client(session, name="demo-client", actor=Actor.system("demo"))
        s.detail = f"client {client.id}"
    rows = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3], [5.0, 3.4, 1.5, 0.2]]
    tasks = [{"model": MODEL_NAME, "inputs": {"input": [rows[i % len(rows)]]}} for i in range(120)]
    with httpx.Client(base_url=demo.api_url, timeout=30,
                      headers={"Authorization": f"Bearer {key}"}) as api:
        with report.step("tasks", "client submits 120 tasks (2 replicas, quorum 2)") as s:
            resp = api.post("/v1/tasks", json={"tasks": tasks,
                                               "policy": {"replicas": 2, "quorum": 2, "adaptive": False}})
            if resp.status_code != 201:
                raise DemoFailure(f"POST /v1/tasks answered {resp.status_code}: {resp.text[:300]}")
            ids = resp.json()["task_ids"]
            s.detail = f"{len(ids)} task ids"
        with report.step("tasks", "nodes lease, infer and reach quorum") as s:
            def all_decided():
                got = api.get("/v1/tasks", params={"ids": ",".join(ids)}).json()["tasks"]
                return got if all(t["status"] in ("validated", "failed") for t in got) else None

            done = wait_until(all_decided, 300, "every task to be validated")
            validated = [t for t in done if t["status"] == "validated"]
            if len(validated) != len(ids):
                failed = [t for t in done if t["status"] != "validated"]
                raise DemoFailure(f"{len(failed)} tasks failed: {failed[0]['fail_reason']}")
            agreeing = {n for t in validated for n in (t["agreeing_node_ids"] or [])}
            s.detail = f"{len(validated)}/{len(ids)} validated by {len(agreeing)} distinct nodes"


def _reward_journey(report: DemoReport, demo: DemoEnvironment, applicants: list) -> None:
    from noderr_demo.proven_service import prove_service
    from noderr_demo.rewards import claim_rewards, publish_epoch

    prove_service(report, demo)
    with report.step("rewards", "daily epoch computed, Merkle root published on-chain") as s:
        s.detail = publish_epoch(demo)
    with report.step("rewards", "an operator claims through the local chain") as s:
        s.detail = claim_rewards(demo, applicants[0])


def _monitoring(report: DemoReport, demo: DemoEnvironment, nodes: list) -> None:
    from noderr_demo.screenshots import capture_admin_pages, chromium_available

    with report.step("admin", "network overview shows the live nodes (real browser)") as s:
        metrics = httpx.get(f"{demo.api_url}/metrics", timeout=10)
        if metrics.status_code != 200 or "noderr_nodes" not in metrics.text:
            raise DemoFailure(f"/metrics answered {metrics.status_code} without node gauges")
        if not chromium_available():
            page = demo.admin.get("/admin")
            if page.status_code != 200:
                raise DemoFailure(f"/admin answered {page.status_code}")
            s.detail = "chromium not installed: checked over HTTP only"
            return
        shots = demo.state_dir / "screenshots"
        seen = capture_admin_pages(
            demo.api_url, demo.settings.bootstrap_admin_email,
            demo.settings.bootstrap_admin_password.get_secret_value(), nodes[0].node_id, shots,
        )
        if seen["nodes_online"] != len(nodes) or not seen["node_page_has_id"]:
            raise DemoFailure(f"the overview shows {seen['nodes_online']} nodes online, expected {len(nodes)}")
        s.detail = f"{seen['nodes_online']} nodes online; screenshots in {shots}"


def main() -> None:
    started = time.monotonic()
    code = run_demo()
    print(f"\ntotal {time.monotonic() - started:.0f}s — {'every step happened' if code == 0 else 'FAILED'}")
    sys.exit(code)
