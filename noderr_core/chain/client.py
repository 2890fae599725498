"""The web3.py chain client: one signer, contract handles, and transactions that are simulated,
nonce-managed, sent, and awaited to a receipt.

Errors are split into what a relay should retry (`ChainUnavailable`: the RPC does not answer, the
receipt did not arrive in time, nonce races) and what it must not (`TransactionReverted`: the
contract refused, with the revert reason).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, Web3Exception

from noderr_core.chain.addresses import ChainAddresses, load_addresses
from noderr_core.chain.contracts import abi_of
from noderr_core.settings import Settings


class ChainError(RuntimeError):
    pass


class ChainUnavailable(ChainError):
    """Transient: the RPC endpoint is down, slow, or the transaction is not mined yet."""

    def __init__(self, message: str, tx_hash: str | None = None):
        super().__init__(message)
        self.tx_hash = tx_hash  # set when a transaction was sent but its receipt was not seen


class TransactionReverted(ChainError):
    """Permanent: the contract rejected the call (the message is the revert reason)."""

    def __init__(self, reason: str, tx_hash: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.tx_hash = tx_hash


@dataclass
class TxReceipt:
    tx_hash: str
    block_number: int
    gas_used: int
    status: int
    logs: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "tx_hash": self.tx_hash,
            "block_number": self.block_number,
            "gas_used": self.gas_used,
            "tx_status": self.status,
        }


def node_id_bytes32(node_id: str) -> bytes:
    """The registry's node key: the platform id as ASCII, right-padded to 32 bytes."""
    raw = node_id.encode("ascii")
    if len(raw) > 32:
        raise ValueError(f"node id {node_id!r} is longer than 32 bytes")
    return raw.ljust(32, b"\0")


def _revert_of(exc: Exception) -> str | None:
    """The revert reason if `exc` is a contract revert (web3's ContractLogicError, or eth-tester's
    TransactionFailed that its in-process provider raises instead), else None."""
    if isinstance(exc, ContractLogicError):
        return revert_reason(exc)
    if type(exc).__name__ == "TransactionFailed":
        message = str(exc)
        for prefix in ("execution reverted: ", "execution reverted:"):
            if message.startswith(prefix):
                return message[len(prefix):].strip() or "reverted without a reason"
        return message
    return None


def revert_reason(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, ContractLogicError):
        for prefix in ("execution reverted: ", "execution reverted:", "VM Exception while processing transaction: revert "):
            if message.startswith(prefix):
                return message[len(prefix):].strip() or "reverted without a reason"
        return message
    return message


def make_web3(rpc_url: str, timeout: float = 10.0) -> Web3:
    # No web3-level retries: the outbox owns retrying, with backoff and a visible attempt log.
    provider = Web3.HTTPProvider(
        rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
    )
    return Web3(provider)


