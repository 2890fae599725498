"""Loads every module of tests/support as a plugin (real services, started and stopped by PID)."""

import os
from pathlib import Path

os.environ.setdefault("NODERR_ENV", "test")

pytest_plugins = sorted(
    f"tests.support.{p.stem}"
    for p in (Path(__file__).parent / "support").glob("*.py")
    if p.stem != "__init__"
)
