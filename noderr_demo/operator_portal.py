"""Operator portal journey of the demo: operators sign in with their payout wallet, then one claims
in the browser.

Before the reward epoch: every operator opens the operator pages linked from the approval e-mail
and signs in with their wallet (EIP-4361), which proves it — rewards accrue only to proven wallets.
One does it in chromium with a wallet holding their key (noderr_demo.dev_wallet), and sees their
node online; the others sign the same message over HTTP. After the epoch's root is on-chain, that
operator presses Claim: the wallet sends claim(account, cumulative, proof) to the distributor and
the page shows the claimed amount read from the chain. Screenshots go to <state>/screenshots.
"""

from __future__ import annotations

import re

from dataclasses import dataclass

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import select

from noderr_core.db import session_scope
from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY
from noderr_core.tables import Operator
from noderr_demo.report import DemoFailure
from noderr_demo.screenshots import CHROMIUM, CHROMIUM_ARGS, chromium_available


def _key_of(applicant) -> str:
    return "0x" + applicant.account.key.hex().removeprefix("0x")


def _sign_in_over_http(api_url: str, applicant) -> None:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        challenge = http.post("/operator/sign-in/challenge", json={"address": applicant.wallet})
        if challenge.status_code != 200:
            raise DemoFailure(f"sign-in challenge for {applicant.wallet}: {challenge.text[:300]}")
        message = challenge.json()["message"]
        signature = Account.from_key(_key_of(applicant)).sign_message(encode_defunct(text=message)).signature
        done = http.post("/operator/sign-in", json={"message": message,
                                                    "signature": "0x" + signature.hex().removeprefix("0x")})
        if done.status_code != 200:
            raise DemoFailure(f"sign-in of {applicant.wallet} refused: {done.text[:300]}")


def _operator_pages_link(demo, applicant) -> str:
    from noderr_demo.operator import wait_for_email

    msg = wait_for_email(demo.state_dir, applicant.email, "approved", timeout=60)
    link = next((u for u in msg.links if u.rstrip("/").endswith("/operator")), None)
    if link is None:
        raise DemoFailure(f"the approval e-mail to {applicant.email} does not link the operator pages: {msg.links}")
    return link


@dataclass
class BrowserOperator:
    """One operator's browser session against the API, with their wallet installed."""

    demo: object
    applicant: object

    def run(self, steps) -> dict:
        from playwright.sync_api import sync_playwright

        from noderr_demo.dev_wallet import install_dev_wallet

        shots = self.demo.state_dir / "screenshots"
        shots.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.set_default_timeout(60_000)
                wallet = install_dev_wallet(page, _key_of(self.applicant), self.demo.settings.chain_rpc_url)
                page.goto(_operator_pages_link(self.demo, self.applicant))
                if not page.url.endswith("/operator/sign-in"):
                    raise DemoFailure(f"the operator pages did not ask for a sign-in: {page.url}")
                page.click("[data-testid=sign-in]")
                page.wait_for_url("**/operator")
                return steps(page, wallet, shots)
            finally:
                browser.close()


def sign_in_operators(report, demo, applicants) -> None:
    """Every operator proves their payout wallet by signing in; one of them in the browser."""
    with report.step("operator", "operators sign in with their payout wallet (EIP-4361): wallet proven") as s:
        browser_operator = applicants[1 % len(applicants)]
        seen = {}
        if chromium_available():
            def look(page, _wallet, shots):
                page.wait_for_selector(f"tr[data-node-id='{browser_operator.node_id}']")
                status = page.inner_text(f"tr[data-node-id='{browser_operator.node_id}'] .badge")
                page.screenshot(path=str(shots / "operator-signed-in.png"), full_page=True)
                return {"status": status, "proof": page.inner_text("[data-testid=wallet-proof]")}

            seen = BrowserOperator(demo, browser_operator).run(look)
            if "proven by signature" not in seen["proof"]:
                raise DemoFailure(f"the operator page does not show the proven wallet: {seen['proof']}")
        for applicant in applicants:
            if applicant is not browser_operator or not seen:
                _sign_in_over_http(demo.api_url, applicant)
        with session_scope() as session:
            unproven = session.scalars(select(Operator.email).where(
                Operator.email.in_([a.email for a in applicants]), Operator.wallet_proven_at.is_(None))).all()
        if unproven:
            raise DemoFailure(f"wallets still unproven after sign-in: {unproven}")
        where = (f"{browser_operator.full_name} in chromium sees {browser_operator.node_id} {seen['status']}"
                 if seen else "chromium not installed: signed over HTTP")
        s.detail = f"{len(applicants)} wallets proven; {where}"
    report.where_to_look["operator pages"] = f"{demo.api_url}/operator  (sign in with the operator's wallet)"


def claim_in_browser(report, demo, applicants) -> None:
    """After the root is published: an operator presses Claim; the wallet sends the claim."""
    from web3 import Web3

    from noderr_core.chain.addresses import load_addresses
    from noderr_core.chain.contracts import abi_of
    from noderr_demo.rewards import _send

    operator = applicants[1 % len(applicants)]
    with report.step("operator", "an operator claims from the browser (EIP-1193 wallet)") as s:
        if not chromium_available():
            s.detail = "chromium not installed: skipped (the claim over the CLI above still ran)"
            return
        w3 = Web3(Web3.HTTPProvider(demo.settings.chain_rpc_url))
        addresses = load_addresses(demo.settings.resolved_chain_addresses_file)
        token = w3.eth.contract(address=addresses.reward_token, abi=abi_of("RewardToken"))
        # The operator's wallet needs gas for its own transaction.
        _send(w3, Account.from_key(LOCAL_CHAIN_SIGNER_KEY), {"to": operator.wallet, "value": w3.to_wei(1, "ether")})
        before = token.functions.balanceOf(operator.wallet).call()

        def claim(page, wallet, shots):
            page.wait_for_selector("#claim[data-loaded]")
            claimable = page.inner_text("[data-testid=claimable]")
            if page.locator("[data-testid=claim]").is_disabled():
                raise DemoFailure(f"nothing to claim for {operator.wallet} (claimable: {claimable})")
            page.click("[data-testid=claim]")
            # Locator waits (the page's CSP forbids the eval behind wait_for_function).
            page.locator("#claim-status", has_text=re.compile(r"^Claimed in")).or_(
                page.locator("#claim-error:visible")).wait_for()
            error = page.locator("#claim-error")
            if error.is_visible():
                raise DemoFailure(f"the browser claim failed: {error.inner_text()}")
            page.screenshot(path=str(shots / "operator-claimed.png"), full_page=True)
            return {"claimable_before": claimable, "claimed": page.inner_text("[data-testid=claimed]"),
                    "tx": wallet.sent[-1]}

        seen = BrowserOperator(demo, operator).run(claim)
        paid = token.functions.balanceOf(operator.wallet).call() - before
        if paid <= 0:
            raise DemoFailure(f"the browser claim paid nothing to {operator.wallet}")
        s.detail = (f"{operator.full_name} claimed {seen['claimable_before']} in tx {seen['tx'][:14]}…; "
                    f"page shows claimed {seen['claimed']}; screenshot {demo.state_dir / 'screenshots'}")
