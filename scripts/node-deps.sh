#!/usr/bin/env bash
# npm tools into ./node_modules. package-lock is disabled (.npmrc) so no registry host is recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.noderr-installed ] || [ package.json -nt node_modules/.noderr-installed ]; then
  npm install --no-audit --no-fund --loglevel=error
  touch node_modules/.noderr-installed
fi
