#!/usr/bin/env bash
# Sets up a fresh machine for inference-lab: Debian packages for the lessons (Jupyter to execute the
# notebooks, Chromium for the browser test), npm packages, and the tslab kernel.
#   usage: bash scripts/setup.sh            (as root, or with sudo available)
# Elsewhere (no apt): install Jupyter yourself (`pip install nbconvert nbclient ipykernel`), then
# `npm ci && npm run lessons:setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    jupyter-notebook python3-nbconvert python3-nbclient python3-ipykernel chromium
else
  echo "setup: no apt-get here; install Jupyter (nbconvert, nbclient, ipykernel) yourself for the lessons" >&2
fi
npm ci
npm run lessons:setup   # the tslab kernel (tools/tslab), registered under build/jupyter
