"""Resources of the network domain: the node health policy (threshold and settings)."""

from noderr_pipelines.lib.settings import SettingsBackedResource


class NodeHealthPolicy(SettingsBackedResource):
    """How long a node may stay silent before it goes offline.

    0 (the default) = NODERR_HEARTBEAT_OFFLINE_AFTER_SECONDS. Settings are read when a run or tick
    uses the resource, never at import time.
    """

    offline_after_seconds: int = 0

    def settings_overrides(self) -> dict:
        return {"heartbeat_offline_after_seconds": self.offline_after_seconds}

    def threshold_seconds(self) -> int:
        return self.settings().heartbeat_offline_after_seconds
