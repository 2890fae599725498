"""The operator's journey in a real browser (Debian chromium via Playwright) against uvicorn and a
Ganache dev chain, with a test EIP-1193 wallet that signs with a dev-chain key:

sign in with the wallet (EIP-4361, personal_sign) → the wallet is proven → see the node online →
rotate its key (a new bundle link is e-mailed) → the epoch is computed and its root published →
Claim sends claim(account, cumulative, proof) from the wallet → the page shows the claimed amount
read from the chain, and the tokens are in the wallet.
"""

from __future__ import annotations

import re

from datetime import timedelta
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import select

from noderr_core.chain.addresses import save_addresses
from noderr_core.chain.client import ChainClient, make_web3
from noderr_core.chain.deploy import deploy_contracts
from noderr_core.chain.relay import ChainHandler
from noderr_core.outbox import relay_due
from noderr_core.db import make_engine, make_session_factory
from noderr_core.rewards.epochs import compute_epoch
from noderr_core.rewards.publication import queue_root_publication
from noderr_core.rewards.tree import build_epoch_tree
from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY, Settings
from noderr_core.tables import Node, Operator, OutboxMessage
from noderr_core.tables.rewards import RewardEpoch
from noderr_core.telemetry import record_heartbeat
from noderr_demo.dev_wallet import install_dev_wallet
from noderr_protocol.work import HeartbeatIn
from tests.support.chain import OPERATOR_KEYS
from tests.support.factories import make_node
from tests.support.rewards import add_served_slots, day_start

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
POOL = 1_000 * 10**18
KEY = OPERATOR_KEYS[1]
WALLET = Account.from_key(KEY).address


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"operator-{name}.png"), full_page=True)


def test_operator_signs_in_with_their_wallet_rotates_a_key_and_claims(
        sqlite_url, tmp_path, ganache, api_server_factory, past_days):
    from playwright.sync_api import sync_playwright

    chain = ChainClient(make_web3(ganache.url), LOCAL_CHAIN_SIGNER_KEY, poll_latency=0.05)
    chain.addresses = deploy_contracts(chain)  # fresh contracts: roots only move forward
    addresses_file = tmp_path / "chain.json"
    save_addresses(addresses_file, chain.addresses)
    settings = Settings(env="test", database_url=sqlite_url, state_dir=tmp_path / "state",
                        chain_rpc_url=ganache.url, chain_addresses_file=addresses_file, chain_id=1337)
    engine = make_engine(sqlite_url)
    factory = make_session_factory(engine)
    day = past_days[-1]
    with factory() as s:
        operator = Operator(email="ada@example.com", full_name="Ada Lovelace", wallet_address=WALLET)
        s.add(operator)
        s.flush()
        node, _key = make_node(s, operator=operator, status="provisioned")
        node.created_at = day_start(day) - timedelta(days=2)
        add_served_slots(s, node, day_start(day), 48)  # proven service (scoring policy 2026-11-v2)
        record_heartbeat(s, node, HeartbeatIn(uptime_seconds=60, model_versions={"iris-classifier": 2}))
        s.commit()
        node_id = node.id
    server = api_server_factory(sqlite_url, env={
        "NODERR_CHAIN_RPC_URL": ganache.url, "NODERR_CHAIN_ADDRESSES_FILE": str(addresses_file),
        "NODERR_CHAIN_ID": "1337",
    })

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(30_000)
            wallet = install_dev_wallet(page, KEY, ganache.url)

            # Not signed in: the operator pages send the browser to the wallet sign-in.
            page.goto(f"{server.url}/operator")
            assert page.url.endswith("/operator/sign-in")
            shot(page, "01-sign-in")
            page.click("[data-testid=sign-in]")
            page.wait_for_url(f"{server.url}/operator")
            assert wallet.calls[:2] == ["eth_requestAccounts", "personal_sign"]
            assert page.inner_text("[data-testid=signed-in-wallet]") == WALLET
            assert "is proven" in page.inner_text("[role=status]")
            assert "proven by signature" in page.inner_text("[data-testid=wallet-proof]")
            row = page.locator(f"tr[data-node-id='{node_id}']")
            assert "online" in row.inner_text() and "iris-classifier v2" in row.inner_text()
            # Nothing earned yet: no epoch has been computed.
            page.wait_for_selector("#claim[data-loaded]")
            assert page.inner_text("[data-testid=claimed]") == "0 NDR"
            assert page.locator("[data-testid=claim]").is_disabled()
            shot(page, "02-overview-before-rewards")

            # Rotate the node's key from its page: a new single-use bundle link is e-mailed.
            page.click(f"a:has-text('{node_id}')")
            page.wait_for_url(f"**/operator/nodes/{node_id}")
            page.click("[data-testid=rotate-key]")
            page.wait_for_url(f"**/operator/nodes/{node_id}")
            assert "has a new API key" in page.inner_text("[role=status]")
            shot(page, "03-node-key-rotated")
            with factory() as s:
                assert s.get(Node, node_id).api_key_version == 2
                mail = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email")).one()
                assert mail.payload["template"] == "download_link" and mail.payload["to"] == "ada@example.com"

            # The day's epoch is computed (the wallet is proven now) and its root published.
            with factory() as s:
                summary = compute_epoch(s, day, pool=POOL)
                build_epoch_tree(s, day)
                queue_root_publication(s, day)
                s.commit()
            assert summary.distributed_amount == POOL
            assert relay_due(make_session_factory(engine), ChainHandler(settings, client=chain)).outcomes["mined"] == 1
            with factory() as s:
                assert s.scalar(select(RewardEpoch)).published_tx_hash

            page.click("text=Nodes & rewards")
            page.wait_for_url(f"{server.url}/operator")
            page.wait_for_selector("#claim[data-loaded]")
            assert not page.locator("[data-testid=claim]").is_disabled()
            assert page.inner_text("[data-testid=claimable]") == "1,000 NDR"
            assert page.inner_text("[data-testid=claimed]") == "0 NDR"
            shot(page, "04-claimable")
            page.click("[data-testid=claim]")
            # A locator wait, not wait_for_function: the page's CSP forbids eval (script-src 'self').
            page.locator("#claim-status", has_text=re.compile(r"^Claimed in")).wait_for()
            assert page.inner_text("[data-testid=claimed]") == "1,000 NDR"
            assert page.inner_text("[data-testid=claimable]") == "0 NDR"
            assert page.locator("[data-testid=claim]").is_disabled()
            shot(page, "05-claimed")
            assert len(wallet.sent) == 1 and "eth_sendTransaction" in wallet.calls
            # From the chain itself: the distributor paid the operator's wallet.
            assert chain.token().functions.balanceOf(WALLET).call() == POOL
            assert chain.distributor().functions.claimed(WALLET).call() == POOL

            # Signing out ends the session.
            page.click("text=Sign out")
            page.wait_for_url("**/operator/sign-in")
            page.goto(f"{server.url}/operator")
            assert page.url.endswith("/operator/sign-in")
        finally:
            browser.close()
    engine.dispose()
