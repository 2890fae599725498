"""Resources shared by every domain: the database and the chain (through noderr_core)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from noderr_core.chain.client import ChainClient
from noderr_core.db import engine_for_settings, engine_for_url, session_scope
from noderr_core.settings import get_settings
from noderr_pipelines.lib.settings import SettingsBackedResource


class DatabaseResource(dg.ConfigurableResource):
    """The platform database. Empty URL = NODERR_DATABASE_URL (or the local SQLite default)."""

    database_url: str = ""

    def get_engine(self) -> Engine:
        return engine_for_url(self.database_url) if self.database_url else engine_for_settings(get_settings())

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commit on success, roll back on error."""
        with session_scope(self.get_engine()) as session:
            yield session


class ChainResource(SettingsBackedResource):
    """The chain: RPC URL, contract addresses file and signer key for the relay.

    Empty fields fall back to the NODERR_* settings, read at run time (never at import). The signer
    key is a secret: in production set NODERR_CHAIN_SIGNER_KEY in the daemon's environment, or
    configure `ChainResource(signer_key=dg.EnvVar("NODERR_CHAIN_SIGNER_KEY"))` so the UI shows only
    the variable name.
    """

    rpc_url: str = ""
    signer_key: str = ""
    addresses_file: str = ""
    receipt_timeout_seconds: float = 60.0

    def settings_overrides(self) -> dict:
        return {
            "chain_rpc_url": self.rpc_url,
            "chain_signer_key": SecretStr(self.signer_key) if self.signer_key else None,
            "chain_addresses_file": Path(self.addresses_file) if self.addresses_file else None,
        }

    def client(self) -> ChainClient:
        return ChainClient.from_settings(self.settings(), receipt_timeout=self.receipt_timeout_seconds)
