"""The chain resource: RPC URL, contract addresses file and signer key for the relay.

Empty fields fall back to the NODERR_* settings, read at run time (never at import). The signer key
is a secret: in production set NODERR_CHAIN_SIGNER_KEY in the daemon's environment, or configure
`ChainResource(signer_key=dg.EnvVar("NODERR_CHAIN_SIGNER_KEY"))` so the UI shows only the variable name.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import SecretStr

from noderr_core.chain.client import ChainClient
from noderr_core.settings import Settings, get_settings


class ChainResource(dg.ConfigurableResource):
    rpc_url: str = ""
    signer_key: str = ""
    addresses_file: str = ""
    receipt_timeout_seconds: float = 60.0

    def resolved_settings(self) -> Settings:
        base = get_settings()
        overrides: dict = {}
        if self.rpc_url:
            overrides["chain_rpc_url"] = self.rpc_url
        if self.signer_key:
            overrides["chain_signer_key"] = SecretStr(self.signer_key)
        if self.addresses_file:
            overrides["chain_addresses_file"] = Path(self.addresses_file)
        return base.model_copy(update=overrides) if overrides else base

    def client(self) -> ChainClient:
        return ChainClient.from_settings(
            self.resolved_settings(), receipt_timeout=self.receipt_timeout_seconds
        )
