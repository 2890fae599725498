"""`noderr images`: build the platform's container images, release (push + sign) the node image."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group("images")
def images() -> None:
    """Container images: build with podman, publish the node image by digest, signed."""


@images.command("build")
@click.option("--only", "only", multiple=True,
              help="image to build (node, node-gpu, api, pipelines); default: node, api, pipelines")
def build(only: tuple[str, ...]) -> None:
    """Build the images (cached layers; `make images`)."""
    from noderr_local.images import DEFAULT_IMAGES, ImageError, build_images

    try:
        built = build_images(only or DEFAULT_IMAGES)
    except ImageError as exc:
        raise click.ClickException(str(exc)) from None
    for name, tag, seconds, size in built:
        click.echo(f"{name:<10} {tag:<40} {size / 1e6:7.0f} MB  built in {seconds:.0f}s")


@images.command("release")
@click.option("--no-build", is_flag=True, help="push the image already built")
@click.option("--key-id", default=None,
              help="OpenPGP fingerprint of the platform's signing key (required outside local)")
@click.option("--gnupg-home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="GnuPG home holding that key (default: $GNUPGHOME or ~/.gnupg)")
def release(no_build: bool, key_id: str | None, gnupg_home: Path | None) -> None:
    """Build, push to NODERR_NODE_IMAGE_REGISTRY, sign, and record the digest bundles pin."""
    from noderr_core.settings import get_settings
    from noderr_local.images import ImageError, ImageSigningKey, release_node_image

    signing = None
    if key_id:
        home = gnupg_home or Path(os.environ.get("GNUPGHOME") or Path.home() / ".gnupg")
        signing = ImageSigningKey(home, key_id)
    try:
        pinned = release_node_image(get_settings(), build=not no_build, signing=signing)
    except ImageError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"released {pinned.reference} (signed)")
    click.echo(f"production: NODERR_NODE_IMAGE_DIGEST={pinned.digest}")
