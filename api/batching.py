"""Group calls: requests of one API process hand small database jobs to one batcher, which runs
every job that arrived while its previous batch was running as one batch in one threadpool call.

Why: a heartbeat or a node-key lookup is tiny, so done one per transaction most of its cost is the
transaction — a threadpool round trip, a session, a statement or two and a commit per request
(issue 15 measured 4.7 ms of API CPU per heartbeat). Batched, those costs are paid once per batch.

Rules:
- No added latency when idle: a job arriving at an idle batcher runs at once; batches form only
  while a batch is running (the busier the process, the larger the batch).
- Bounded: at most `max_pending` jobs wait; beyond that `submit` raises `BatcherFull` and the
  request is shed (503 + Retry-After), never queued without bound. A batch holds at most
  `max_batch` jobs.
- One failure fails one request: `run_batch` returns one outcome per job (a result or an
  exception); an exception escaping it fails every job of that batch only.
- `drain()` (the app's lifespan, at shutdown) finishes what is pending and refuses new jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio.to_thread

Job = TypeVar("Job")
Result = TypeVar("Result")


class BatcherFull(Exception):
    """Too many jobs are waiting (or the process is shutting down): shed the request."""


class GroupCall(Generic[Job, Result]):
    def __init__(self, run_batch: Callable[[list[Job]], list[Result | BaseException]], *,
                 max_pending: int, max_batch: int, what: str):
        self._run_batch = run_batch
        self.max_pending = max_pending
        self.max_batch = max_batch
        self.what = what  # for the shed message: "heartbeats", "node key lookups"
        self._pending: list[tuple[Job, asyncio.Future]] = []
        self._runner: asyncio.Task | None = None
        self._closed = False
        self.running = 0  # jobs in the batch being run now
        self.batches = 0  # batches run since start (read by tests)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def submit(self, job: Job) -> Result:
        """Run `job` in the next batch; returns its result once the batch is done (committed)."""
        if self._closed:
            raise BatcherFull("the API process is shutting down")
        if len(self._pending) >= self.max_pending:
            raise BatcherFull(f"{len(self._pending)} {self.what} are already waiting")
        future = asyncio.get_running_loop().create_future()
        self._pending.append((job, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run_while_pending())
        # shield: a client that disconnects does not cancel its batch for the others.
        return await asyncio.shield(future)

    async def drain(self) -> None:
        """Finish everything pending, then refuse new jobs (call at shutdown)."""
        self._closed = True
        if self._runner is not None:
            await self._runner

    async def _run_while_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            self.running = len(batch)
            try:
                outcomes = await anyio.to_thread.run_sync(self._run_batch, [job for job, _ in batch])
            except asyncio.CancelledError:  # the loop is going away: no request waits forever
                for _job, future in batch + self._pending:
                    future.cancel()
                self._pending = []
                raise
            except Exception as exc:  # noqa: BLE001 - handed to every request of the batch
                outcomes = [exc] * len(batch)
            finally:
                self.running = 0
            for (_job, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                    future.exception()  # retrieved: a request that went away leaves no warning
                else:
                    future.set_result(outcome)
            self.batches += 1


def one_by_one_on_failure(run: Callable[[list[Job]], list[Any]],
                          job_fault: Callable[[Exception], bool]) -> Callable[[list[Job]], list[Any]]:
    """`run` over the whole batch; if that raises an error that `job_fault` says one job may have
    caused, over each job alone, so only failing jobs fail. Any other error (the database is
    unreachable) fails the batch at once instead of once per job."""

    def run_batch(jobs: list[Job]) -> list[Any]:
        try:
            return run(jobs)
        except Exception as exc:  # noqa: BLE001 - retried job by job below, or handed to every job
            if len(jobs) == 1 or not job_fault(exc):
                return [exc] * len(jobs)
        outcomes: list[Any] = []
        for job in jobs:
            try:
                outcomes.extend(run([job]))
            except Exception as exc:  # noqa: BLE001 - handed to that job's request
                outcomes.append(exc)
        return outcomes

    return run_batch
