"""`noderr chain …`: deploy the contracts, inspect them, relay chain outbox rows, claim rewards."""

from __future__ import annotations

import json
import sys

import click


def _settings():
    from noderr_core.settings import get_settings

    return get_settings()


def _fail(message: str) -> None:
    raise click.ClickException(message)


@click.group()
def chain() -> None:
    """Contracts on the configured chain (NODERR_CHAIN_RPC_URL; locally the Ganache dev chain)."""


@chain.command("deploy")
@click.option("--force", is_flag=True, help="Deploy new contracts even if the recorded ones are live.")
@click.option("--token", default=None, metavar="ADDRESS",
              help="Use this existing ERC-20 as the reward token (production); default deploys a "
                   "local RewardToken and funds the distributor.")
def chain_deploy(force: bool, token: str | None) -> None:
    """Deploy NodeRegistry + RewardDistributor (+ local token) and record their addresses."""
    from noderr_core.chain.deploy import ensure_deployed

    settings = _settings()
    outcome = ensure_deployed(settings, force=force, token=token)  # errors: noderr_cli.errors
    verb = "deployed" if outcome.deployed else "already deployed (use --force to redeploy)"
    click.echo(f"contracts {verb}; addresses in {settings.resolved_chain_addresses_file}:")
    click.echo(outcome.addresses.to_json())


@chain.command("status")
def chain_status() -> None:
    """Show the recorded contracts, the signer and the current reward root."""
    from noderr_core.chain.client import ChainClient

    settings = _settings()
    client = ChainClient.from_settings(settings)
    dist = client.distributor()
    info = {
        "rpc_url": settings.chain_rpc_url,
        "chain_id": client.w3.eth.chain_id,
        "signer": client.address,
        "signer_balance_wei": client.w3.eth.get_balance(client.address),
        "addresses": json.loads(client.addresses.to_json()),
        "current_epoch": dist.functions.current_epoch().call(),
        "merkle_root": "0x" + dist.functions.merkle_root().call().hex(),
        "total_cumulative": dist.functions.total_cumulative().call(),
        "active_nodes": client.registry().functions.active_nodes().call(),
        "distributor_token_balance": client.token().functions.balanceOf(
            client.addresses.reward_distributor).call(),
    }
    click.echo(json.dumps(info, indent=2))


@chain.command("relay")
@click.option("--limit", default=50, show_default=True, help="Most outbox rows to send in this run.")
def chain_relay(limit: int) -> None:
    """Send due chain outbox rows once (the Dagster relay job does this on a sensor)."""
    from noderr_core.chain.relay import ChainHandler
    from noderr_core.db import engine_for_settings, make_session_factory
    from noderr_core.outbox import relay_due

    settings = _settings()
    factory = make_session_factory(engine_for_settings(settings))
    report = relay_due(factory, ChainHandler(settings), limit=limit)
    click.echo(json.dumps(report.as_metadata() | {"messages": report.messages}, indent=2, default=str))


@chain.command("claim")
@click.option("--key", envvar="NODERR_OPERATOR_KEY", default=None,
              help="Operator wallet private key (0x…); the operator signs and pays gas.")
@click.option("--wallet", default=None, metavar="ADDRESS",
              help="Claim for this wallet with the platform signer paying gas (the tokens still go "
                   "to the wallet; the contract lets anyone submit a claim).")
def chain_claim(key: str | None, wallet: str | None) -> None:
    """Claim a wallet's rewards on-chain with the proof of the latest published root."""
    from eth_account import Account

    from noderr_core.chain.claims import submit_claim
    from noderr_core.db import engine_for_settings

    if bool(key) == bool(wallet):
        _fail("give exactly one of --key (operator signs) or --wallet (platform signer submits)")
    settings = _settings()
    if key:
        try:
            wallet = Account.from_key(key).address
        except Exception:  # the library's message may echo part of the key: never print it
            _fail("--key is not a private key: give 0x followed by 64 hex digits (or set NODERR_OPERATOR_KEY)")
    outcome = submit_claim(engine_for_settings(settings), settings,
                           wallet=wallet, signer_key=key)
    click.echo(json.dumps(outcome, indent=2))
    if outcome.get("status") != "claimed":
        sys.exit(1)
