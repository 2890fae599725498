"""Resources of the network domain: the node health policy (threshold and settings)."""

import dagster as dg

from noderr_core.settings import Settings, get_settings


class NodeHealthPolicy(dg.ConfigurableResource):
    """How long a node may stay silent before it goes offline.

    0 (the default) = NODERR_HEARTBEAT_OFFLINE_AFTER_SECONDS. Settings are read when a run or tick
    uses the resource, never at import time.
    """

    offline_after_seconds: int = 0

    def settings(self) -> Settings:
        return get_settings()

    def threshold_seconds(self) -> int:
        return self.offline_after_seconds or self.settings().heartbeat_offline_after_seconds
