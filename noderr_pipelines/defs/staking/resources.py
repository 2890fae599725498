"""Resources of the staking domain: the slashing policy (threshold, window, challenge, fraction).

Unset fields (0, or -1 for the challenge) fall back to the NODERR_SLASHING_* settings, read when a
tick or run uses the resource, never at import time.
"""

import dagster as dg

from noderr_core.settings import Settings, get_settings


class SlashingPolicyResource(dg.ConfigurableResource):
    min_invalid: int = 0
    recent_results: int = 0
    window_hours: int = 0
    challenge_seconds: int = -1
    fraction_bps: int = 0

    def settings(self) -> Settings:
        overrides = {
            name: value
            for name, value in {
                "slashing_min_invalid": self.min_invalid,
                "slashing_recent_results": self.recent_results,
                "slashing_window_hours": self.window_hours,
                "slashing_fraction_bps": self.fraction_bps,
            }.items()
            if value
        }
        if self.challenge_seconds >= 0:
            overrides["slashing_challenge_seconds"] = self.challenge_seconds
        base = get_settings()
        return base.model_copy(update=overrides) if overrides else base
