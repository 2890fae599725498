"""The chain handler of the outbox relay: executes OutboxKind.CHAIN rows against the contracts.

Run it with `relay_due(session_factory, ChainHandler(settings))`.

For each claimed row the relay first reads on-chain state; if the effect is already there (a
previous attempt's transaction was mined after we lost track of it, or someone else did it) the row
succeeds without a transaction. Otherwise it sends one transaction and waits for its receipt. That
gives exactly one effect per idempotency key under at-least-once delivery:

* RPC down / receipt timeout  -> `DeliveryFailed(retryable=True)`: backoff, nothing lost. The hash
  of a sent-but-unconfirmed transaction is kept in the attempt so the retry waits for it first.
* revert                      -> `DeliveryFailed(retryable=False)`: the row is `failed` with the
  revert reason (Dagster run log, dashboard), unless the on-chain check shows the effect holds.

Actions (payloads from the cross-area contract):
  register_node   {"node_id", "operator_wallet"}  -> NodeRegistry.register_node; sets Node.chain_registered_at
  deregister_node {"node_id"}                     -> NodeRegistry.deregister_node; clears it
  publish_root    {"epoch", "epoch_date", "root", "total_cumulative"} -> RewardDistributor.publish_root
  slash_stake     {"case_id", "node_id", "chain_case_id", "fraction_bps"} -> Stake.slash; the case
                  (noderr_core.slashing.cases) becomes slashed, or failed with the revert reason
Node actions are applied in order per node: a row older than another register/deregister row of the
same node is superseded (the newest row states the desired on-chain state).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

from eth_utils import is_address, to_checksum_address
from sqlalchemy import select
from sqlalchemy.orm import Session
from web3.exceptions import TransactionNotFound

from noderr_core.chain.addresses import ChainNotDeployed
from noderr_core.chain.client import (
    ChainClient,
    ChainUnavailable,
    TransactionReverted,
    TxReceipt,
    node_id_bytes32,
)
from noderr_core.outbox.relay import Delivered, DeliveryFailed, OutboxHandler, SessionFactory
from noderr_core.settings import Settings
from noderr_core.slashing.cases import record_slash_result
from noderr_core.tables import Node, OutboxAttempt, OutboxKind, OutboxMessage
from noderr_core.tables.rewards import ChainTransaction, RewardEpoch
from noderr_core.timeutil import utcnow

log = logging.getLogger(__name__)

NODE_ACTIONS = ("register_node", "deregister_node")


class BadChainMessage(ValueError):
    """The payload cannot be executed (unknown action, missing field): retrying will not help."""


@dataclass
class ActionOutcome:
    outcome: str  # mined | already_done | superseded
    detail: str = ""
    receipt: TxReceipt | None = None
    extra: dict = field(default_factory=dict)

    def result(self) -> dict:
        out = {"outcome": self.outcome, "detail": self.detail} | self.extra
        if self.receipt:
            out |= self.receipt.as_dict()
        return out


# ---- actions -----------------------------------------------------------------------------------

def _node_state(client: ChainClient, node_id: str) -> tuple[str, bool]:
    record = client.read(client.registry().functions.nodes(node_id_bytes32(node_id)))
    operator, active = record[0], record[1]
    return to_checksum_address(operator), bool(active)


def _register_node(client: ChainClient, payload: dict) -> ActionOutcome:
    node_id = _require(payload, "node_id")
    wallet = _require(payload, "operator_wallet")
    if not is_address(wallet):
        raise BadChainMessage(f"operator_wallet {wallet!r} is not an address")
    wallet = to_checksum_address(wallet)
    operator, active = _node_state(client, node_id)
    if active:
        if operator == wallet:
            return ActionOutcome("already_done", f"{node_id} is already registered to {wallet}")
        raise TransactionReverted(f"node {node_id} is registered on-chain to another operator ({operator})")
    receipt = _send_checked(
        client, client.registry().functions.register_node(node_id_bytes32(node_id), wallet),
        done=lambda: _node_state(client, node_id) == (wallet, True),
    )
    return ActionOutcome("mined" if receipt else "already_done", f"registered {node_id} to {wallet}", receipt)


def _deregister_node(client: ChainClient, payload: dict) -> ActionOutcome:
    node_id = _require(payload, "node_id")
    _, active = _node_state(client, node_id)
    if not active:
        return ActionOutcome("already_done", f"{node_id} is not registered on-chain")
    receipt = _send_checked(
        client, client.registry().functions.deregister_node(node_id_bytes32(node_id)),
        done=lambda: not _node_state(client, node_id)[1],
    )
    return ActionOutcome("mined" if receipt else "already_done", f"deregistered {node_id}", receipt)


def _publish_root(client: ChainClient, payload: dict) -> ActionOutcome:
    epoch = int(_require(payload, "epoch"))
    root = _require(payload, "root")
    total = int(_require(payload, "total_cumulative"))
    try:
        root_bytes = bytes.fromhex(root.removeprefix("0x"))
    except ValueError as exc:
        raise BadChainMessage(f"root {root!r} is not hex") from exc
    if len(root_bytes) != 32:
        raise BadChainMessage(f"root {root!r} is not 32 bytes")
    dist = client.distributor()

    def onchain() -> tuple[int, bytes]:
        return client.read(dist.functions.current_epoch()), client.read(dist.functions.merkle_root())

    current_epoch, current_root = onchain()
    if current_root == root_bytes and current_epoch >= epoch:
        return ActionOutcome("already_done", f"root {root} is already on-chain (epoch {current_epoch})")
    if current_epoch > epoch:
        return ActionOutcome(
            "superseded",
            f"the chain already holds the later epoch {current_epoch}; this epoch is paid through it",
        )
    receipt = _send_checked(
        client, dist.functions.publish_root(epoch, root_bytes, total),
        done=lambda: onchain() == (epoch, root_bytes),
    )
    return ActionOutcome("mined" if receipt else "already_done", f"published root {root} for epoch {epoch}", receipt)


def _slash_stake(client: ChainClient, payload: dict) -> ActionOutcome:
    node_id = _require(payload, "node_id")
    case_hex = _require(payload, "chain_case_id")
    fraction_bps = int(_require(payload, "fraction_bps"))
    try:
        case_bytes = bytes.fromhex(str(case_hex).removeprefix("0x"))
    except ValueError as exc:
        raise BadChainMessage(f"chain_case_id {case_hex!r} is not hex") from exc
    if len(case_bytes) != 32:
        raise BadChainMessage(f"chain_case_id {case_hex!r} is not 32 bytes")
    stake = client.stake()

    def slashed() -> int:
        return client.read(stake.functions.slashed_by_case(case_bytes))

    already = slashed()
    if already:
        return ActionOutcome("already_done", f"case {case_hex} already slashed {already}",
                             extra={"slashed_amount": str(already)})
    receipt = _send_checked(
        client, stake.functions.slash(node_id_bytes32(node_id), case_bytes, fraction_bps),
        done=lambda: slashed() > 0,
    )
    amount = slashed()
    return ActionOutcome("mined" if receipt else "already_done",
                         f"slashed {amount} of {node_id}'s stake under case {case_hex}", receipt,
                         extra={"slashed_amount": str(amount)})


ACTIONS = {
    "register_node": _register_node,
    "deregister_node": _deregister_node,
    "publish_root": _publish_root,
    "slash_stake": _slash_stake,
}


def _require(payload: dict, key: str):
    value = payload.get(key)
    if value in (None, ""):
        raise BadChainMessage(f"payload has no {key!r}")
    return value


def _send_checked(client: ChainClient, fn, *, done) -> TxReceipt | None:
    """Send; if it reverts but the desired state holds anyway (a race), report no-op success."""
    try:
        return client.transact(fn)
    except TransactionReverted:
        try:
            if done():
                return None
        except ChainUnavailable:
            pass
        raise


# ---- handler ------------------------------------------------------------------------------------

def _pending_tx_hash(session: Session, msg_id: int) -> str | None:
    last = session.scalar(
        select(OutboxAttempt).where(OutboxAttempt.outbox_id == msg_id).order_by(OutboxAttempt.id.desc()).limit(1)
    )
    if last is None or last.succeeded:
        return None
    return (last.detail or {}).get("pending_tx_hash")


def _superseded_by_newer(session: Session, msg: OutboxMessage, node_id: str) -> int | None:
    newer = session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.kind == OutboxKind.CHAIN,
            OutboxMessage.subject_id == node_id,
            OutboxMessage.id > msg.id,
        )
    ).all()
    for row in newer:
        payload = row.payload or {}
        if payload.get("action") in NODE_ACTIONS and payload.get("node_id") == node_id:
            return row.id
    return None


@dataclass
class MessageContext:
    """What the relay reads from the database before touching the chain (in a short transaction:
    no database lock is held while a transaction is being mined)."""

    newer_row_id: int | None = None
    pending_tx_hash: str | None = None


def load_message_context(session: Session, msg: OutboxMessage) -> MessageContext:
    payload = msg.payload or {}
    ctx = MessageContext(pending_tx_hash=_pending_tx_hash(session, msg.id))
    if payload.get("action") in NODE_ACTIONS and payload.get("node_id"):
        ctx.newer_row_id = _superseded_by_newer(session, msg, payload["node_id"])
    return ctx


def execute_message(client: ChainClient, msg: OutboxMessage, ctx: MessageContext) -> ActionOutcome:
    payload = msg.payload or {}
    action = payload.get("action")
    handler = ACTIONS.get(action)
    if handler is None:
        raise BadChainMessage(f"unknown chain action {action!r}")
    if ctx.newer_row_id is not None:
        return ActionOutcome("superseded", f"outbox row {ctx.newer_row_id} states this node's newer on-chain state")
    pending = ctx.pending_tx_hash
    if pending:
        # A previous attempt sent a transaction but never saw its receipt: settle it first so the
        # retry does not send a second one.
        try:
            known = client.w3.eth.get_transaction(pending) is not None
        except TransactionNotFound:
            known = False  # dropped from the mempool: the on-chain check below decides
        except Exception as exc:
            raise ChainUnavailable(f"chain RPC failed while looking up {pending}: {exc}", tx_hash=pending) from exc
        if known:
            try:
                client.wait_for_receipt(pending)
            except TransactionReverted:
                pass  # the on-chain check below decides
    return handler(client, payload)


def _apply_success(session: Session, msg: OutboxMessage, delivered: Delivered) -> None:
    outcome = delivered.outcome
    payload = msg.payload or {}
    action = payload.get("action")
    now = utcnow()
    if action == "register_node" and outcome in ("mined", "already_done"):
        node = session.get(Node, payload.get("node_id"))
        if node is not None:
            node.chain_registered_at = node.chain_registered_at or now
    elif action == "deregister_node" and outcome in ("mined", "already_done"):
        node = session.get(Node, payload.get("node_id"))
        if node is not None:
            node.chain_registered_at = None
    elif action == "publish_root":
        _update_epoch_from_row(session, msg)
    elif action == "slash_stake":
        receipt: TxReceipt | None = delivered.evidence
        record_slash_result(session, payload, ok=True, detail=dict(delivered.result) | (
            {"tx_hash": receipt.tx_hash} if receipt else {}))


def _slash_failed(session: Session, payload: dict, error: str) -> None:
    record_slash_result(session, payload, ok=False, detail={"error": error})


def _update_epoch_from_row(session: Session, msg: OutboxMessage) -> None:
    from noderr_core.rewards.tree import apply_outbox_state

    epoch_date = (msg.payload or {}).get("epoch_date")
    if not epoch_date:
        return
    epoch = session.scalar(select(RewardEpoch).where(RewardEpoch.epoch_date == date.fromisoformat(epoch_date)))
    if epoch is None or epoch.merkle_root != (msg.payload or {}).get("root"):
        return  # the epoch was recomputed to another root since; that root has its own row
    apply_outbox_state(epoch, msg)


def _subject(payload: dict) -> str | None:
    return payload.get("node_id") or payload.get("epoch_date")


class ChainDeliveryFailed(DeliveryFailed):
    """A failed chain action, with what the chain transaction log records about it."""

    def __init__(self, error: str, *, retryable: bool, action: str, reason: str,
                 outcome: str | None = None, tx_hash: str | None = None, detail: dict | None = None):
        super().__init__(error, retryable=retryable, detail=detail)
        self.action, self.reason, self.outcome, self.tx_hash = action, reason, outcome, tx_hash


class ChainHandler(OutboxHandler):
    """Executes chain rows; `client=None` builds one from the settings when rows are due."""

    kind = OutboxKind.CHAIN
    lock_seconds = 300.0
    default_limit = 20

    def __init__(self, settings: Settings, *, client: ChainClient | None = None):
        self.settings = settings
        self.client = client
        self._client_error: str | None = None

    @contextmanager
    def batch(self) -> Iterator[None]:
        if self.client is None:
            try:
                self.client = ChainClient.from_settings(self.settings)
            except ChainNotDeployed as exc:
                self._client_error = str(exc)  # every row is retried later with this reason
        yield

    def describe(self, msg: OutboxMessage) -> dict:
        return {"action": str((msg.payload or {}).get("action"))}

    def deliver(self, session_factory: SessionFactory, msg: OutboxMessage) -> Delivered:
        action = str((msg.payload or {}).get("action"))
        with session_factory() as session:
            ctx = load_message_context(session, msg)
            session.commit()
        try:
            if self.client is None:
                raise ChainUnavailable(self._client_error or "no chain client")
            outcome = execute_message(self.client, msg, ctx)
        except (BadChainMessage, TransactionReverted) as exc:
            reverted = isinstance(exc, TransactionReverted)
            reason = exc.reason if reverted else str(exc)
            tx_hash = exc.tx_hash if reverted else None
            error = f"{action} reverted: {reason}" if reverted else f"{action} rejected: {reason}"
            log.warning("chain outbox %s (%s) failed permanently: %s", msg.id, msg.idempotency_key, error)
            raise ChainDeliveryFailed(error, retryable=False, action=action, reason=reason,
                                      outcome="reverted" if reverted else "invalid", tx_hash=tx_hash,
                                      detail={"tx_hash": tx_hash} if tx_hash else {}) from exc
        except ChainUnavailable as exc:
            log.info("chain outbox %s will be retried: %s", msg.id, exc)
            raise ChainDeliveryFailed(str(exc), retryable=True, action=action, reason=str(exc),
                                      detail={"pending_tx_hash": exc.tx_hash} if exc.tx_hash else {}
                                      ) from exc
        return Delivered(outcome.outcome, outcome.result(), evidence=outcome.receipt)

    def on_success(self, session: Session, row: OutboxMessage, delivered: Delivered) -> None:
        payload = row.payload or {}
        receipt: TxReceipt | None = delivered.evidence
        session.add(ChainTransaction(
            outbox_id=row.id, action=str(payload.get("action")), subject=_subject(payload),
            outcome=delivered.outcome,
            tx_hash=receipt.tx_hash if receipt else None,
            block_number=receipt.block_number if receipt else None,
            gas_used=receipt.gas_used if receipt else None,
        ))
        _apply_success(session, row, delivered)

    def on_failure(self, session: Session, row: OutboxMessage, failure: DeliveryFailed) -> None:
        payload = row.payload or {}
        action = str(payload.get("action"))
        if isinstance(failure, ChainDeliveryFailed) and failure.outcome is not None:
            session.add(ChainTransaction(outbox_id=row.id, action=action[:32], subject=_subject(payload),
                                         outcome=failure.outcome, tx_hash=failure.tx_hash,
                                         revert_reason=failure.reason))
        if action == "publish_root":
            _update_epoch_from_row(session, row)
        elif action == "slash_stake" and row.status == "failed":
            _slash_failed(session, payload, failure.error)
