"""The one settings fallback of the code location's resources.

A resource field left empty means "use the NODERR_* setting", read when a run or tick uses the
resource (never at import time); a field set in code or run config overrides that one setting.
Secrets are meant to come from the environment (`dg.EnvVar`), so the Dagster UI never shows them.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from noderr_core.settings import Settings, get_settings


def settings_with(overrides: dict[str, Any], base: Settings | None = None) -> Settings:
    """`base` (default: the process's NODERR_* settings) with the non-empty overrides applied."""
    base = base or get_settings()
    updates = {name: value for name, value in overrides.items() if value not in (None, "", 0)}
    return base.model_copy(update=updates) if updates else base


class SettingsBackedResource(dg.ConfigurableResource):
    """Base of resources whose fields override platform settings: subclasses map their fields."""

    def settings_overrides(self) -> dict[str, Any]:
        """{Settings field: this resource's value}; empty values fall back to the settings."""
        return {}

    def settings(self) -> Settings:
        return settings_with(self.settings_overrides())
