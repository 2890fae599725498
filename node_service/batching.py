"""Dynamic micro-batching of concurrent inference requests, as Triton's dynamic batcher does.

Requests are queued; one asyncio task forms batches of up to `max_batch_rows` rows, waiting at
most `max_delay` for more after the first arrives (0 = take only what is already queued), and while
all `concurrency` execution slots are busy the queue keeps filling, so batches grow with load.
Each batch runs as one `session.run` in a worker thread; outputs are split back per request.
Only requests validated against the same loaded model are ever batched together, so a model swap
never mixes versions inside a batch.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from node_service.runtime import LoadedModel
from node_service.signature import encode_output

log = logging.getLogger("noderr.node.batching")


class BatchObserver(Protocol):
    def observe_batch(self, model: LoadedModel, rows: int, requests: int, seconds: float) -> None: ...


class InferenceRejected(ValueError):
    """The model refused these (schema-valid) inputs; a client error."""


class InferenceFailed(RuntimeError):
    """The runtime failed for a reason that is not the client's input."""


class BatcherStopped(RuntimeError):
    pass


@dataclass(eq=False)
class _Request:
    model: LoadedModel
    feeds: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)


def _split(model: LoadedModel, outputs: dict[str, Any], sizes: list[int]) -> list[dict[str, Any]]:
    total = sum(sizes)
    for name, value in outputs.items():
        if len(value) != total:
            raise InferenceFailed(
                f"output {name!r} has {len(value)} rows for {total} input rows: the model is not "
                "batchable along its first axis")
    results, start = [], 0
    for size in sizes:
        results.append({name: encode_output(value[start:start + size])
                        for name, value in outputs.items()})
        start += size
    return results


def run_batch(model: LoadedModel, feeds_list: list[dict[str, np.ndarray]],
              sizes: list[int]) -> list[dict[str, Any]]:
    """One session.run over the concatenated rows; returns JSON-ready outputs per request."""
    if len(feeds_list) == 1:
        feeds = feeds_list[0]
    else:
        feeds = {name: np.concatenate([f[name] for f in feeds_list], axis=0)
                 for name in feeds_list[0]}
    try:
        outputs = model.run(feeds)
    except InvalidArgument as exc:
        raise InferenceRejected(f"the model refused the inputs: {exc}") from exc
    except Exception as exc:
        raise InferenceFailed(f"inference failed: {exc}") from exc
    return _split(model, outputs, sizes)


class DynamicBatcher:
    def __init__(self, *, max_batch_rows: int, max_delay_s: float, concurrency: int,
                 observer: BatchObserver | None = None):
        self.max_batch_rows = max_batch_rows
        self.max_delay_s = max_delay_s
        self.concurrency = concurrency
        self.observer = observer
        self._queue: asyncio.Queue[_Request] | None = None
        self._deferred: collections.deque[_Request] = collections.deque()
        self._slots: asyncio.Semaphore | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop_task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._stopped = False

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency,
                                            thread_name_prefix="noderr-infer")
        self._loop_task = asyncio.create_task(self._form_batches(), name="noderr-batcher")

    async def stop(self) -> None:
        """Finishes running batches; requests still queued fail with BatcherStopped."""
        self._stopped = True
        if self._loop_task:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        pending = list(self._deferred)
        while self._queue is not None and not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for req in pending:
            if not req.future.done():
                req.future.set_exception(BatcherStopped("the node is shutting down"))
        if self._executor:
            self._executor.shutdown(wait=True)

    async def infer(self, model: LoadedModel, feeds: dict[str, np.ndarray],
                    rows: int) -> dict[str, Any]:
        if self._stopped or self._queue is None:
            raise BatcherStopped("the node is shutting down")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(model, feeds, rows, future))
        return await future

    async def _next(self, timeout: float | None) -> _Request | None:
        assert self._queue is not None
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            if timeout is not None and timeout <= 0:
                return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    def _fill(self, batch: list[_Request], rows: int) -> int:
        """Adds queued compatible requests without waiting; returns the new row count."""
        assert self._queue is not None
        first = batch[0]
        while rows < self.max_batch_rows:
            try:
                req = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            if req.model is not first.model or rows + req.rows > self.max_batch_rows:
                self._deferred.append(req)
                if req.model is first.model:
                    break
                continue
            batch.append(req)
            rows += req.rows
        return rows

    async def _form_batches(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._slots is not None
        while True:
            first = self._deferred.popleft() if self._deferred else await self._next(None)
            assert first is not None
            batch, rows = [first], first.rows
            if first.model.batchable:
                rows = self._fill(batch, rows)
                deadline = loop.time() + self.max_delay_s
                while rows < self.max_batch_rows and self.max_delay_s > 0:
                    req = await self._next(deadline - loop.time())
                    if req is None:
                        break
                    if req.model is not first.model or rows + req.rows > self.max_batch_rows:
                        self._deferred.append(req)
                        if req.model is first.model:
                            break
                        continue
                    batch.append(req)
                    rows += req.rows
            await self._slots.acquire()
            if first.model.batchable:
                # While we waited for a slot the queue kept filling: take those rows too.
                rows = self._fill(batch, rows)
            task = asyncio.create_task(self._execute(batch, rows))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _execute(self, batch: list[_Request], rows: int) -> None:
        assert self._slots is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        model = batch[0].model
        started = time.perf_counter()
        try:
            try:
                results = await loop.run_in_executor(
                    self._executor, run_batch, model, [r.feeds for r in batch],
                    [r.rows for r in batch])
            except InferenceRejected:
                if len(batch) == 1:
                    raise
                # One request's values broke the batch: run each alone so only it fails.
                results = []
                for req in batch:
                    try:
                        results.extend(await loop.run_in_executor(
                            self._executor, run_batch, model, [req.feeds], [req.rows]))
                    except (InferenceRejected, InferenceFailed) as exc:
                        results.append(exc)
            if self.observer is not None:
                self.observer.observe_batch(model, rows, len(batch), time.perf_counter() - started)
            for req, result in zip(batch, results, strict=True):
                if req.future.done():
                    continue  # the client went away
                if isinstance(result, Exception):
                    req.future.set_exception(result)
                else:
                    req.future.set_result(result)
        except Exception as exc:
            if not isinstance(exc, (InferenceRejected, InferenceFailed)):
                log.exception("batch of %d rows on %s v%s failed", rows, model.name, model.version)
                exc = InferenceFailed(f"inference failed: {exc}")
            for req in batch:
                if not req.future.done():
                    req.future.set_exception(exc)
        finally:
            self._slots.release()
