#!/usr/bin/env bash
# Installs the Debian packages the project needs when they are missing (idempotent; one apt-get
# update at most): PostgreSQL server binaries and chromium for the tests, and the daemonless
# container tool set for the images (podman, buildah, skopeo, podman-compose, runc), mmdebstrap for
# the local base image and docker-registry (the local OCI registry).
set -euo pipefail
need=()
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v chromium >/dev/null || need+=(chromium)
for tool in podman buildah skopeo podman-compose runc mmdebstrap; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v newuidmap >/dev/null || need+=(uidmap)
command -v gpg >/dev/null || need+=(gnupg)  # signs node images (simple signing)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]} — install them with apt-get as root" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The Debian docker-registry package starts a system-wide registry on :5000; the project runs its
# own on a free loopback port (noderr_local/registry.py), so the packaged service stays off.
if [ "$(id -u)" = 0 ] && command -v systemctl >/dev/null && systemctl is-enabled docker-registry >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
