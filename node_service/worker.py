"""The task worker: leases inference tasks in batches, runs them through the same batched
inference path as /v1/infer, submits results, extends leases that are about to run out, and on
shutdown stops leasing, finishes what it can within the grace period and releases the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from noderr_protocol.work import (
    LeasedTask,
    LeaseExtendRequest,
    LeaseRequest,
    LoadedModel as LeaseModel,
    ReleaseRequest,
    ResultBatch,
    TaskResultIn,
)
from node_service.batching import BatcherStopped, DynamicBatcher, InferenceFailed, InferenceRejected
from node_service.control_plane import Backoff, ControlPlaneClient, ControlPlaneError, jittered
from node_service.metrics import NodeMetrics
from node_service.runtime import ModelRegistry
from node_service.settings import NodeSettings
from node_service.signature import InputError, TooManyRows, validate_inputs

log = logging.getLogger("noderr.node.worker")

SUBMIT_ATTEMPTS = 5


class TaskWorker:
    def __init__(self, settings: NodeSettings, client: ControlPlaneClient, registry: ModelRegistry,
                 batcher: DynamicBatcher, metrics: NodeMetrics):
        self.settings = settings
        self.client = client
        self.registry = registry
        self.batcher = batcher
        self.metrics = metrics
        self.in_flight: dict[str, datetime] = {}  # task id -> lease expiry
        self.last_error: str | None = None
        self.notice: str | None = None  # why the control plane is giving no work, if it says

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(self.settings.node_backoff_initial_seconds,
                          self.settings.node_backoff_max_seconds)
        while not stop.is_set():
            delay = 0.0
            models = self.registry.snapshot()
            if not models:
                delay = self.settings.node_idle_poll_seconds
            else:
                try:
                    lease = await self.client.lease(LeaseRequest(
                        max_tasks=self.settings.node_lease_max_tasks,
                        models=[LeaseModel(name=m.name, version=m.version)
                                for m in models.values()],
                        lease_seconds=self.settings.node_lease_seconds,
                    ))
                    backoff.reset()
                    if lease.notice != self.notice:
                        if lease.notice:
                            log.warning("control plane gives this node no work: %s", lease.notice)
                        else:
                            log.info("control plane is giving this node work again")
                        self.notice = lease.notice
                    if lease.tasks:
                        await self.work(lease.tasks, stop)
                    else:
                        delay = jittered(max(0.05, lease.retry_after_seconds), 0.2)
                except ControlPlaneError as exc:
                    self._report(exc)
                    delay = backoff.next_delay(exc.retry_after)
                    log.warning("task lease: %s; retrying in %.1fs", exc, delay)
                except Exception:  # the worker must never die and leave the node half-running
                    log.exception("task worker failed unexpectedly")
                    delay = backoff.next_delay()
            if delay:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass

    def _report(self, exc: ControlPlaneError) -> None:
        self.last_error = str(exc)
        self.metrics.control_plane_error(exc.call, exc.kind)

    # -- one leased batch ----------------------------------------------------------------------

    async def work(self, tasks: list[LeasedTask], stop: asyncio.Event) -> None:
        for task in tasks:
            self.in_flight[task.task_id] = task.lease_expires_at
        extender = asyncio.create_task(self._extend_leases(), name="noderr-lease-extender")
        runs = {asyncio.create_task(self._run_task(task)): task for task in tasks}
        try:
            pending = set(runs)
            stop_wait = asyncio.create_task(stop.wait())
            while pending and not stop.is_set():
                _, pending = await asyncio.wait(pending | {stop_wait},
                                                return_when=asyncio.FIRST_COMPLETED)
                pending.discard(stop_wait)
            stop_wait.cancel()
            if pending:
                # Shutting down: give in-flight tasks the grace period, then hand the rest back.
                grace = self.settings.node_shutdown_grace_seconds
                log.info("shutdown: finishing %d in-flight task(s) within %.1fs", len(pending), grace)
                if grace > 0:
                    _, pending = await asyncio.wait(pending, timeout=grace)
                for run in pending:
                    run.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            extender.cancel()
        results: list[TaskResultIn] = []
        to_release: list[str] = []
        for run, task in runs.items():
            result = None if run.cancelled() or run.exception() else run.result()
            if result is None:
                to_release.append(task.task_id)
            else:
                results.append(result)
        if results:
            unsubmitted = await self._submit(results, stop)
            to_release.extend(unsubmitted)
        if to_release:
            await self._release(to_release)
        for task in tasks:
            self.in_flight.pop(task.task_id, None)

    async def _run_task(self, task: LeasedTask) -> TaskResultIn | None:
        """A result to submit, or None if the task should go back to the queue."""
        model = self.registry.get(task.model_name)
        if model is None:
            log.warning("task %s needs model %s, which is not loaded: releasing it",
                        task.task_id, task.model_name)
            return None
        started = time.perf_counter()
        try:
            feeds, rows = validate_inputs(
                model.manifest, task.inputs,
                max(self.settings.node_max_request_rows, self.settings.node_max_batch_rows))
            outputs = await self.batcher.infer(model, feeds, rows)
        except (InputError, TooManyRows, InferenceRejected) as exc:
            # The task itself is bad: report it, so the control plane does not hand it out again.
            return TaskResultIn(task_id=task.task_id, model_version=model.version,
                                error=str(exc)[:2000],
                                duration_ms=(time.perf_counter() - started) * 1000)
        except (InferenceFailed, BatcherStopped) as exc:
            log.warning("task %s not run (%s): releasing it", task.task_id, exc)
            return None
        return TaskResultIn(task_id=task.task_id, model_version=model.version, outputs=outputs,
                            duration_ms=(time.perf_counter() - started) * 1000)

    async def _submit(self, results: list[TaskResultIn], stop: asyncio.Event) -> list[str]:
        """Submits results (idempotent server side, so retrying is safe); returns unsent ids."""
        backoff = Backoff(self.settings.node_backoff_initial_seconds,
                          min(10.0, self.settings.node_backoff_max_seconds))
        attempts = 0
        while True:
            attempts += 1
            try:
                ack = await self.client.submit_results(ResultBatch(results=results))
                break
            except ControlPlaneError as exc:
                self._report(exc)
                if exc.kind in ("auth", "protocol") or attempts >= SUBMIT_ATTEMPTS or stop.is_set():
                    log.error("could not submit %d result(s): %s", len(results), exc)
                    self.metrics.task_outcome("unsubmitted", len(results))
                    return [r.task_id for r in results]
                delay = backoff.next_delay(exc.retry_after)
                log.warning("submitting results failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
        by_id = {r.task_id: r for r in results}
        for item in ack.acks:
            result = by_id.get(item.task_id)
            if item.status == "refused":
                log.warning("result for task %s refused: %s", item.task_id, item.reason)
                self.metrics.task_outcome("refused")
            elif result is not None and result.error is not None:
                self.metrics.task_outcome("error")
            elif item.status == "duplicate":
                self.metrics.task_outcome("duplicate")
            else:
                self.metrics.task_outcome("done")
        return []

    async def _release(self, task_ids: list[str]) -> None:
        try:
            resp = await self.client.release(ReleaseRequest(task_ids=task_ids))
            self.metrics.task_outcome("released", len(resp.released))
            log.info("released %d task(s) back to the queue", len(resp.released))
            for tid, reason in resp.refused.items():
                log.warning("release of task %s refused: %s", tid, reason)
        except ControlPlaneError as exc:
            self._report(exc)
            # Their leases expire on the server and they are re-queued then.
            log.error("could not release %d task(s) (%s); they return when their leases expire",
                      len(task_ids), exc)

    async def _extend_leases(self) -> None:
        lease = self.settings.node_lease_seconds
        while True:
            await asyncio.sleep(max(1.0, lease / 4))
            now = datetime.now(UTC)
            due = [tid for tid, expires in self.in_flight.items()
                   if (expires - now).total_seconds() < lease / 2]
            if not due:
                continue
            try:
                resp = await self.client.extend(LeaseExtendRequest(task_ids=due[:512],
                                                                   lease_seconds=lease))
            except ControlPlaneError as exc:
                self._report(exc)
                log.warning("lease extension failed: %s", exc)
                continue
            if resp.extended:
                log.info("extended %d lease(s) to %s", len(resp.extended),
                         resp.lease_expires_at.isoformat())
            for tid in resp.extended:
                if tid in self.in_flight:
                    self.in_flight[tid] = resp.lease_expires_at
            for tid, reason in resp.refused.items():
                log.warning("lease for task %s not extended: %s", tid, reason)