class ChainClient:
    """A signer on a chain, with the platform's contracts (once deployed)."""

    def __init__(
        self,
        w3: Web3,
        signer_key: str,
        addresses: ChainAddresses | None = None,
        *,
        receipt_timeout: float = 60.0,
        poll_latency: float = 0.1,
    ):
        self.w3 = w3
        self.account: LocalAccount = Account.from_key(signer_key)
        self.addresses = addresses
        self.receipt_timeout = receipt_timeout
        self.poll_latency = poll_latency
        # One signer sends one transaction at a time from this process: nonces stay in order.
        self._send_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, with_addresses: bool = True, **kwargs) -> ChainClient:
        addresses = load_addresses(settings.resolved_chain_addresses_file) if with_addresses else None
        return cls(
            make_web3(settings.chain_rpc_url),
            settings.chain_signer_key.get_secret_value(),
            addresses,
            **kwargs,
        )

    @property
    def address(self) -> str:
        return self.account.address

    def _require_addresses(self) -> ChainAddresses:
        if self.addresses is None:
            raise ChainError("contract addresses are not loaded: run `noderr chain deploy` first")
        return self.addresses

    def contract(self, name: str, address: str):
        return self.w3.eth.contract(address=to_checksum_address(address), abi=abi_of(name))

    def registry(self):
        return self.contract("NodeRegistry", self._require_addresses().node_registry)

    def distributor(self):
        return self.contract("RewardDistributor", self._require_addresses().reward_distributor)

    def token(self):
        return self.contract("RewardToken", self._require_addresses().reward_token)

    def stake(self):
        addresses = self._require_addresses()
        if not addresses.stake:
            raise ChainError("the Stake contract is not deployed: run `noderr chain deploy --force`")
        return self.contract("Stake", addresses.stake)

    def read(self, fn) -> Any:
        """A view call; RPC failures become ChainUnavailable."""
        try:
            return fn.call()
        except Exception as exc:
            reason = _revert_of(exc)
            if reason is not None:
                raise TransactionReverted(reason) from exc
            if _is_connection_error(exc) or isinstance(exc, Web3Exception | OSError | ValueError):
                raise ChainUnavailable(f"chain RPC failed: {exc}") from exc
            raise

    def transact(self, fn, *, value: int = 0) -> TxReceipt:
        """Simulate, sign with the next nonce, send, and wait for the receipt.

        The simulation (eth_estimateGas) surfaces a revert reason before any gas is spent; a
        receipt with status 0 is replayed as a call to recover its reason.
        """
        with self._send_lock:
            try:
                tx = fn.build_transaction(
                    {
                        "from": self.address,
                        "value": value,
                        "nonce": self.w3.eth.get_transaction_count(self.address, "pending"),
                        "chainId": self.w3.eth.chain_id,
                    }
                )
                if "gas" in tx:
                    tx["gas"] = int(tx["gas"] * 1.25) + 10_000
                signed = self.account.sign_transaction(tx)
                tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            except Exception as exc:
                reason = _revert_of(exc)
                if reason is not None:
                    raise TransactionReverted(reason) from exc
                if _is_connection_error(exc) or isinstance(exc, Web3Exception | OSError | ValueError):
                    raise ChainUnavailable(f"chain RPC failed while sending: {exc}") from exc
                raise
        return self.wait_for_receipt(HexBytes(tx_hash).to_0x_hex(), fn=fn)

    def wait_for_receipt(self, tx_hash: str, fn=None) -> TxReceipt:
        try:
            raw = self.w3.eth.wait_for_transaction_receipt(
                HexBytes(tx_hash), timeout=self.receipt_timeout, poll_latency=self.poll_latency
            )
        except TimeExhausted as exc:
            raise ChainUnavailable(
                f"transaction {tx_hash} not mined within {self.receipt_timeout}s", tx_hash=tx_hash
            ) from exc
        except Exception as exc:
            if _is_connection_error(exc) or isinstance(exc, Web3Exception | OSError):
                raise ChainUnavailable(
                    f"chain RPC failed while waiting for {tx_hash}: {exc}", tx_hash=tx_hash
                ) from exc
            raise
        receipt = TxReceipt(
            tx_hash=HexBytes(raw["transactionHash"]).to_0x_hex(),
            block_number=raw["blockNumber"],
            gas_used=raw["gasUsed"],
            status=raw["status"],
            logs=list(raw["logs"]),
        )
        if receipt.status != 1:
            reason = "reverted"
            if fn is not None:
                try:
                    fn.call({"from": self.address}, block_identifier=receipt.block_number - 1)
                except Exception as exc:
                    reason = _revert_of(exc) or reason
            raise TransactionReverted(reason, tx_hash=receipt.tx_hash)
        return receipt

    def deploy(self, name: str, *args) -> tuple[str, TxReceipt]:
        from noderr_core.chain.contracts import compile_contract

        compiled = compile_contract(name)
        factory = self.w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
        receipt = self.transact(factory.constructor(*args))
        raw = self.w3.eth.get_transaction_receipt(HexBytes(receipt.tx_hash))
        return to_checksum_address(raw["contractAddress"]), receipt


def _is_connection_error(exc: BaseException) -> bool:
    try:
        import requests

        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, ConnectionError | TimeoutError)
