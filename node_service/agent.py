"""The running node: wires settings, cache, registry, batcher, sync, worker and heartbeats
together and owns their lifecycle (start in the app's lifespan, graceful stop on SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging

from node_service.batching import DynamicBatcher
from node_service.cache import ModelCache
from node_service.control_plane import ControlPlaneClient
from node_service.heartbeat import HeartbeatReporter
from node_service.metrics import NodeMetrics
from node_service.runtime import ModelRegistry
from node_service.settings import NodeSettings
from node_service.sync import ModelSync
from node_service.worker import TaskWorker

log = logging.getLogger("noderr.node")


class NodeAgent:
    def __init__(self, settings: NodeSettings):
        self.settings = settings
        self.metrics = NodeMetrics()
        self.registry = ModelRegistry()
        self.cache = ModelCache(settings.model_cache_dir)
        self.client = ControlPlaneClient(settings.api_url,
                                         settings.node_api_key.get_secret_value(),
                                         timeout=settings.node_http_timeout_seconds)
        self.batcher = DynamicBatcher(
            max_batch_rows=settings.node_max_batch_rows,
            max_delay_s=settings.node_max_batch_delay_ms / 1000,
            concurrency=settings.node_batch_concurrency,
            observer=self.metrics,
        )
        self.sync = ModelSync(settings, self.client, self.registry, self.cache, self.metrics)
        self.worker = TaskWorker(settings, self.client, self.registry, self.batcher, self.metrics)
        self.heartbeats = HeartbeatReporter(settings, self.client, self.registry, self.metrics)
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    @property
    def ready(self) -> bool:
        """Serving verified models: synced in this process, or restored from the verified cache."""
        return bool(self.registry.snapshot()) and (self.sync.synced or self.sync.loaded_from_cache)

    async def start(self) -> None:
        s = self.settings
        log.info("node %s starting: control plane %s, cache %s, %d intra-op thread(s), "
                 "batches of up to %d rows / %.1f ms, execution provider %s (%s)", s.node_id,
                 s.api_url, s.model_cache_dir, s.node_intra_op_threads, s.node_max_batch_rows,
                 s.node_max_batch_delay_ms, self.heartbeats.preferred_provider() or "unavailable",
                 s.node_execution_provider)
        loaded = await asyncio.to_thread(self.sync.load_cached)
        if loaded:
            log.info("serving %d cached model(s) before the first sync", loaded)
        await self.batcher.start()
        self._tasks = [
            asyncio.create_task(self.sync.run(self.stopping), name="noderr-model-sync"),
            asyncio.create_task(self.heartbeats.run(self.stopping), name="noderr-heartbeat"),
        ]
        if s.node_worker_enabled:
            self._tasks.append(asyncio.create_task(self.worker.run(self.stopping),
                                                   name="noderr-task-worker"))

    def request_stop(self) -> None:
        """Called on SIGTERM: stop leasing right away, while the HTTP server drains."""
        if not self.stopping.is_set():
            log.info("stop requested: no new leases; finishing or releasing in-flight tasks")
            self.stopping.set()

    async def stop(self) -> None:
        self.request_stop()
        # The worker needs the batcher to finish its tasks, so it stops first.
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for task, result in zip(self._tasks, results, strict=True):
            if isinstance(result, Exception):
                log.error("%s ended with %r", task.get_name(), result)
        await self.batcher.stop()
        await self.client.aclose()
        log.info("node %s stopped cleanly", self.settings.node_id)
