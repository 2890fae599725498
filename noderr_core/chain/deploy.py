"""Deploying the platform's contracts and recording their addresses.

Stake is deployed beside the registry: it reads node operators from the registry, bonds the same
token the distributor pays, and names the platform signer as the slasher.

Locally (`token=None`) the deploy also creates the RewardToken and funds the distributor with a
large supply, so claims pay out without any set-up. In production, pass the real token's address;
the distributor then has to be funded by a transfer from the treasury.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import to_checksum_address

from noderr_core.chain.addresses import ChainAddresses, ChainNotDeployed, load_addresses, save_addresses
from noderr_core.chain.client import ChainClient
from noderr_core.settings import Settings

LOCAL_TOKEN_NAME = "Noderr Reward"
LOCAL_TOKEN_SYMBOL = "NDR"
# Enough for a million epochs at the default pool; the local token only exists on the dev chain.
LOCAL_DISTRIBUTOR_FUNDING = 10**9 * 10**18
DEFAULT_MIN_STAKE = 1_000 * 10**18
DEFAULT_UNBONDING_DELAY_SECONDS = 7 * 86400


@dataclass
class DeployOutcome:
    addresses: ChainAddresses
    deployed: bool  # False when the recorded contracts were already live on this chain


def deploy_contracts(
    client: ChainClient,
    *,
    token: str | None = None,
    registrar: str | None = None,
    publisher: str | None = None,
    funding: int = LOCAL_DISTRIBUTOR_FUNDING,
    slasher: str | None = None,
    treasury: str | None = None,
    min_stake: int = DEFAULT_MIN_STAKE,
    unbonding_delay: int = DEFAULT_UNBONDING_DELAY_SECONDS,
) -> ChainAddresses:
    """Deploy NodeRegistry + RewardDistributor + Stake (+ a funded local RewardToken when token is None)."""
    registrar = to_checksum_address(registrar or client.address)
    publisher = to_checksum_address(publisher or client.address)
    slasher = to_checksum_address(slasher or client.address)
    treasury = to_checksum_address(treasury or client.address)
    start_block = client.w3.eth.block_number
    token_is_local = token is None
    if token_is_local:
        token_address, _ = client.deploy("RewardToken", LOCAL_TOKEN_NAME, LOCAL_TOKEN_SYMBOL)
    else:
        token_address = to_checksum_address(token)
    registry_address, _ = client.deploy("NodeRegistry", registrar)
    distributor_address, _ = client.deploy("RewardDistributor", token_address, publisher)
    stake_address, _ = client.deploy(
        "Stake", token_address, registry_address, slasher, treasury, min_stake, unbonding_delay
    )
    if token_is_local and funding:
        token_contract = client.contract("RewardToken", token_address)
        client.transact(token_contract.functions.mint(distributor_address, funding))
    return ChainAddresses(
        chain_id=client.w3.eth.chain_id,
        node_registry=registry_address,
        reward_distributor=distributor_address,
        reward_token=token_address,
        deployer=client.address,
        deployed_block=start_block,
        token_is_local=token_is_local,
        stake=stake_address,
    )


def recorded_contracts_live(client: ChainClient, addresses: ChainAddresses) -> bool:
    """True when the addresses file matches this chain and code exists at every address."""
    if client.w3.eth.chain_id != addresses.chain_id or not addresses.stake:
        return False
    return all(
        len(client.w3.eth.get_code(addr)) > 0
        for addr in (addresses.node_registry, addresses.reward_distributor, addresses.reward_token,
                     addresses.stake)
    )


def ensure_deployed(
    settings: Settings, *, force: bool = False, token: str | None = None, client: ChainClient | None = None
) -> DeployOutcome:
    """Deploy unless the recorded contracts are already live on the configured chain."""
    path = settings.resolved_chain_addresses_file
    client = client or ChainClient.from_settings(settings, with_addresses=False)
    if not force:
        try:
            existing = load_addresses(path)
        except ChainNotDeployed:
            existing = None
        if existing is not None and recorded_contracts_live(client, existing):
            client.addresses = existing
            return DeployOutcome(existing, deployed=False)
    addresses = deploy_contracts(
        client, token=token, treasury=settings.stake_treasury or None, min_stake=settings.stake_minimum,
        unbonding_delay=settings.stake_unbonding_delay_seconds,
    )
    save_addresses(path, addresses)
    client.addresses = addresses
    return DeployOutcome(addresses, deployed=True)
