"""The node's Prometheus metrics and the rolling telemetry its heartbeats carry.

Each app builds its own CollectorRegistry (no global state), exposed on GET /metrics.
"""

from __future__ import annotations

import collections
import threading
import time

import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from node_service.runtime import LoadedModel

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class NodeMetrics:
    def __init__(self, window: int = 4096) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("noderr_node_inference_requests", "Inference requests by outcome",
                                ["model", "outcome"], registry=r)
        self.latency = Histogram("noderr_node_inference_latency_seconds",
                                 "End-to-end /v1/infer latency", ["model"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("noderr_node_batch_rows", "Rows per executed batch", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("noderr_node_batch_requests",
                                        "Requests merged into one executed batch", ["model"],
                                        buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("noderr_node_batch_run_seconds",
                                       "session.run time per batch", ["model"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.model_version = Gauge("noderr_node_model_version", "Version being served",
                                   ["model"], registry=r)
        self.model_swaps = Counter("noderr_node_model_swaps", "Model versions swapped in",
                                   ["model"], registry=r)
        self.sync_errors = Counter("noderr_node_model_sync_errors",
                                   "Model sync failures (the last good model keeps serving)",
                                   ["reason"], registry=r)
        self.beacon_sequence = Gauge("noderr_node_beacon_sequence",
                                     "Highest accepted beacon sequence", registry=r)
        self.last_sync = Gauge("noderr_node_last_successful_sync_timestamp_seconds",
                               "When the beacon was last applied without error", registry=r)
        self.control_plane_errors = Counter("noderr_node_control_plane_errors",
                                            "Failed calls to the control plane",
                                            ["call", "kind"], registry=r)
        self.tasks_done = Counter("noderr_node_tasks", "Leased tasks by outcome", ["outcome"],
                                  registry=r)
        self.heartbeats = Counter("noderr_node_heartbeats", "Heartbeats acknowledged",
                                  registry=r)
        self.up = Gauge("noderr_node_start_time_seconds", "Process start time", registry=r)
        self.up.set(time.time())

        # Heartbeat telemetry: counts since start and a rolling latency window.
        self._lock = threading.Lock()
        self._latencies: collections.deque[float] = collections.deque(maxlen=window)
        self.started = time.monotonic()
        self.inference_count = 0
        self.tasks_completed = 0
        self.error_count = 0
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # primes the CPU counter

    # -- recording ---------------------------------------------------------------------------

    def observe_request(self, model: str, outcome: str, seconds: float | None = None) -> None:
        self.requests.labels(model=model, outcome=outcome).inc()
        if seconds is not None:
            self.latency.labels(model=model).observe(seconds)
        with self._lock:
            if outcome == "ok":
                self.inference_count += 1
                if seconds is not None:
                    self._latencies.append(seconds)
            elif outcome == "error":
                self.error_count += 1

    def observe_batch(self, model: LoadedModel, rows: int, requests: int, seconds: float) -> None:
        self.batch_rows.labels(model=model.name).observe(rows)
        self.batch_requests.labels(model=model.name).observe(requests)
        self.batch_seconds.labels(model=model.name).observe(seconds)

    def sync_error(self, reason: str) -> None:
        self.sync_errors.labels(reason=reason).inc()
        with self._lock:
            self.error_count += 1

    def control_plane_error(self, call: str, kind: str) -> None:
        self.control_plane_errors.labels(call=call, kind=kind).inc()

    def task_outcome(self, outcome: str, n: int = 1) -> None:
        if n <= 0:
            return
        self.tasks_done.labels(outcome=outcome).inc(n)
        with self._lock:
            if outcome == "done":
                self.tasks_completed += n
            elif outcome == "error":
                self.error_count += n

    def model_swapped(self, model: LoadedModel) -> None:
        self.model_version.labels(model=model.name).set(model.version)
        self.model_swaps.labels(model=model.name).inc()

    def model_removed(self, name: str) -> None:
        self.model_version.remove(name)

    # -- reading -----------------------------------------------------------------------------

    def latency_percentiles_ms(self) -> tuple[float | None, float | None]:
        with self._lock:
            samples = sorted(self._latencies)
        if not samples:
            return None, None

        def pct(p: float) -> float:
            return samples[min(len(samples) - 1, round(p * (len(samples) - 1)))] * 1000

        return pct(0.50), pct(0.95)

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started

    def cpu_percent(self) -> float:
        return self._process.cpu_percent(None)

    def memory_mb(self) -> float:
        return self._process.memory_info().rss / (1024 * 1024)
