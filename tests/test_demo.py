"""`make demo` end to end: every journey on a fresh local stack, exactly as a new user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_completes_all_four_journeys(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NODERR_") and k != "DAGSTER_HOME"}
    env["NODERR_DEMO_DIR"] = str(tmp_path / "demo")
    proc = subprocess.run(
        [sys.executable, "-m", "noderr_cli.main", "demo"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    for journey in ("platform", "model", "operator", "admin", "node", "tasks", "rewards"):
        assert f"{journey}: complete" in output, output[-6000:]
    assert "INCOMPLETE" not in output
    # The operator's approval email really went through SMTP into the mailbox.
    assert list((tmp_path / "demo" / "mailbox").glob("*.eml"))
