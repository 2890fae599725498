"""The node image: Dockerfile lint, pinned dependency set, and the node importing nothing else."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "node_service" / "Dockerfile"
REQUIREMENTS = ROOT / "node_service" / "requirements.txt"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, ver = line.partition("==")
            assert ver, f"{path.name}: {line!r} is not pinned with =="
            found[canonical(name)] = ver
    return found


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_unprivileged_with_a_readiness_healthcheck():
    text = DOCKERFILE.read_text()
    # The production base stays the default; the local stand-in is only a build argument.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    stages = re.findall(r"^FROM (\S+) AS (\S+)$", text, re.M)
    assert [name for _, name in stages][-1] == "cpu"  # the default target is the CPU image
    assert {"gpu", "cpu"} <= {name for _, name in stages}
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and all(u.split(":")[0] not in ("root", "0") for u in user)
    assert "EXPOSE 8080" in text
    assert re.search(r"HEALTHCHECK .*\n?.*CMD .*/readyz", text)
    assert "pip install --no-cache-dir --requirement /tmp/requirements.txt" in text
    # Only the node and the protocol go into the image, never the control plane.
    copied = {c for c in re.findall(r"^COPY (\S+)", text, re.M) if not c.startswith("--from")}
    assert copied == {"node_service/requirements.txt", "node_service/requirements-gpu.txt",
                      "noderr_protocol", "node_service"}
    # The runtime stages take the virtualenv from a build stage: no pip, no compilers.
    assert re.findall(r"^COPY --from=(\S+) /opt/venv /opt/venv$", text, re.M) == ["build-gpu",
                                                                                 "build-cpu"]


def test_gpu_variant_swaps_only_onnxruntime():
    gpu = (ROOT / "node_service" / "requirements-gpu.txt").read_text()
    lines = [line.split("#", 1)[0].strip() for line in gpu.splitlines()]
    assert [line for line in lines if line] == ["onnxruntime-gpu[cuda,cudnn]==1.31.1"]


def test_requirements_are_the_repository_pins():
    node = pins(REQUIREMENTS)
    repo = pins(ROOT / "constraints.txt")
    assert {"fastapi", "uvicorn", "onnxruntime", "numpy", "httpx", "pydantic", "pydantic-settings",
            "cryptography", "prometheus-client", "psutil"} <= set(node)
    mismatched = {n: (v, repo.get(n)) for n, v in node.items() if repo.get(n) != v}
    assert not mismatched, f"node pins differ from constraints.txt: {mismatched}"
    for heavy in ("dagster", "sqlalchemy", "boto3", "web3", "scikit-learn", "onnx"):
        assert heavy not in node


PROBE = """
import importlib.abc, importlib.metadata as md, json, sys
allowed = set(json.loads(sys.argv[1]))
dists = md.packages_distributions()
def canonical(n):
    import re
    return re.sub(r"[-_.]+", "-", n).lower()
blocked = []
class ContainerOnly(importlib.abc.MetaPathFinder):
    # Behave like the image: a module from a distribution not in requirements.txt is absent.
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        owners = dists.get(top)
        if top in ("node_service", "noderr_protocol"):
            return None  # what the image copies
        if owners and not any(canonical(d) in allowed for d in owners):
            blocked.append(top)
            raise ModuleNotFoundError(f"No module named {name!r} (not in the node image)")
        return None
sys.meta_path.insert(0, ContainerOnly())
import uvicorn
import node_service.__main__
from node_service.main import create_app
config = uvicorn.Config(create_app(), host="127.0.0.1", port=0)
config.load()
tops = {m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names)
print(json.dumps({"loaded": sorted(tops), "blocked": sorted(set(blocked))}))
"""


def test_node_runs_with_only_its_requirements():
    # Import and configure everything the node runs while every distribution outside
    # node_service/requirements.txt is hidden, as it is in the image.
    allowed = sorted(pins(REQUIREMENTS))
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(allowed)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    forbidden = {"noderr_core", "api", "noderr_pipelines", "sqlalchemy", "boto3", "dagster"}
    assert not forbidden & set(report["loaded"]), report["loaded"]
