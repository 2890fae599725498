"""Heartbeats: periodic telemetry to the control plane (uptime, versions, counts, latency, CPU,
memory). The control plane marks the node online on the first one and offline when they stop.
"""

from __future__ import annotations

import asyncio
import logging

from noderr_protocol.work import HeartbeatIn
from node_service import AGENT_VERSION
from node_service.control_plane import Backoff, ControlPlaneClient, ControlPlaneError, jittered
from node_service.metrics import NodeMetrics
from node_service.runtime import ModelLoadError, ModelRegistry, execution_providers
from node_service.settings import NodeSettings

log = logging.getLogger("noderr.node.heartbeat")


def build_heartbeat(metrics: NodeMetrics, registry: ModelRegistry,
                    preferred_provider: str | None = None) -> HeartbeatIn:
    p50, p95 = metrics.latency_percentiles_ms()
    return HeartbeatIn(
        uptime_seconds=metrics.uptime_seconds(),
        model_versions=registry.versions(),
        inference_count=metrics.inference_count,
        tasks_done=metrics.tasks_completed,
        errors=metrics.error_count,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        cpu_percent=metrics.cpu_percent(),
        memory_mb=metrics.memory_mb(),
        agent_version=AGENT_VERSION,
        execution_provider=registry.execution_provider() or preferred_provider,
    )


class HeartbeatReporter:
    def __init__(self, settings: NodeSettings, client: ControlPlaneClient,
                 registry: ModelRegistry, metrics: NodeMetrics):
        self.settings = settings
        self.client = client
        self.registry = registry
        self.metrics = metrics
        self.node_status: str | None = None
        self.last_error: str | None = None

    def preferred_provider(self) -> str | None:
        try:
            return execution_providers(self.settings.node_execution_provider)[0]
        except ModelLoadError:
            return None

    async def send(self) -> float:
        ack = await self.client.heartbeat(build_heartbeat(self.metrics, self.registry,
                                                          self.preferred_provider()))
        self.metrics.heartbeats.inc()
        if ack.node_status != self.node_status:
            log.info("control plane reports this node as %s", ack.node_status)
        self.node_status = ack.node_status
        self.last_error = None
        # The control plane may ask for a faster pace; a local setting may only make it faster.
        return min(ack.next_heartbeat_seconds, self.settings.node_heartbeat_interval_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(self.settings.node_backoff_initial_seconds,
                          self.settings.node_backoff_max_seconds)
        while not stop.is_set():
            try:
                interval = await self.send()
                backoff.reset()
                delay = jittered(interval, 0.1)
            except ControlPlaneError as exc:
                self.last_error = str(exc)
                self.metrics.control_plane_error(exc.call, exc.kind)
                delay = backoff.next_delay(exc.retry_after)
                log.warning("heartbeat: %s; retrying in %.1fs", exc, delay)
            except Exception:
                log.exception("heartbeat failed unexpectedly")
                delay = backoff.next_delay()
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
