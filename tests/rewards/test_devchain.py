"""The local dev chain spec: Ganache's first account is the platform's default signer."""

from __future__ import annotations

import httpx
import pytest
from eth_account import Account

from noderr_local.devchain import service_spec
from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY, Settings
from tests.support.chain import OPERATOR_KEYS


def test_default_signer_is_the_dev_chains_first_account(ganache):
    accounts = httpx.post(ganache.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_accounts",
                                             "params": []}).json()["result"]
    assert accounts[0].lower() == Account.from_key(LOCAL_CHAIN_SIGNER_KEY).address.lower()
    assert accounts[1:3] == [Account.from_key(k).address.lower() for k in OPERATOR_KEYS]


def test_service_spec_keeps_state_under_the_state_dir_and_stays_on_loopback(tmp_path):
    spec = service_spec(Settings(env="test", state_dir=tmp_path, chain_rpc_url="http://127.0.0.1:9545"))
    assert spec.argv[spec.argv.index("--database.dbPath") + 1] == str(tmp_path / "chain")
    assert spec.argv[spec.argv.index("--server.port") + 1] == "9545"
    assert spec.ready() is False  # nothing listens there
    with pytest.raises(ValueError, match="not on loopback"):
        service_spec(Settings(env="test", state_dir=tmp_path, chain_rpc_url="https://base-sepolia.example"))
