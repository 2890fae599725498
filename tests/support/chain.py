"""Chain fixtures: an in-process eth-tester (py-evm) chain and a real Ganache process.

`eth_chain`: contracts deployed once per session on eth-tester; every test starts from a snapshot
taken right after the deploy, so tests do not see each other's transactions.
`ganache`: a Ganache JSON-RPC process on a free loopback port (state in a temp folder), started
once per session and stopped by PID; `ganache_deployed` deploys the contracts on it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account

from noderr_core.chain.addresses import ChainAddresses, save_addresses
from noderr_core.chain.client import ChainClient, make_web3
from noderr_core.chain.deploy import deploy_contracts
from noderr_local.devchain import ganache_argv, rpc_chain_id
from noderr_core.settings import LOCAL_CHAIN_SIGNER_KEY
from noderr_local.process import free_port, stop_process, wait_for

# Keys of Ganache's deterministic accounts 1 and 2 (account 0 is the platform signer); they hold
# ETH on the dev chain, so tests can sign as operators. tests/rewards/test_devchain.py checks them.
OPERATOR_KEYS = [
    "0x6cbed15c793ce57650b9877cf6fa156fbef513c4e6134f022a85b1ffdd59b2a1",
    "0x6370fd033278c143179d81c5526140625662b8daa446c22ee2d73db3707e620c",
]


@dataclass
class TestChain:
    w3: object
    client: ChainClient  # the platform signer (registrar + publisher)
    addresses: ChainAddresses

    def client_for(self, key: str) -> ChainClient:
        return ChainClient(self.w3, key, self.addresses, receipt_timeout=15, poll_latency=0.01)


@pytest.fixture(scope="session")
def _eth_tester_session():
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider, Web3

    tester = EthereumTester(PyEVMBackend())
    w3 = Web3(EthereumTesterProvider(tester))
    funder = w3.eth.accounts[0]
    for key in [LOCAL_CHAIN_SIGNER_KEY, *OPERATOR_KEYS]:
        addr = Account.from_key(key).address
        w3.eth.send_transaction({"from": funder, "to": addr, "value": 10**20})
    client = ChainClient(w3, LOCAL_CHAIN_SIGNER_KEY, receipt_timeout=15, poll_latency=0.01)
    client.addresses = deploy_contracts(client)
    snapshot = tester.take_snapshot()
    return tester, w3, client, snapshot


@pytest.fixture
def eth_chain(_eth_tester_session) -> TestChain:
    tester, w3, client, snapshot = _eth_tester_session
    tester.revert_to_snapshot(snapshot)
    return TestChain(w3, client, client.addresses)


@dataclass
class GanacheProcess:
    url: str
    proc: subprocess.Popen
    chain_id: int = 1337


@pytest.fixture(scope="session")
def ganache(tmp_path_factory) -> GanacheProcess:
    port = free_port()
    db = tmp_path_factory.mktemp("ganache")
    log_path = Path(db) / "ganache.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ganache_argv(host="127.0.0.1", port=port, chain_id=1337, db_path=str(db / "chain")),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: rpc_chain_id(url) == 1337, 90, "Ganache")
        yield GanacheProcess(url=url, proc=proc)
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def ganache_deployed(ganache, tmp_path_factory) -> tuple[GanacheProcess, ChainAddresses, Path]:
    client = ChainClient(make_web3(ganache.url), LOCAL_CHAIN_SIGNER_KEY, poll_latency=0.05)
    addresses = deploy_contracts(client)
    path = tmp_path_factory.mktemp("chainaddr") / "chain.json"
    save_addresses(path, addresses)
    return ganache, addresses, path
