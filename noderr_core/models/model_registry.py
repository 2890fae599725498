"""model_registry tables (see the model_registry migration)."""

from noderr_core.models.base import Base  # noqa: F401
