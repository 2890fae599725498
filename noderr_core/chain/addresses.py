"""The deployed contract addresses, kept in one JSON file (settings.resolved_chain_addresses_file).

`noderr chain deploy` writes it; the relay, the API (claim call data) and the CLI read it. Locally
it lives in `.noderr/chain.json`; in production it is written once by the deploy against the real
network (or by hand, pointing at the real token and contracts).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from eth_utils import is_address, to_checksum_address


class ChainNotDeployed(RuntimeError):
    """The addresses file is missing or unusable: the contracts must be deployed first."""


@dataclass(frozen=True)
class ChainAddresses:
    chain_id: int
    node_registry: str
    reward_distributor: str
    reward_token: str
    deployer: str
    deployed_block: int = 0
    token_is_local: bool = True  # True when deploy created (and funded) the RewardToken itself
    stake: str = ""  # the Stake contract; empty in files written before it existed (redeploy)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def load_addresses(path: Path) -> ChainAddresses:
    if not path.exists():
        raise ChainNotDeployed(
            f"no contract addresses at {path}: run `noderr chain deploy` (with the chain running, "
            "e.g. under `noderr dev up`)"
        )
    try:
        data = json.loads(path.read_text())
        addresses = ChainAddresses(**data)
    except (ValueError, TypeError) as exc:
        raise ChainNotDeployed(f"unreadable contract addresses file {path}: {exc}") from exc
    for field in ("node_registry", "reward_distributor", "reward_token", "deployer"):
        value = getattr(addresses, field)
        if not is_address(value):
            raise ChainNotDeployed(f"{path}: {field}={value!r} is not an address")
    if addresses.stake and not is_address(addresses.stake):
        raise ChainNotDeployed(f"{path}: stake={addresses.stake!r} is not an address")
    return ChainAddresses(
        **{
            **asdict(addresses),
            "node_registry": to_checksum_address(addresses.node_registry),
            "reward_distributor": to_checksum_address(addresses.reward_distributor),
            "reward_token": to_checksum_address(addresses.reward_token),
            "deployer": to_checksum_address(addresses.deployer),
            "stake": to_checksum_address(addresses.stake) if addresses.stake else "",
        }
    )


def save_addresses(path: Path, addresses: ChainAddresses) -> None:
    """Atomic write: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".chain-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(addresses.to_json() + "\n")
    os.replace(tmp, path)
