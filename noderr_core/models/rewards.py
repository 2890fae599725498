"""rewards tables (see the rewards migration)."""

from noderr_core.models.base import Base  # noqa: F401
