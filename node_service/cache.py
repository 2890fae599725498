"""The on-disk model cache: resumable verified downloads and the `current.json` pointer.

Layout under NODERR_MODEL_CACHE_DIR:
  downloads/<name>-v<version>-<sha12>.onnx.part   partial download (resumed with a Range request)
  models/<name>-v<version>-<sha12>.onnx           verified artifact (atomically renamed into place)
  current.json                                    {name: {"signed_manifest": …, "file": …}} of the
                                                  last good (verified, loaded, warmed-up) versions
  beacon_state.json                               highest accepted beacon sequence

Only files whose size and sha256 match a signed manifest ever reach `models/`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from noderr_protocol.models import ModelManifest
from node_service.trust import ManifestRejected, verify_signed_manifest, write_json_atomic

log = logging.getLogger("noderr.node.cache")

CHUNK = 1 << 16


class ArtifactRejected(ValueError):
    """A downloaded artifact does not match its signed manifest (tampered or truncated)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class DownloadFailed(RuntimeError):
    """The artifact could not be fetched (network, expired URL); the partial file is kept."""


@dataclass(frozen=True)
class FetchOutcome:
    path: Path
    downloaded_bytes: int  # 0 when the verified artifact was already cached
    resumed_from: int  # bytes of a partial download that were kept (Range request)


@dataclass(frozen=True)
class CachedModel:
    signed_manifest: dict[str, Any]  # exactly as verified
    manifest: ModelManifest
    path: Path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ModelCache:
    def __init__(self, root: Path):
        self.root = root
        self.downloads = root / "downloads"
        self.models = root / "models"
        self.pointer = root / "current.json"
        self.beacon_state = root / "beacon_state.json"

    def ensure(self) -> None:
        for d in (self.root, self.downloads, self.models):
            d.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def file_stem(manifest: ModelManifest) -> str:
        return f"{manifest.name}-v{manifest.version}-{manifest.sha256[:12]}"

    def artifact_path(self, manifest: ModelManifest) -> Path:
        return self.models / f"{self.file_stem(manifest)}.onnx"

    def partial_path(self, manifest: ModelManifest) -> Path:
        return self.downloads / f"{self.file_stem(manifest)}.onnx.part"

    def verified_artifact(self, manifest: ModelManifest) -> Path | None:
        """The cached artifact if present and still matching the manifest (else it is removed)."""
        path = self.artifact_path(manifest)
        if not path.exists():
            return None
        if path.stat().st_size == manifest.size_bytes and sha256_file(path) == manifest.sha256:
            return path
        log.warning("cached artifact %s no longer matches its manifest: removing it", path.name)
        path.unlink(missing_ok=True)
        return None

    def fetch(self, manifest: ModelManifest, url: str, *, timeout: float) -> FetchOutcome:
        """Downloads (resuming a partial file) and verifies; the artifact ends up in `models/`."""
        self.ensure()
        cached = self.verified_artifact(manifest)
        if cached is not None:
            return FetchOutcome(cached, 0, 0)
        part = self.partial_path(manifest)
        have = part.stat().st_size if part.exists() else 0
        if have > manifest.size_bytes:
            part.unlink()
            have = 0
        downloaded, resumed_from = 0, 0
        if have < manifest.size_bytes:
            downloaded, resumed_from = self._download(url, part, have, manifest.size_bytes, timeout)
        size = part.stat().st_size
        if size != manifest.size_bytes:
            if size > manifest.size_bytes:
                part.unlink(missing_ok=True)
            raise ArtifactRejected(
                "size", f"{manifest.name} v{manifest.version}: downloaded {size} bytes, the signed "
                f"manifest says {manifest.size_bytes}",
            )
        digest = sha256_file(part)
        if digest != manifest.sha256:
            # A complete file with the wrong hash is tampered: never resume from it.
            part.unlink(missing_ok=True)
            raise ArtifactRejected(
                "sha256", f"{manifest.name} v{manifest.version}: sha256 {digest} does not match "
                f"the signed manifest ({manifest.sha256}); artifact discarded",
            )
        final = self.artifact_path(manifest)
        with part.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(part, final)
        return FetchOutcome(final, downloaded, resumed_from)

    @staticmethod
    def _download(url: str, part: Path, have: int, expected: int,
                  timeout: float) -> tuple[int, int]:
        """Appends the missing bytes to `part`; returns (bytes received, offset resumed from)."""
        # No Authorization header here: the URL is presigned and S3 refuses a second auth scheme.
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with httpx.stream("GET", url, headers=headers, timeout=timeout,
                              follow_redirects=True) as resp:
                if resp.status_code == 416:
                    # Our partial file is already at (or past) the object's end: verify it as is.
                    return 0, have
                if resp.status_code not in (200, 206):
                    raise DownloadFailed(
                        f"artifact download returned HTTP {resp.status_code} "
                        f"({resp.read()[:200]!r}); the presigned URL may have expired"
                    )
                mode = "ab" if resp.status_code == 206 and have else "wb"
                if have and resp.status_code == 200:
                    log.info("object store ignored the Range request: downloading from the start")
                start = have if mode == "ab" else 0
                written = start
                with part.open(mode) as fh:
                    for chunk in resp.iter_bytes(CHUNK):
                        written += len(chunk)
                        fh.write(chunk)
                        if written > expected:
                            break  # longer than the signed size: the size check rejects it
                return written - start, start
        except httpx.HTTPError as exc:
            raise DownloadFailed(f"artifact download interrupted ({exc!r}); will resume") from exc

    # --- the last-good pointer -------------------------------------------------------------

    def read_pointer(self, public_key_hex: str) -> dict[str, CachedModel]:
        """Last good models from `current.json`, each re-verified (signature, size, sha256)."""
        try:
            data = json.loads(self.pointer.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            log.error("%s is unreadable (%s): ignoring the cache pointer", self.pointer, exc)
            return {}
        result: dict[str, CachedModel] = {}
        for name, item in data.items():
            try:
                manifest = verify_signed_manifest(item["signed_manifest"], public_key_hex)
            except (ManifestRejected, KeyError, TypeError) as exc:
                log.error("cached manifest for %s refused: %s", name, exc)
                continue
            path = self.verified_artifact(manifest)
            if path is None:
                log.error("cached artifact for %s v%s is missing or corrupt", name,
                          manifest.version)
                continue
            result[name] = CachedModel(item["signed_manifest"], manifest, path)
        return result

    def write_pointer(self, models: dict[str, CachedModel]) -> None:
        write_json_atomic(
            self.pointer,
            {name: {"signed_manifest": m.signed_manifest, "file": m.path.name}
             for name, m in models.items()},
        )

    def prune(self, keep: set[Path], keep_per_model: int = 2) -> None:
        """Deletes old artifacts, keeping `keep` and the newest few per model (fast rollback)."""
        by_model: dict[str, list[Path]] = {}
        for path in self.models.glob("*.onnx"):
            by_model.setdefault(path.name.rsplit("-v", 1)[0], []).append(path)
        for paths in by_model.values():
            paths.sort(key=lambda p: p.stat().st_mtime, reverse=True)
            for path in paths[keep_per_model:]:
                if path not in keep:
                    path.unlink(missing_ok=True)
