"""Model sync: poll the signed beacon, fetch and verify new versions, warm them up, swap them in.

Every failure (control plane down, bad signature, replayed beacon, tampered artifact, model that
will not load) is logged, counted in metrics and heartbeats, and leaves the last good model
serving. The last good set is recorded in `current.json`, so a restart serves it even when the
control plane is unreachable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from noderr_protocol.models import BeaconEntry
from node_service.cache import ArtifactRejected, CachedModel, DownloadFailed, ModelCache
from node_service.control_plane import Backoff, ControlPlaneClient, ControlPlaneError, jittered
from node_service.metrics import NodeMetrics
from node_service.runtime import (
    LoadedModel, ModelLoadError, ModelRegistry, execution_providers, load_model,
)
from node_service.settings import NodeSettings
from node_service.trust import BeaconRejected, SequenceStore, verify_beacon

log = logging.getLogger("noderr.node.sync")


@dataclass
class _Quarantine:
    failures: int
    retry_at: float


class ModelSync:
    def __init__(self, settings: NodeSettings, client: ControlPlaneClient, registry: ModelRegistry,
                 cache: ModelCache, metrics: NodeMetrics):
        self.settings = settings
        self.client = client
        self.registry = registry
        self.cache = cache
        self.metrics = metrics
        self.public_key = settings.model_public_key
        self.sequences = SequenceStore(cache.beacon_state)
        self.synced = False  # a verified beacon has been applied in this process
        self.loaded_from_cache = False
        self.last_error: str | None = None
        self.last_sync_at: float | None = None
        self.beacon_sequence: int | None = None
        # (name, version, sha256) of artifacts that failed verification or loading: retried with
        # backoff rather than re-downloaded on every poll.
        self._quarantine: dict[tuple[str, int, str], _Quarantine] = {}
        self._lock = asyncio.Lock()

    # -- start-up from the cache ---------------------------------------------------------------

    def load_cached(self) -> int:
        """Loads the last good models from `current.json` (blocking; call in a thread)."""
        self.cache.ensure()
        self.beacon_sequence = self.sequences.load()
        if self.beacon_sequence is not None:
            self.metrics.beacon_sequence.set(self.beacon_sequence)
        loaded = 0
        for name, cached in self.cache.read_pointer(self.public_key).items():
            try:
                model = self._load(cached)
            except ModelLoadError as exc:
                self._fail(exc.reason, f"cached model {name}: {exc}")
                continue
            self.registry.swap(model)
            self.metrics.model_swapped(model)
            loaded += 1
            log.info("serving cached model %s v%s from %s", name, model.version, cached.path.name)
        self.loaded_from_cache = loaded > 0
        return loaded

    def _load(self, cached: CachedModel) -> LoadedModel:
        return load_model(cached.path, cached.manifest, cached.signed_manifest,
                          intra_op_threads=self.settings.node_intra_op_threads,
                          inter_op_threads=self.settings.node_inter_op_threads,
                          providers=execution_providers(self.settings.node_execution_provider))

    # -- one sync round ------------------------------------------------------------------------

    def _fail(self, reason: str, message: str) -> None:
        self.last_error = message
        self.metrics.sync_error(reason)
        log.error("model sync: %s", message)

    async def sync_once(self) -> bool:
        """Fetches and applies the beacon; True if everything it lists is being served."""
        async with self._lock:
            raw = await self.client.beacon()
            try:
                signed = verify_beacon(raw, self.public_key, node_id=self.settings.node_id,
                                       highest_sequence=self.beacon_sequence)
            except BeaconRejected as exc:
                self._fail(exc.reason, str(exc))
                return False
            beacon = signed.beacon
            if self.beacon_sequence is None or beacon.sequence > self.beacon_sequence:
                await asyncio.to_thread(self.sequences.save, beacon.sequence)
                self.beacon_sequence = beacon.sequence
                self.metrics.beacon_sequence.set(beacon.sequence)
            ok = True
            for entry in beacon.models:
                ok = await self._apply_entry(entry) and ok
            wanted = {e.model_name for e in beacon.models}
            for name in list(self.registry.snapshot()):
                if name not in wanted:
                    self.registry.remove(name)
                    self.metrics.model_removed(name)
                    log.info("model %s is no longer assigned to this node: unloaded", name)
            await asyncio.to_thread(self._write_pointer)
            if ok:
                self.synced = True
                self.last_error = None
                self.last_sync_at = time.time()
                self.metrics.last_sync.set(self.last_sync_at)
            return ok

    async def _apply_entry(self, entry: BeaconEntry) -> bool:
        manifest = entry.signed_manifest.manifest
        manifest_raw = entry.signed_manifest.model_dump(mode="json")
        current = self.registry.get(entry.model_name)
        if current and (current.version, current.manifest.sha256) == (manifest.version,
                                                                       manifest.sha256):
            return True
        ident = (manifest.name, manifest.version, manifest.sha256)
        quarantined = self._quarantine.get(ident)
        if quarantined and quarantined.retry_at > time.monotonic():
            return False
        if entry.download_url_expires_at <= datetime.now(UTC) and \
                self.cache.verified_artifact(manifest) is None:
            self._fail("download", f"{manifest.name} v{manifest.version}: the presigned URL "
                       "expired before the download; waiting for the next beacon")
            return False
        try:
            fetched = await asyncio.to_thread(
                self.cache.fetch, manifest, entry.download_url,
                timeout=max(60.0, self.settings.node_http_timeout_seconds))
            if fetched.downloaded_bytes:
                log.info("model %s v%s: downloaded %d bytes%s, size and sha256 verified",
                         manifest.name, manifest.version, fetched.downloaded_bytes,
                         f" (resumed at byte {fetched.resumed_from})" if fetched.resumed_from else "")
            model = await asyncio.to_thread(
                self._load, CachedModel(manifest_raw, manifest, fetched.path))
        except DownloadFailed as exc:
            self._fail("download", str(exc))
            return False
        except (ArtifactRejected, ModelLoadError) as exc:
            failures = quarantined.failures + 1 if quarantined else 1
            delay = min(self.settings.node_backoff_max_seconds * 10,
                        self.settings.node_beacon_interval_seconds * 2 ** (failures - 1))
            self._quarantine[ident] = _Quarantine(failures, time.monotonic() + delay)
            self._fail(exc.reason, f"{exc}; keeping "
                       + (f"v{current.version} serving" if current else "no version loaded"))
            return False
        previous = self.registry.swap(model)
        self._quarantine.pop(ident, None)
        self.metrics.model_swapped(model)
        log.info("model %s: swapped in v%s (was %s)", manifest.name, manifest.version,
                 f"v{previous.version}" if previous else "none")
        return True

    def _write_pointer(self) -> None:
        models = {name: CachedModel(m.signed_manifest, m.manifest, m.path)
                  for name, m in self.registry.snapshot().items()}
        self.cache.write_pointer(models)
        self.cache.prune({m.path for m in models.values()})

    # -- the polling loop ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff(self.settings.node_backoff_initial_seconds,
                          self.settings.node_backoff_max_seconds)
        while not stop.is_set():
            try:
                await self.sync_once()
                backoff.reset()
                delay = jittered(self.settings.node_beacon_interval_seconds,
                                 self.settings.node_beacon_jitter)
            except ControlPlaneError as exc:
                self.metrics.control_plane_error(exc.call, exc.kind)
                self._fail(exc.kind, str(exc))
                delay = backoff.next_delay(exc.retry_after)
                if exc.kind == "auth":
                    # A wrong key will not fix itself quickly: wait long, but keep serving.
                    delay = max(delay, min(self.settings.node_backoff_max_seconds, 30.0))
                log.warning("model sync: retrying in %.1fs (serving %s)", delay,
                            self.registry.versions() or "nothing yet")
            except Exception as exc:  # never let the sync loop die: the node must keep serving
                self._fail("internal", f"unexpected error: {exc!r}")
                log.exception("model sync failed unexpectedly")
                delay = backoff.next_delay()
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
