#!/usr/bin/env bash
# Makes the local stand-in for the images' production base (`python:3.11-slim-bookworm`) where no
# registry can be reached: a minimal Debian bookworm with Python 3.11, built by mmdebstrap from this
# machine's configured apt sources and imported into the container engine's local storage as
# $NODERR_BASE_IMAGE (default localhost/noderr-base:bookworm-py3.11). Cached: does nothing when the
# image already exists. The Dockerfiles keep their real FROM (ARG BASE_IMAGE's default); scripts/
# images.sh passes --build-arg BASE_IMAGE=<this image> only when it was made here.
set -euo pipefail
image="${NODERR_BASE_IMAGE:-localhost/noderr-base:bookworm-py3.11}"
engine="${NODERR_CONTAINER_ENGINE:-podman}"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "$0")/.." && pwd)/docker/containers.conf}"
if "$engine" image exists "$image" 2>/dev/null; then
  exit 0
fi
command -v mmdebstrap >/dev/null || { echo "mmdebstrap missing: run scripts/system-deps.sh" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "making base image $image with mmdebstrap (once; about 2 minutes)"
# No mirror argument: mmdebstrap then uses this machine's apt sources.
# python3-venv brings ensurepip (to build the venv); passwd brings useradd/groupadd.
mmdebstrap --quiet --variant=minbase --mode=root \
  --include=python3,python3-venv,ca-certificates,passwd,python-is-python3 \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  bookworm "$work/rootfs.tar"
"$engine" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$work/rootfs.tar" "$image" >/dev/null
echo "base image $image ready"
