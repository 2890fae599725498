"""Run an ASGI app on a request body that may be refused while it streams in.

Shared by the body-size guard (api/request_guard.py), the NUL guard (api/input_guard.py) and the
body deadline (api/body_deadline.py): each chunk the app reads is shown to `should_refuse`, and a
`receive` that raises `RefuseBody` refuses too; on the first refusal the app is told the client
left (not an exception: FastAPI turns any error while reading a body into its own 400), its answer
is dropped unless it had already started, and `refuse(send)` answers instead. Nothing is buffered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

ASGIApp = Callable[[MutableMapping[str, Any], Callable, Callable], Awaitable[None]]


class RefuseBody(Exception):
    """Raised by a `receive` given to `run_with_refusable_body`: refuse the request there."""


async def run_with_refusable_body(
    app: ASGIApp,
    scope: MutableMapping[str, Any],
    receive: Callable,
    send: Callable,
    *,
    should_refuse: Callable[[bytes], bool] | None = None,
    refuse: Callable[[Callable], Awaitable[None]],
) -> None:
    refused = False  # a chunk was refused: the app sees a disconnect from then on
    started = False  # the app's response started (then it can no longer be replaced)

    async def filtered_receive():
        nonlocal refused
        if refused:
            return {"type": "http.disconnect"}
        try:
            message = await receive()
        except RefuseBody:
            refused = True
            return {"type": "http.disconnect"}
        if (message["type"] == "http.request" and should_refuse is not None
                and should_refuse(message.get("body", b""))):
            refused = True
            return {"type": "http.disconnect"}
        return message

    async def guarded_send(message):
        nonlocal started
        if refused and not started:
            return
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, filtered_receive, guarded_send)
    except Exception:
        if not refused or started:
            raise
    if refused and not started:
        await refuse(send)
