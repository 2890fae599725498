"""The node's HTTP client for the control plane (`/v1/...`), with typed errors and backoff.

Every call authenticates with `Authorization: Bearer <NODERR_NODE_API_KEY>`. Failures become a
`ControlPlaneError` with a short `kind` (auth, server, unreachable, protocol, not_found) and the
server's own message, so the loops calling it can log one clear line and back off instead of
crashing.
"""

from __future__ import annotations

import logging
import random
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from node_service import AGENT_VERSION
from noderr_protocol.work import (
    HeartbeatAck,
    HeartbeatIn,
    LeaseExtendRequest,
    LeaseExtendResponse,
    LeaseRequest,
    LeaseResponse,
    ReleaseRequest,
    ReleaseResponse,
    ResultBatch,
    ResultBatchAck,
)

log = logging.getLogger("noderr.node.control_plane")
T = TypeVar("T", bound=BaseModel)


class ControlPlaneError(RuntimeError):
    """`retry_after` is the server's `Retry-After` (seconds) when it shed the request (429/503)."""

    def __init__(self, call: str, kind: str, message: str, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.call = call
        self.kind = kind
        self.status = status
        self.retry_after = retry_after


# A server asking for more than this is treated as asking for this (a misconfigured proxy must not
# park the fleet for hours).
MAX_RETRY_AFTER_SECONDS = 300.0


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` in seconds (the delta-seconds form; an HTTP date is ignored), capped."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


class Backoff:
    """Capped exponential backoff with full jitter (AWS architecture blog's recommendation)."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None):
        self.initial = initial
        self.maximum = maximum
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self, retry_after: float | None = None) -> float:
        """The next wait; never shorter than the server's `Retry-After`, which is spread by up to
        +50 % so that a fleet the server shed at the same moment does not come back at once."""
        self.failures += 1
        ceiling = min(self.maximum, self.initial * 2 ** (self.failures - 1))
        delay = self._rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, self._rng.uniform(retry_after, retry_after * 1.5))
        return delay

    def reset(self) -> None:
        self.failures = 0


def jittered(interval: float, jitter: float, rng: random.Random | None = None) -> float:
    """`interval` ± `jitter` (a fraction), so a fleet of nodes does not poll in lockstep."""
    rng = rng or random
    return max(0.05, interval * (1 + rng.uniform(-jitter, jitter)))


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])[:500]
    return str(body)[:300]


class ControlPlaneClient:
    def __init__(self, base_url: str, api_key: str, *, timeout: float,
                 transport: httpx.AsyncBaseTransport | None = None):
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}",
                     "User-Agent": f"noderr-node/{AGENT_VERSION}"},
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _call(self, call: str, method: str, path: str, body: BaseModel | None = None) -> Any:
        try:
            resp = await self._client.request(
                method, path, json=body.model_dump(mode="json") if body is not None else None)
        except httpx.TimeoutException as exc:
            raise ControlPlaneError(call, "unreachable",
                                    f"{call}: control plane timed out ({exc!r})") from exc
        except httpx.HTTPError as exc:
            raise ControlPlaneError(
                call, "unreachable",
                f"{call}: control plane at {self._client.base_url} is unreachable ({exc!r})") from exc
        if resp.status_code in (401, 403):
            raise ControlPlaneError(
                call, "auth", f"{call}: the control plane refused this node's key "
                f"(HTTP {resp.status_code}: {_detail(resp)})", resp.status_code)
        if resp.status_code == 404:
            raise ControlPlaneError(call, "not_found",
                                    f"{call}: {path} not found (HTTP 404: {_detail(resp)})", 404)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise ControlPlaneError(call, "server", f"{call}: control plane error HTTP "
                                    f"{resp.status_code}: {_detail(resp)}", resp.status_code,
                                    retry_after=parse_retry_after(resp.headers.get("retry-after")))
        if resp.status_code >= 400:
            raise ControlPlaneError(call, "protocol", f"{call}: request refused HTTP "
                                    f"{resp.status_code}: {_detail(resp)}", resp.status_code)
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise ControlPlaneError(call, "protocol", f"{call}: response is not JSON") from exc

    @staticmethod
    def _parse(call: str, model: type[T], data: Any) -> T:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise ControlPlaneError(call, "protocol",
                                    f"{call}: response does not match the protocol: {exc}") from exc

    async def beacon(self) -> dict[str, Any]:
        """The raw signed beacon (verified by the caller over the exact bytes received)."""
        data = await self._call("beacon", "GET", "/v1/models/beacon")
        if not isinstance(data, dict):
            raise ControlPlaneError("beacon", "protocol", "beacon: response is not an object")
        return data

    async def lease(self, body: LeaseRequest) -> LeaseResponse:
        return self._parse("lease", LeaseResponse,
                           await self._call("lease", "POST", "/v1/tasks/lease", body))

    async def extend(self, body: LeaseExtendRequest) -> LeaseExtendResponse:
        return self._parse("extend", LeaseExtendResponse,
                           await self._call("extend", "POST", "/v1/tasks/lease/extend", body))

    async def submit_results(self, body: ResultBatch) -> ResultBatchAck:
        return self._parse("results", ResultBatchAck,
                           await self._call("results", "POST", "/v1/tasks/results", body))

    async def release(self, body: ReleaseRequest) -> ReleaseResponse:
        return self._parse("release", ReleaseResponse,
                           await self._call("release", "POST", "/v1/tasks/release", body))

    async def heartbeat(self, body: HeartbeatIn) -> HeartbeatAck:
        return self._parse("heartbeat", HeartbeatAck,
                           await self._call("heartbeat", "POST", "/v1/nodes/heartbeat", body))
