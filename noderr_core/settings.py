"""The one validated settings object for the control plane (API, pipelines, CLI).

Every value comes from a ``NODERR_*`` environment variable (or ``.env``). The default environment
is ``local``, with embedded defaults that start with no set-up; outside ``local`` the defaults for
secrets are refused so that a production deployment can never run on a known key.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = PROJECT_ROOT / ".noderr"

# Local-only defaults. They are public (they are in this file), which is why `_refuse_default_secrets`
# rejects them everywhere but NODERR_ENV=local.
LOCAL_TYPEFORM_SECRET = "local-typeform-secret"
LOCAL_SECRET_KEY = "local-secret-key-change-me-outside-local"
LOCAL_ADMIN_PASSWORD = "noderr-local-admin"
LOCAL_S3_ACCESS_KEY = "noderr-local-access"
LOCAL_S3_SECRET_KEY = "noderr-local-secret-key"
# Ganache's first deterministic account for the mnemonic in noderr_local.devchain.
LOCAL_CHAIN_SIGNER_KEY = "0x4f3edf983ac636a65a842ce7c78d9aa706d3b113bce9c46f30d7d21715b23b1d"

_DEFAULT_SECRETS = {
    "typeform_secret": LOCAL_TYPEFORM_SECRET,
    "secret_key": LOCAL_SECRET_KEY,
    "bootstrap_admin_password": LOCAL_ADMIN_PASSWORD,
    "s3_secret_access_key": LOCAL_S3_SECRET_KEY,
    "chain_signer_key": LOCAL_CHAIN_SIGNER_KEY,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="NODERR_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["local", "test", "staging", "production"] = "local"
    state_dir: Path = DEFAULT_STATE_DIR

    database_url: str = ""  # empty = SQLite file under state_dir
    # PostgreSQL: the task hot path prepares its statements once per connection (SQL PREPARE).
    # Turn off behind a pooler in transaction mode (PgBouncer), where a session's prepared
    # statements do not follow it from one transaction to the next.
    database_prepared_statements: bool = True
    public_base_url: str = "http://127.0.0.1:8000"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dagster_port: int = 3000  # `noderr dev up`'s Dagster webserver

    typeform_secret: SecretStr = SecretStr(LOCAL_TYPEFORM_SECRET)
    # JSON object {our_field: ["typeform_ref", ...]} merged over the default mapping
    # (noderr_core/onboarding/typeform.py DEFAULT_FIELD_MAP; see docs/onboarding.md).
    typeform_field_map: str = ""
    secret_key: SecretStr = SecretStr(LOCAL_SECRET_KEY)

    bootstrap_admin_email: str = "admin@noderr.local"
    bootstrap_admin_password: SecretStr = SecretStr(LOCAL_ADMIN_PASSWORD)

    smtp_url: str = "smtp://127.0.0.1:8025"
    mail_from: str = "Noderr Network <noreply@noderr.local>"
    admin_alert_emails: str = ""  # comma separated; empty = every admin user

    # Object store (S3 API). Empty endpoint = AWS.
    s3_endpoint_url: str = "http://127.0.0.1:8333"
    s3_region: str = "us-east-1"
    s3_access_key_id: str = LOCAL_S3_ACCESS_KEY
    s3_secret_access_key: SecretStr = SecretStr(LOCAL_S3_SECRET_KEY)
    model_bucket: str = "noderr-models"
    # Dagster runs: step outputs in S3 (this bucket, under the prefix) when set, so a run's steps can
    # be re-executed from another container; empty = files under DAGSTER_HOME/storage (one machine).
    dagster_io_bucket: str = ""
    dagster_io_prefix: str = "dagster/io"
    # The ML team's model catalog (YAML); empty = noderr_pipelines/defs/models/catalog/models.yaml.
    model_catalog: Path | None = None
    presign_expiry_seconds: int = 300

    # Ed25519 private key (hex, 32 bytes) that signs manifests and beacons. Empty in local = a key
    # generated once under state_dir.
    model_signing_key: SecretStr = SecretStr("")
    beacon_ttl_seconds: int = 3600

    # The node image bundles pin by digest (noderr_core/node_image.py, docs/DEPLOYMENT.md):
    # registry host[:port] + repository; digest empty = the last local release's.
    node_image_registry: str = "127.0.0.1:5050"
    node_image_repository: str = "noderr/node"
    node_image_digest: str = ""
    # ASCII-armored OpenPGP public key that signs node images (empty in local = the key
    # `noderr images release` generated under state_dir).
    image_signing_public_key: str = ""

    # Chain
    chain_rpc_url: str = "http://127.0.0.1:8545"
    chain_id: int = 1337
    chain_signer_key: SecretStr = SecretStr(LOCAL_CHAIN_SIGNER_KEY)
    chain_addresses_file: Path | None = None  # default: state_dir / "chain.json"
    reward_pool_per_epoch: int = Field(default=1_000 * 10**18, ge=0)

    # Stake and slashing (docs/staking.md). stake_required: None = off in local/test, on elsewhere.
    stake_required: bool | None = None
    stake_minimum: int = Field(default=1_000 * 10**18, gt=0)  # per node, token base units
    stake_unbonding_delay_seconds: int = Field(default=7 * 86400, ge=0)
    stake_treasury: str = ""  # where slashed stake goes; empty = the deployer (platform signer)
    slashing_min_invalid: int = Field(default=3, ge=2)  # K: never a single disagreement
    slashing_recent_results: int = Field(default=20, ge=2)  # N: among the node's last N judged
    slashing_window_hours: int = Field(default=24, ge=1)  # ... judged within this window
    slashing_challenge_seconds: int = Field(default=72 * 3600, ge=0)  # admin may dismiss meanwhile
    slashing_fraction_bps: int = Field(default=1_000, ge=1, le=10_000)  # 10% of the bonded stake

    # When set, GET /metrics requires `Authorization: Bearer <token>`; required outside local.
    metrics_token: SecretStr = SecretStr("")

    # Operational knobs
    login_rate_limit_per_minute: int = 10
    download_token_ttl_hours: int = 72
    session_ttl_hours: int = 12
    heartbeat_offline_after_seconds: int = 120
    # Scale and overload (issue 15; docs/DEPLOYMENT.md sizes them). Per API worker process: at most
    # `api_max_in_flight` requests run, `api_max_queued` more wait up to `api_queue_wait_seconds`,
    # the rest get 503 + Retry-After; the DB pool and threadpool are sized from these.
    api_max_in_flight: int = Field(default=16, ge=1, le=512)
    api_max_queued: int = Field(default=256, ge=0)
    api_queue_wait_seconds: float = Field(default=2.0, ge=0)
    api_retry_after_seconds: int = Field(default=2, ge=1, le=300)
    # An admitted request's body must arrive within this, plus 1 s per `api_body_min_rate` bytes
    # received (api/body_deadline.py): a stalled or trickled upload is answered 408 and its slot freed.
    api_body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    api_body_min_rate: int = Field(default=64 * 1024, ge=1)
    # Task-protocol transactions (lease, results, extend, release) running at once per API worker
    # process; more wait their turn without a thread. Past about two per PostgreSQL core in all,
    # more of them only add lock contention on the queue head (bench_tasks: 16 -> 4 per process took
    # 2,040-2,080 to 2,400 validated tasks/s on 2 cores).
    api_max_task_transactions: int = Field(default=4, ge=1, le=512)
    # Heartbeats waiting for the process's group commit (api/heartbeat_writer.py); beyond this
    # they are shed with 503 + Retry-After.
    api_heartbeat_max_pending: int = Field(default=2000, ge=1)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    # How long a worker trusts an authenticated node/client key (suspension, rotation, revocation
    # take effect within this time).
    auth_cache_seconds: float = Field(default=5.0, ge=0, le=60)
    # Raw heartbeats are kept this long; older ones live on only in the 5-minute rollups.
    heartbeat_raw_retention_hours: int = Field(default=48, ge=1)
    # No heartbeat processed from any node for this long = the control plane itself was down (or
    # cut off): node-offline alerts are held back instead of blaming every node.
    control_plane_outage_after_seconds: int = Field(default=90, ge=1)
    log_json: bool | None = None  # default: JSON outside local

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> "Settings":
        if self.env == "local" or self.env == "test":
            return self
        offenders = [
            f"NODERR_{name.upper()}"
            for name, default in _DEFAULT_SECRETS.items()
            if getattr(self, name).get_secret_value() == default
        ]
        if not self.model_signing_key.get_secret_value():
            offenders.append("NODERR_MODEL_SIGNING_KEY")
        if offenders:
            raise ValueError(
                f"NODERR_ENV={self.env} refuses the built-in local defaults for: "
                + ", ".join(offenders)
                + ". Set each to a secret of your own (see README, 'Production settings')."
            )
        from noderr_core.secret_strength import weak_secret_reasons

        weak = weak_secret_reasons(self)
        if weak:
            raise ValueError(
                f"NODERR_ENV={self.env} refuses weak secrets: " + "; ".join(weak)
                + ". Generate each with e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                " (docs/SECURITY.md)."
            )
        return self

    @property
    def is_local(self) -> bool:
        return self.env in ("local", "test")

    @property
    def stake_gate_enabled(self) -> bool:
        """Nodes lease only with bonded stake: NODERR_STAKE_REQUIRED, else on outside local/test."""
        return self.stake_required if self.stake_required is not None else not self.is_local

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_dir / 'noderr.db'}"

    @property
    def resolved_chain_addresses_file(self) -> Path:
        return self.chain_addresses_file or self.state_dir / "chain.json"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
