"""tasks tables (see the tasks migration)."""

from noderr_core.models.base import Base  # noqa: F401
