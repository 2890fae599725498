"""Submitting a reward claim on-chain (used by `noderr chain claim` and the demo).

The claim data comes from `noderr_core.rewards.claims.wallet_claim` (latest published root); the
transaction is signed either by the operator's own key or by the platform signer on the wallet's
behalf (the contract pays the wallet either way).
"""

from __future__ import annotations

from sqlalchemy import Engine

from noderr_core.chain.client import ChainClient, ChainUnavailable, TransactionReverted, make_web3
from noderr_core.chain.addresses import load_addresses
from noderr_core.db import make_session_factory
from noderr_core.rewards.claims import wallet_claim
from noderr_core.settings import Settings


def submit_claim(engine: Engine, settings: Settings, *, wallet: str, signer_key: str | None = None,
                 client: ChainClient | None = None) -> dict:
    with make_session_factory(engine)() as session:
        claim = wallet_claim(session, wallet)
    if claim["proof"] is None:
        return {"status": "nothing_to_claim", "wallet": claim["wallet"],
                "detail": "the published root has no leaf for this wallet", "claim": claim}
    if client is None:
        addresses = load_addresses(settings.resolved_chain_addresses_file)
        key = signer_key or settings.chain_signer_key.get_secret_value()
        client = ChainClient(make_web3(settings.chain_rpc_url), key, addresses)
    dist = client.distributor()
    token = client.token()
    account = claim["wallet"]
    cumulative = int(claim["cumulative_amount"])
    proof = [bytes.fromhex(p[2:]) for p in claim["proof"]]
    already = client.read(dist.functions.claimed(account))
    if already >= cumulative:
        return {"status": "nothing_to_claim", "wallet": account, "claimed": str(already),
                "cumulative_amount": str(cumulative), "detail": "everything in the published root is claimed"}
    before = client.read(token.functions.balanceOf(account))
    try:
        receipt = client.transact(dist.functions.claim(account, cumulative, proof))
    except (TransactionReverted, ChainUnavailable) as exc:
        return {"status": "error", "wallet": account, "detail": str(exc)}
    after = client.read(token.functions.balanceOf(account))
    return {
        "status": "claimed",
        "wallet": account,
        "paid": str(after - before),
        "cumulative_amount": str(cumulative),
        "token_balance": str(after),
        "tx_hash": receipt.tx_hash,
        "block_number": receipt.block_number,
    }
