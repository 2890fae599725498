"""The local dev chain: Ganache (npm) on loopback with deterministic accounts and on-disk state.

`service_spec(settings)` is what `noderr dev up` starts. The accounts come from Ganache's
well-known deterministic mnemonic, so the first account's key is `LOCAL_CHAIN_SIGNER_KEY` (the
control plane's default signer: deployer, registrar and root publisher on the local chain). The
chain database lives in `<state_dir>/chain`, so deployed contracts survive restarts.
"""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlparse

from noderr_local.process import ServiceSpec
from noderr_core.settings import PROJECT_ROOT, Settings

# Ganache's `--wallet.deterministic` mnemonic; account 0's key is settings.LOCAL_CHAIN_SIGNER_KEY.
DEV_MNEMONIC = "myth like bonus scare over problem client lizard pioneer submit female collect"
DEV_ACCOUNT_COUNT = 10
GANACHE_BIN = PROJECT_ROOT / "node_modules" / ".bin" / "ganache"


def rpc_host_port(rpc_url: str) -> tuple[str, int]:
    parsed = urlparse(rpc_url)
    return parsed.hostname or "127.0.0.1", parsed.port or 8545


def rpc_chain_id(rpc_url: str, timeout: float = 2.0) -> int | None:
    """The chain id the JSON-RPC endpoint reports, or None when it does not answer."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(
        rpc_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 - loopback
            return int(json.loads(resp.read())["result"], 16)
    except Exception:
        return None


def ganache_argv(
    *, host: str, port: int, chain_id: int, db_path: str | None, quiet: bool = True
) -> list[str]:
    if not GANACHE_BIN.exists():
        raise FileNotFoundError(
            f"Ganache not found at {GANACHE_BIN}: run `npm ci` (or `make setup`) in {PROJECT_ROOT}"
        )
    argv = [
        str(GANACHE_BIN),
        "--server.host", host,
        "--server.port", str(port),
        "--chain.chainId", str(chain_id),
        "--chain.networkId", str(chain_id),
        # Contracts are compiled for shanghai (Ganache 7.9's newest hardfork).
        "--chain.hardfork", "shanghai",
        "--wallet.mnemonic", DEV_MNEMONIC,
        "--wallet.totalAccounts", str(DEV_ACCOUNT_COUNT),
    ]
    if db_path:
        argv += ["--database.dbPath", db_path]
    if quiet:
        argv += ["--logging.quiet"]
    return argv


def service_spec(settings: Settings) -> ServiceSpec:
    host, port = rpc_host_port(settings.chain_rpc_url)
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(
            f"NODERR_CHAIN_RPC_URL={settings.chain_rpc_url} is not on loopback: the local dev chain "
            "only runs on 127.0.0.1 (point the URL at it, or run against your remote RPC without "
            "`noderr dev up`'s chain)"
        )
    db_dir = settings.state_dir / "chain"
    url = f"http://{host}:{port}"

    def _make_dir() -> None:
        db_dir.mkdir(parents=True, exist_ok=True)

    return ServiceSpec(
        name="devchain",
        argv=ganache_argv(host=host, port=port, chain_id=settings.chain_id, db_path=str(db_dir),
                          quiet=False),
        url=url,
        ready=lambda: rpc_chain_id(url) == settings.chain_id,
        before_start=_make_dir,
        ready_timeout=90,
    )
