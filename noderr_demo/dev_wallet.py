"""A browser wallet for the dev chain: an EIP-1193 provider (`window.ethereum`) that signs with a
dev-chain key, for the demo and the browser tests.

`install_dev_wallet(page, key, rpc_url)` injects the provider with Playwright's
`page.add_init_script` and bridges its requests to Python (`page.expose_function`):
`eth_requestAccounts`/`eth_accounts` answer the key's address, `eth_chainId` the chain's,
`personal_sign` signs EIP-191 with eth-account, `eth_sendTransaction` fills nonce, gas and fees,
signs with the key and sends the raw transaction to the chain, and every other method is forwarded
to the chain's JSON-RPC. The key never enters the page. A real wallet extension stands in its place
for operators; this one only exists on loopback dev chains.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3

BINDING = "__noderrDevWallet"
PROVIDER_JS = """
(() => {
  const listeners = {};
  window.ethereum = {
    isNoderrDevWallet: true,
    async request({ method, params }) {
      const answer = await window.%(binding)s(method, params || []);
      if (answer && answer.error) {
        const err = new Error(answer.error.message);
        err.code = answer.error.code;
        throw err;
      }
      return answer.result;
    },
    on(event, fn) { (listeners[event] = listeners[event] || []).push(fn); },
    removeListener(event, fn) { listeners[event] = (listeners[event] || []).filter((f) => f !== fn); },
  };
})();
""" % {"binding": BINDING}


@dataclass
class DevWallet:
    key: str
    rpc_url: str
    calls: list[str] = field(default_factory=list)  # methods the page asked for, in order
    sent: list[str] = field(default_factory=list)  # transaction hashes it sent

    @property
    def address(self) -> str:
        return Account.from_key(self.key).address

    def _rpc(self, method: str, params: list) -> dict:
        response = httpx.post(self.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                  "params": params}, timeout=30)
        return response.json()

    def handle(self, method: str, params: list) -> dict:
        self.calls.append(method)
        try:
            if method in ("eth_requestAccounts", "eth_accounts"):
                return {"result": [self.address]}
            if method == "personal_sign":
                message, address = params[0], params[1]
                if address.lower() != self.address.lower():
                    return {"error": {"code": 4100, "message": f"this wallet holds {self.address}, not {address}"}}
                data = bytes.fromhex(message[2:]) if message.startswith("0x") else message.encode()
                signature = Account.from_key(self.key).sign_message(encode_defunct(primitive=data)).signature
                return {"result": "0x" + signature.hex().removeprefix("0x")}
            if method == "eth_sendTransaction":
                return {"result": self._send(params[0])}
            if method == "wallet_switchEthereumChain":
                return {"result": None}
            return self._rpc(method, params)
        except Exception as exc:  # the page sees a wallet error, as with a real wallet
            return {"error": {"code": -32603, "message": str(exc)}}

    def _send(self, tx: dict) -> str:
        w3 = Web3(Web3.HTTPProvider(self.rpc_url))
        if tx.get("from", self.address).lower() != self.address.lower():
            raise ValueError(f"this wallet holds {self.address}, not {tx['from']}")
        full = {"from": self.address, "to": Web3.to_checksum_address(tx["to"]), "data": tx.get("data", "0x"),
                "value": int(tx.get("value", "0x0"), 16) if isinstance(tx.get("value"), str) else int(tx.get("value", 0)),
                "nonce": w3.eth.get_transaction_count(self.address, "pending"),
                "chainId": w3.eth.chain_id, "gasPrice": w3.eth.gas_price}
        full["gas"] = w3.eth.estimate_gas(full)
        signed = Account.from_key(self.key).sign_transaction(full)
        tx_hash = "0x" + w3.eth.send_raw_transaction(signed.raw_transaction).hex().removeprefix("0x")
        self.sent.append(tx_hash)
        return tx_hash


def install_dev_wallet(page, key: str, rpc_url: str) -> DevWallet:
    """Give `page` (and every page it navigates to) a wallet holding `key` on the chain at `rpc_url`."""
    wallet = DevWallet(key=key, rpc_url=rpc_url)
    page.expose_function(BINDING, wallet.handle)
    page.add_init_script(PROVIDER_JS)
    return wallet
