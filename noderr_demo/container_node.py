"""The demo's container step: the node image built with podman, pushed to the local OCI registry,
signed, and one operator's node run from its bundle as a container (pulled with signature
verification, started with `podman run` from its compose file) next to the node processes.

`release_signed_node_image` runs before the operators download their bundles, so every bundle pins
the released digest; `start_bundled_container` starts a bundle's node as a container.
"""

from __future__ import annotations

from pathlib import Path

from noderr_demo.report import DemoReport
from noderr_demo.stack import DemoEnvironment
from noderr_local.bundle_runner import ContainerNode, start_container_node
from noderr_local.process import LocalStack

# The demo's polling pace, as the process nodes use (noderr_demo/nodes.py).
DEMO_NODE_ENV = {
    "NODERR_NODE_BEACON_INTERVAL_SECONDS": "3",
    "NODERR_NODE_HEARTBEAT_INTERVAL_SECONDS": "3",
}


def release_signed_node_image(report: DemoReport, demo: DemoEnvironment, stack: LocalStack) -> None:
    from noderr_local import registry
    from noderr_local.images import release_node_image

    with report.step("platform", "node image: podman build, push to the local registry, sign") as s:
        spec = registry.service_spec(demo.settings)
        spec.env = {**demo.env, **spec.env}
        stack.start(spec)
        release = release_node_image(demo.settings)
        s.detail = f"bundles pin {release.reference[:60]}… (signature served by the API)"


def start_bundled_container(bundle_dir: Path, node_id: str, demo: DemoEnvironment) -> ContainerNode:
    return start_container_node(bundle_dir, node_id, engine_home=demo.state_dir / "operator-engine",
                                log_dir=demo.state_dir / "logs", extra_env=DEMO_NODE_ENV)
