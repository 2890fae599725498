"""A request body must arrive in time: a slow or stalled upload cannot hold an admitted slot.

Why: admission control (api/admission.py) bounds how many requests a worker runs at once. A client
that sends its headers and then trickles its body (or sends nothing) holds one of those slots for
as long as it likes: measured before this guard, six such connections against a worker admitting
four made every other request wait and get 503 for as long as they stayed open (a slow-body
"slowloris"; 16 idle connections per worker did the same to the default configuration). uvicorn has
no request-body timeout, and a reverse proxy that streams bodies (Caddy does by default) passes the
trickle on.

Rule (mod_reqtimeout's, with a minimum rate): the body of an admitted request must be received
within `timeout_seconds`, plus one second for every `min_rate` bytes received so far, so a large
upload at a reasonable rate always fits and a trickle cannot last longer than its own bytes pay
for. When the time runs out the app is told the client left, its answer is dropped unless it had
started, and the client gets `408` with `Connection: close` (uvicorn closes the connection, the slot
is free). Only the body is timed: once it is complete, the app may wait on `receive` (for a
disconnect) as long as it likes.

Pure ASGI, inside admission control (the clock starts when the request is admitted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableMapping
from typing import Any

from api.refusable_body import ASGIApp, RefuseBody, run_with_refusable_body
from api.request_guard import send_json


def too_slow_message(timeout_seconds: float, min_rate: int) -> str:
    return (f"request body not received in time: send it within {timeout_seconds:g}s plus 1s per "
            f"{min_rate} bytes (a slow link: send smaller batches)")


class BodyDeadlineMiddleware:
    def __init__(self, app: ASGIApp, *, timeout_seconds: float, min_rate: int):
        self.app = app
        self.timeout_seconds = timeout_seconds
        self.min_rate = min_rate

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_seconds
        complete = False

        async def timed_receive() -> dict[str, Any]:
            nonlocal deadline, complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                raise RefuseBody from None
            if message["type"] == "http.request":
                deadline += len(message.get("body", b"")) / self.min_rate
                complete = not message.get("more_body", False)
            return message

        async def refuse(send_: Callable) -> None:
            await send_json(send_, 408, too_slow_message(self.timeout_seconds, self.min_rate),
                            [(b"connection", b"close")])

        await run_with_refusable_body(self.app, scope, timed_receive, send, refuse=refuse)
