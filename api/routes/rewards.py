"""Public reward routes: the per-epoch JSON document, a wallet's claim, and the operator's page.

Everything here is public by design: the shares and leaves let anyone rebuild and check the
on-chain root, and a claim only ever pays the wallet in its leaf.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import date
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path as PathParam, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.deps import ErrorDetail, ReadSessionDep, SettingsDep
from noderr_core.chain.addresses import ChainNotDeployed, load_addresses
from noderr_core.rewards.claims import (
    InvalidWallet,
    PublishedTrees,
    epoch_document,
    operator_earnings,
    wallet_claim,
)
from noderr_core.settings import Settings

router = APIRouter(tags=["rewards"])
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
_chain_lock = threading.Lock()
# A wallet's on-chain `claimed` amount only grows, up to the cumulative amount of the published
# root. Once it reached that amount it cannot change until a new root raises the cumulative, so it
# is kept per (wallet, cumulative) without expiry: a fully claimed wallet costs no RPC however
# often it is asked. A wallet with something left to claim is read on every request (one RPC, the
# caller's own row), so the page shows a claim the moment it is mined.
CLAIMED_CACHE_SIZE = 10_000


class ClaimedReads:
    """Bounded cache of final `claimed(wallet)` chain reads (one per API process)."""

    def __init__(self, size: int = CLAIMED_CACHE_SIZE):
        self._size = size
        self._values: OrderedDict[tuple[str, int], int] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, wallet: str, cumulative: int, read) -> int | None:
        key = (wallet, cumulative)
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        try:
            value = read()
        except Exception:
            return None  # the chain is unreachable: not cached, the rest of the document holds
        if value >= cumulative:
            with self._lock:
                self._values[key] = value
                while len(self._values) > self._size:
                    self._values.popitem(last=False)
        return value


def _read_caches(state) -> tuple[PublishedTrees, ClaimedReads]:
    with _chain_lock:
        if getattr(state, "rewards_read_caches", None) is None:
            state.rewards_read_caches = (PublishedTrees(), ClaimedReads())
        return state.rewards_read_caches


def _invalid_path_parameter(name: str, value: str, message: str) -> RequestValidationError:
    # A 422 in FastAPI's documented shape ({"detail": [{"loc", "msg", "type"}]}, the
    # HTTPValidationError schema of /openapi.json) that still carries our actionable message; a
    # plain HTTPException(422, detail="…") would contradict the published schema.
    return RequestValidationError(
        [{"type": "value_error", "loc": ("path", name), "msg": message, "input": value}]
    )


def _parse_epoch(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _invalid_path_parameter(
            "epoch_date", value,
            f"{value!r} is not an epoch date: use YYYY-MM-DD (UTC day), e.g. 2026-11-24",
        ) from None


# Documented in /openapi.json; checked by the handlers (with clearer messages than a bare
# pattern failure, and the wallet check also verifies the EIP-55 checksum of mixed-case input).
EpochDateParam = Annotated[str, PathParam(description="UTC day, YYYY-MM-DD",
                                          json_schema_extra={"format": "date"})]
WalletParam = Annotated[str, PathParam(description="0x address (EIP-55 checksum if mixed case)",
                                       json_schema_extra={"pattern": "^0x[0-9a-fA-F]{40}$"})]


def _chain_view(request: Request, settings: Settings):
    """(addresses, client) for on-chain reads, created once per app on first use; (None, None)
    when the contracts are not deployed."""
    state = request.app.state
    with _chain_lock:
        if getattr(state, "rewards_chain", None) is None:
            from noderr_core.chain.client import ChainClient, make_web3

            try:
                addresses = load_addresses(settings.resolved_chain_addresses_file)
            except ChainNotDeployed:
                return None, None
            client = ChainClient(make_web3(settings.chain_rpc_url, timeout=2.0),
                                 settings.chain_signer_key.get_secret_value(), addresses)
            state.rewards_chain = (addresses, client)
        return state.rewards_chain


def _claim_with_chain_state(request: Request, session, settings: Settings, wallet: str) -> dict:
    addresses, client = _chain_view(request, settings)
    trees, claimed_reads = _read_caches(request.app.state)
    doc = wallet_claim(
        session, wallet,
        distributor=addresses.reward_distributor if addresses else None,
        chain_id=addresses.chain_id if addresses else None,
        trees=trees,
    )
    doc["claimed_onchain"] = None
    doc["claimable_now"] = None
    if client is not None:
        claimed = claimed_reads.get(
            doc["wallet"], int(doc["cumulative_amount"]),
            lambda: client.read(client.distributor().functions.claimed(doc["wallet"])),
        )
        if claimed is not None:
            doc["claimed_onchain"] = str(claimed)
            doc["claimable_now"] = str(max(0, int(doc["cumulative_amount"]) - claimed))
    return doc


@router.get("/v1/rewards/epochs/{epoch_date}",
            responses={404: {"model": ErrorDetail, "description": "epoch not computed"}})
def get_epoch_document(epoch_date: EpochDateParam, session: ReadSessionDep) -> dict:
    """Pool, scoring, every node's share with its reason, and the cumulative leaves of the epoch."""
    day = _parse_epoch(epoch_date)
    doc = epoch_document(session, day)
    if doc is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            detail=f"epoch {day.isoformat()} has not been computed (epochs are computed "
                                   "daily after midnight UTC)")
    return doc


@router.get("/v1/rewards/claims/{wallet}")
def get_wallet_claim(wallet: WalletParam, request: Request, session: ReadSessionDep,
                     settings: SettingsDep) -> dict:
    """The wallet's cumulative amount in the latest on-chain root, its proof and claim call data."""
    try:
        return _claim_with_chain_state(request, session, settings, wallet)
    except InvalidWallet as exc:
        raise _invalid_path_parameter("wallet", wallet, str(exc)) from None


def format_tokens(amount: str | int | None, decimals: int = 18) -> str:
    if amount is None:
        return "—"
    value = int(amount)
    whole, frac = divmod(value, 10**decimals)
    frac_s = f"{frac:0{decimals}d}"[:6].rstrip("0")
    return f"{whole:,}" + (f".{frac_s}" if frac_s else "")


templates.env.filters["tokens"] = format_tokens


@router.get("/rewards/{wallet}", response_class=HTMLResponse, include_in_schema=False)
def operator_rewards_page(wallet: str, request: Request, session: ReadSessionDep, settings: SettingsDep):
    try:
        earnings = operator_earnings(session, wallet)
        claim = _claim_with_chain_state(request, session, settings, wallet)
    except InvalidWallet as exc:
        return templates.TemplateResponse(
            request, "rewards/invalid.html", {"message": str(exc)},
            status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    return templates.TemplateResponse(request, "rewards/operator.html", {
        "earnings": earnings, "claim": claim,
    })
