"""The node's own settings, read from NODERR_* environment variables or the bundle's `.env`.

The operator's bundle provides NODERR_API_URL, NODERR_NODE_ID, NODERR_NODE_API_KEY,
NODERR_MODEL_CACHE_DIR and NODERR_MODEL_PUBLIC_KEY; everything else has a sensible default.
This class is deliberately separate from the control plane's Settings: the node must not import it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_threads() -> int:
    # One inference at a time uses every core; beyond 4 threads small models gain nothing.
    return max(1, min(4, os.cpu_count() or 1))


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NODERR_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # From the operator's bundle.
    api_url: str
    node_id: str = Field(min_length=1)
    node_api_key: SecretStr
    model_cache_dir: Path
    model_public_key: str = Field(description="hex Ed25519 public key that signs manifests/beacons")

    # HTTP server.
    node_host: str = "0.0.0.0"
    node_port: int = Field(default=8080, ge=1, le=65535)
    node_log_level: str = "INFO"

    # onnxruntime execution provider: auto = CUDA when this onnxruntime build and the machine have
    # it (the GPU image on a host with the NVIDIA driver), else CPU; cuda = CUDA or refuse to load.
    node_execution_provider: Literal["auto", "cuda", "cpu"] = "auto"
    # onnxruntime's usage telemetry (off unless the operator opts in).
    node_ort_telemetry: bool = False

    # onnxruntime threads (explicit: never let every session grab every core).
    node_intra_op_threads: int = Field(default_factory=_default_threads, ge=1, le=256)
    node_inter_op_threads: int = Field(default=1, ge=1, le=64)

    # Dynamic batcher (as Triton's: a batch is dispatched when full or when the oldest request
    # has waited max_batch_delay_ms). 0, Triton's default, batches whatever queued up while the
    # previous batch ran: no added latency when idle, full batches under load (measured in
    # bench/bench_node.py: at c=32 a 0.5-2 ms delay gained nothing, at c=1 it cost 2-3x latency).
    node_max_batch_rows: int = Field(default=64, ge=1, le=4096)
    node_max_batch_delay_ms: float = Field(default=0.0, ge=0, le=1000)
    node_batch_concurrency: int = Field(default=2, ge=1, le=16)
    node_max_request_rows: int = Field(default=64, ge=1, le=4096)

    # Control-plane polling.
    node_beacon_interval_seconds: float = Field(default=30.0, gt=0)
    node_beacon_jitter: float = Field(default=0.2, ge=0, le=1)
    node_heartbeat_interval_seconds: float = Field(default=15.0, gt=0)
    node_http_timeout_seconds: float = Field(default=10.0, gt=0)
    node_backoff_initial_seconds: float = Field(default=1.0, gt=0)
    node_backoff_max_seconds: float = Field(default=60.0, gt=0)

    # Task worker.
    node_worker_enabled: bool = True
    node_lease_max_tasks: int = Field(default=64, ge=1, le=512)
    node_lease_seconds: int = Field(default=120, ge=10, le=3600)
    node_idle_poll_seconds: float = Field(default=1.0, gt=0)
    node_shutdown_grace_seconds: float = Field(default=20.0, ge=0)

    @field_validator("api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"NODERR_API_URL must start with http:// or https:// (got {value!r})")
        return value

    @field_validator("model_public_key")
    @classmethod
    def _hex_key(cls, value: str) -> str:
        value = value.strip().lower()
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ValueError(
                "NODERR_MODEL_PUBLIC_KEY must be the 64-hex-character Ed25519 public key from your "
                "bundle's .env"
            )
        return value

    @field_validator("node_execution_provider", mode="before")
    @classmethod
    def _provider(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("node_log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        return value.upper()
