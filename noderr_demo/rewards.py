"""Reward journey of the demo: close today's epoch through Dagster, publish its root, claim.

Epochs are whole UTC days and the daily schedule closes each one after midnight; the demo closes
today's epoch early (`close_epoch_job` with allow_open_day) so it can finish in minutes. The
operator then claims exactly as documented for operators: the public claims endpoint gives the
proof and ready-made call data, which the operator's own wallet sends to the distributor.
"""

from __future__ import annotations

import httpx
from eth_account import Account
from web3 import Web3

from noderr_core.chain.addresses import load_addresses
from noderr_core.chain.contracts import abi_of
from noderr_core.db import session_scope
from noderr_core.tables.rewards import RewardEpoch
from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY
from noderr_core.timeutil import utcnow
from noderr_demo.dagster_ui import DagsterUI
from noderr_demo.proven_service import proven_service_figures
from noderr_demo.report import DemoFailure, wait_until


def publish_epoch(demo) -> str:
    from sqlalchemy import select

    today = utcnow().date().isoformat()
    ui = DagsterUI(demo.dagster_port)
    # close_epoch_job materializes today's `reward_epoch` partition (allow_open_day): the Dagster UI
    # shows the epoch that is paid.
    run_id = ui.launch(
        "close_epoch_job", {"ops": {"reward_epoch": {"config": {"allow_open_day": True}}}},
        tags={"dagster/partition": today},
    )
    ui.wait(run_id)

    def published():
        with session_scope() as s:
            epoch = s.scalar(select(RewardEpoch).where(RewardEpoch.epoch_date == utcnow().date()))
            if epoch is not None and epoch.publish_error:
                raise DemoFailure(f"publishing the root failed: {epoch.publish_error}")
            if epoch is not None and epoch.tree_built_at and epoch.merkle_root is None:
                raise DemoFailure(f"epoch {today} distributed nothing ({epoch.node_count} nodes scored)")
            return epoch if epoch is not None and epoch.published_tx_hash else None

    epoch = wait_until(published, 300, "the chain outbox sensor to publish the epoch root")
    addresses = load_addresses(demo.settings.resolved_chain_addresses_file)
    w3 = Web3(Web3.HTTPProvider(demo.settings.chain_rpc_url))
    dist = w3.eth.contract(address=addresses.reward_distributor, abi=abi_of("RewardDistributor"))
    on_chain = _root_on_chain(dist)
    if on_chain.lower() != epoch.merkle_root.lower():
        raise DemoFailure(f"root on-chain {on_chain} differs from the epoch's {epoch.merkle_root}")
    return (f"epoch {today}: {epoch.node_count} nodes, root {epoch.merkle_root[:14]}… in tx "
            f"{epoch.published_tx_hash[:14]}… (run {ui.run_url(run_id)}) — "
            + proven_service_figures(demo, today))


def _root_on_chain(dist) -> str:
    for name in ("merkle_root", "merkleRoot", "root"):
        fn = getattr(dist.functions, name, None)
        if fn is not None:
            value = fn().call()
            return "0x" + value.hex().removeprefix("0x") if isinstance(value, bytes) else str(value)
    raise DemoFailure("RewardDistributor exposes no root getter")


def claim_rewards(demo, applicant) -> str:
    settings = demo.settings
    addresses = load_addresses(settings.resolved_chain_addresses_file)
    w3 = Web3(Web3.HTTPProvider(settings.chain_rpc_url))
    token = w3.eth.contract(address=addresses.reward_token, abi=abi_of("RewardToken"))
    wallet = applicant.account.address

    claim = httpx.get(f"{demo.api_url}/v1/rewards/claims/{wallet}", timeout=30).json()
    if not claim.get("claim"):
        raise DemoFailure(f"no claim for {wallet}: {claim}")

    # The operator's wallet needs gas: the dev chain's funded account sends it some ETH.
    faucet = Account.from_key(LOCAL_CHAIN_SIGNER_KEY)
    _send(w3, faucet, {"to": wallet, "value": w3.to_wei(1, "ether")})

    before = token.functions.balanceOf(wallet).call()
    receipt = _send(w3, applicant.account, {"to": addresses.reward_distributor,
                                            "data": claim["claim"]["data"]})
    if receipt.status != 1:
        raise DemoFailure(f"claim transaction reverted: {receipt.transactionHash.hex()}")
    after = token.functions.balanceOf(wallet).call()
    paid = after - before
    if paid <= 0 or paid != int(claim["cumulative_amount"]):
        raise DemoFailure(f"claim paid {paid}, expected {claim['cumulative_amount']}")

    # Claiming the same proof again pays nothing more.
    try:
        _send(w3, applicant.account, {"to": addresses.reward_distributor, "data": claim["claim"]["data"]})
    except Exception:
        pass  # a revert ("nothing to claim") is the expected answer
    if token.functions.balanceOf(wallet).call() != after:
        raise DemoFailure("a second claim paid again")
    return (f"{applicant.full_name} ({wallet[:10]}…) claimed {paid / 10**18:.4f} NDR; "
            f"a second claim paid nothing — {demo.api_url}/rewards/{wallet}")


def _send(w3: Web3, account, tx: dict):
    tx = {
        "from": account.address,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": w3.eth.chain_id,
        "gasPrice": w3.eth.gas_price,
        "value": 0,
        **tx,
    }
    tx["gas"] = w3.eth.estimate_gas(tx)
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt.status != 1:
        raise DemoFailure(f"transaction {tx_hash.hex()} reverted")
    return receipt
