#!/bin/sh
# shellcheck shell=sh
#
# The haven-relay installer:
#
#     curl -fsSL https://github.com/haven-relay/haven-relay/releases/latest/download/install.sh | sh
#
# Picks the release archive for this OS and CPU, checks it against SHA256SUMS and installs the
# binary into ~/.local/bin (no root needed). `--bucket` also serves a folder as an S3 bucket for
# the app's "Custom S3 bucket" mode. Run with --help for the options.
#
# POSIX sh (dash, busybox sh, macOS sh). Every line of work is inside a function and the last
# line calls main, so a download cut short runs nothing.

set -u

HAVEN_RELAY_RELEASES="https://github.com/haven-relay/haven-relay/releases"

usage() {
	cat <<EOF
haven-relay installer

Usage: install.sh [OPTIONS]
       curl -fsSL .../install.sh | sh -s -- [OPTIONS]

Installs the haven-relay binary for this machine into ~/.local/bin, checked against the
release's SHA256SUMS.

Options:
  --version vX.Y.Z     Install this release instead of the latest
  --bin-dir DIR        Install into DIR (default: ~/.local/bin)
  --from PATH          Install a local binary or release archive (.tar.gz) instead of
                       downloading; an archive is checked against a SHA256SUMS next to it
  --cron               Also add '@reboot haven-relay run' to your crontab (for machines
                       without a systemd user manager); added once
  --print-target       Print the release target for this machine and exit
  --print-url          Print the archive and SHA256SUMS URLs and exit
  -h, --help           Print this help

Custom S3 bucket (the app's "Custom S3 bucket" mode):
  --bucket             Serve a folder of this machine as an S3 bucket: with Docker when
                       it is installed, else natively
  --native             Run the bucket with haven-relay itself, as a user service
  --docker             Run the bucket with docker compose (profile "bucket")
  --rclone             Serve the folder with 'rclone serve s3' instead of haven-relay
  --dir DIR            The folder to serve (default: ~/haven-bucket)
  --addr HOST:PORT     Where the bucket listens (default: 127.0.0.1:8333; 0.0.0.0:8333
                       lets phones on your network reach it)
  --bucket-name NAME   The bucket to create (default: haven)
  --no-service         Start the bucket in the background with nohup instead of
                       installing a systemd user service or launchd agent

Environment:
  HAVEN_RELAY_DOWNLOAD_URL  Where the archives are (default: $HAVEN_RELAY_RELEASES/latest/download)
  HAVEN_RELAY_AWS_CLI       The aws CLI used to create the bucket (default: aws on PATH;
                            without one, curl signs the request)
EOF
}

say() {
	printf 'haven-relay: %s\n' "$1"
}

warn() {
	printf 'haven-relay: warning: %s\n' "$1" >&2
}

err() {
	printf 'haven-relay: error: %s\n' "$1" >&2
	exit 1
}

check_cmd() {
	command -v "$1" >/dev/null 2>&1
}

need_cmd() {
	if ! check_cmd "$1"; then
		err "need '$1' (command not found)"
	fi
}

# Runs a command that must succeed, and stops the installer with its name if it does not.
ensure() {
	if ! "$@"; then
		err "command failed: $*"
	fi
}

# --- which release fits this machine -------------------------------------------------------

# Succeeds when the CPU lists NEON (armv7 builds use it; early Pis and some SoCs lack it).
has_neon() {
	_cpuinfo="${HAVEN_RELAY_CPUINFO:-/proc/cpuinfo}"
	[ -r "$_cpuinfo" ] || return 1
	grep -Eq '^(Features|flags)[[:space:]]*:(.*[[:space:]])?neon([[:space:]]|$)' "$_cpuinfo"
}

# Succeeds on an Intel shell running under Rosetta 2 on Apple silicon.
under_rosetta() {
	[ "$(sysctl -n sysctl.proc_translated 2>/dev/null)" = 1 ]
}

detect_target() {
	_os="$(uname -s)" || err "cannot run 'uname -s'"
	_arch="$(uname -m)" || err "cannot run 'uname -m'"
	case "$_os" in
	Linux)
		case "$_arch" in
		x86_64 | amd64) echo x86_64-unknown-linux-musl ;;
		aarch64 | arm64) echo aarch64-unknown-linux-musl ;;
		armv7l | armv8l)
			if has_neon; then
				echo armv7-unknown-linux-musleabihf
			else
				echo arm-unknown-linux-musleabihf
			fi
			;;
		armv6l) echo arm-unknown-linux-musleabihf ;;
		*) err "no haven-relay build for Linux on '$_arch' (there are builds for x86_64, aarch64, armv7 and armv6)" ;;
		esac
		;;
	Darwin)
		case "$_arch" in
		arm64) echo aarch64-apple-darwin ;;
		x86_64)
			if under_rosetta; then
				echo aarch64-apple-darwin
			else
				echo x86_64-apple-darwin
			fi
			;;
		*) err "no haven-relay build for macOS on '$_arch'" ;;
		esac
		;;
	MINGW* | MSYS* | CYGWIN* | Windows_NT)
		err "this installer is for Linux and macOS; on Windows, download the .zip from $HAVEN_RELAY_RELEASES"
		;;
	*) err "no haven-relay build for '$_os' (there are builds for Linux and macOS)" ;;
	esac
}

download_base() {
	if [ -n "${HAVEN_RELAY_DOWNLOAD_URL:-}" ]; then
		echo "${HAVEN_RELAY_DOWNLOAD_URL%/}"
	elif [ -n "$_version" ]; then
		echo "$HAVEN_RELAY_RELEASES/download/$_version"
	else
		echo "$HAVEN_RELAY_RELEASES/latest/download"
	fi
}

# --- fetching and checking -----------------------------------------------------------------

# download URL FILE: with curl or wget, failing on HTTP errors.
download() {
	if check_cmd curl; then
		case "$1" in
		https://*) curl --proto '=https' --tlsv1.2 -fsSL --retry 3 -o "$2" "$1" ;;
		*) curl -fsSL --retry 3 -o "$2" "$1" ;;
		esac
	elif check_cmd wget; then
		wget -q -O "$2" "$1"
	else
		err "need 'curl' or 'wget' to download (or install a local file with --from)"
	fi
}

sha256_of() {
	if check_cmd sha256sum; then
		sha256sum "$1" | cut -d ' ' -f 1
	elif check_cmd shasum; then
		shasum -a 256 "$1" | cut -d ' ' -f 1
	elif check_cmd openssl; then
		openssl dgst -sha256 -r "$1" | cut -d ' ' -f 1
	else
		err "need 'sha256sum', 'shasum' or 'openssl' to check the download"
	fi
}

# verify_sha256 FILE SUMS NAME: FILE's hash must be the one SUMS lists for NAME.
verify_sha256() {
	_expected="$(awk -v f="$3" '$2 == f || $2 == "*" f { print $1; exit }' "$2")"
	[ -n "$_expected" ] || err "$3 is not listed in SHA256SUMS"
	_actual="$(sha256_of "$1")" || exit 1
	if [ "$_actual" != "$_expected" ]; then
		err "checksum mismatch for $3 (expected $_expected, got $_actual): not installing it"
	fi
}

# unpack ARCHIVE: extracts into the temp dir and prints the binary's path.
unpack() {
	mkdir "$_tmp/unpacked" || err "cannot create $_tmp/unpacked"
	tar -xzf "$1" -C "$_tmp/unpacked" || err "cannot unpack $1"
	[ -f "$_tmp/unpacked/haven-relay" ] || err "$1 has no haven-relay binary at its root"
	echo "$_tmp/unpacked/haven-relay"
}

# Prints the path of a checked binary in the temp dir.
fetch_binary() {
	if [ -n "$_from" ]; then
		[ -f "$_from" ] || err "--from $_from: no such file"
		case "$_from" in
		*.tar.gz | *.tgz)
			_sums="$(dirname "$_from")/SHA256SUMS"
			if [ -f "$_sums" ]; then
				verify_sha256 "$_from" "$_sums" "$(basename "$_from")"
			else
				say "no SHA256SUMS next to $_from: installing it unchecked" >&2
			fi
			unpack "$_from"
			;;
		*)
			cp "$_from" "$_tmp/haven-relay" || err "cannot copy $_from"
			echo "$_tmp/haven-relay"
			;;
		esac
		return
	fi
	_target="$(detect_target)" || exit 1
	_base="$(download_base)"
	_archive="haven-relay-$_target.tar.gz"
	say "downloading $_base/$_archive" >&2
	download "$_base/$_archive" "$_tmp/$_archive" || err "download failed: $_base/$_archive"
	download "$_base/SHA256SUMS" "$_tmp/SHA256SUMS" || err "download failed: $_base/SHA256SUMS"
	verify_sha256 "$_tmp/$_archive" "$_tmp/SHA256SUMS" "$_archive"
	unpack "$_tmp/$_archive"
}

# --- installing ----------------------------------------------------------------------------

install_binary() {
	_src="$(fetch_binary)" || exit 1
	ensure mkdir -p "$_bin_dir"
	# Copy beside the old binary, check that the copy runs here, then rename over the old one:
	# a running relay keeps its old file, an interrupted copy never leaves half a binary under
	# the real name, and a build that does not run here never replaces one that does.
	_part="$_bin_dir/.haven-relay.part.$$"
	if ! cp "$_src" "$_part" || ! chmod 755 "$_part"; then
		rm -f "$_part"
		err "cannot install into $_bin_dir (is it writable? choose another with --bin-dir)"
	fi
	if ! _installed="$("$_part" --version 2>/dev/null)"; then
		rm -f "$_part"
		err "the new haven-relay does not run on this machine (wrong build for this CPU?); nothing was replaced"
	fi
	_bin="$_bin_dir/haven-relay"
	if ! mv -f "$_part" "$_bin"; then
		rm -f "$_part"
		err "cannot install into $_bin_dir (is it writable? choose another with --bin-dir)"
	fi
	say "installed $_installed to $_bin"
	case ":$PATH:" in
	*":$_bin_dir:"*) ;;
	*) warn "$_bin_dir is not on your PATH; add it with: export PATH=\"$_bin_dir:\$PATH\" (in ~/.profile)" ;;
	esac
}

add_cron() {
	need_cmd crontab
	_log_dir="$HOME/.haven-relay"
	ensure mkdir -p "$_log_dir"
	_line="@reboot \"$_bin\" run >>\"$_log_dir/relay.log\" 2>&1"
	_current="$(crontab -l 2>/dev/null)" || _current=""
	case "$_current" in
	*"@reboot \"$_bin\" run"*)
		say "crontab already starts haven-relay at boot"
		return
		;;
	esac
	if [ -n "$_current" ]; then
		printf '%s\n%s\n' "$_current" "$_line" | crontab - || err "cannot update your crontab"
	else
		printf '%s\n' "$_line" | crontab - || err "cannot update your crontab"
	fi
	say "added to your crontab: $_line"
}

print_next_steps() {
	cat <<EOF

Next: start your relay with the circle link from the app:

    haven-relay run --link "haven-relay://circle#…"

It prints a QR code and a relay link: scan or paste it in the app. The circle is
remembered, so later starts need just 'haven-relay run'. To keep it running after you
log out, install the systemd user unit (Linux) or run setup-macos.sh (macOS): see
docs/OPERATIONS.md.
EOF
}

# --- the app's "Custom S3 bucket" mode -----------------------------------------------------

random_hex() {
	od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'
}

# Reads KEY from the env file FILE.
env_value() {
	sed -n "s/^$1=//p" "$2" | head -n 1
}

# Creates (once) the bucket's key pair in a 0600 env file in the bucket's folder.
bucket_keys() {
	_env_file="$_dir/bucket.env"
	if [ -f "$_env_file" ]; then
		_access_key="$(env_value HAVEN_RELAY_ACCESS_KEY "$_env_file")"
		_secret_key="$(env_value HAVEN_RELAY_SECRET_KEY "$_env_file")"
		if [ -n "$_access_key" ] && [ -n "$_secret_key" ]; then
			say "using the keys in $_env_file"
			return
		fi
	fi
	[ -r /dev/urandom ] || err "need /dev/urandom to make the bucket's keys"
	_access_key="HAVN$(random_hex 8 | tr 'abcdef' 'ABCDEF')"
	_secret_key="$(random_hex 20)"
	[ ${#_access_key} -eq 20 ] && [ ${#_secret_key} -eq 40 ] || err "cannot read random bytes for the keys"
	(
		umask 077
		printf '%s\n' \
			"# The S3 keys of the bucket served from this folder (keep this file secret)." \
			"HAVEN_RELAY_ACCESS_KEY=$_access_key" \
			"HAVEN_RELAY_SECRET_KEY=$_secret_key" \
			"# rclone reads list flags from the environment as CSV, so the pair is quoted." \
			"RCLONE_AUTH_KEY='\"$_access_key,$_secret_key\"'" >"$_env_file"
	) || err "cannot write $_env_file"
	chmod 600 "$_env_file" || err "cannot make $_env_file private"
	say "created the bucket's keys in $_env_file (mode 0600)"
}

systemd_user_works() {
	check_cmd systemctl && systemctl --user show-environment >/dev/null 2>&1
}

start_bucket_systemd() {
	_unit_dir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
	ensure mkdir -p "$_unit_dir"
	if [ "$_engine" = rclone ]; then
		_exec="\"$_rclone\" serve s3 --addr $_addr \"$_dir\""
	else
		_exec="\"$_bin\" run --s3-addr $_addr --data-dir \"$_dir\""
	fi
	cat >"$_unit_dir/haven-bucket.service" <<EOF || err "cannot write $_unit_dir/haven-bucket.service"
# Written by the haven-relay installer (--bucket): serves $_dir as an S3 bucket.
[Unit]
Description=haven-relay S3 bucket in $_dir
After=network-online.target
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
EnvironmentFile=$_env_file
ExecStart=$_exec
Restart=on-failure
RestartSec=5
NoNewPrivileges=yes

[Install]
WantedBy=default.target
EOF
	ensure systemctl --user daemon-reload
	ensure systemctl --user enable haven-bucket.service
	ensure systemctl --user restart haven-bucket.service
	say "started the systemd user service haven-bucket (logs: journalctl --user -u haven-bucket)"
	say "to keep it running while you are logged out: loginctl enable-linger $(id -un)"
}

start_bucket_launchd() {
	_label=com.haven.bucket
	_plist="$HOME/Library/LaunchAgents/$_label.plist"
	ensure mkdir -p "$HOME/Library/LaunchAgents" "$HOME/Library/Logs"
	# /bin/sh reads the keys from the 0600 env file, so they are not copied into the plist.
	if [ "$_engine" = rclone ]; then
		set -- "$_rclone" serve s3 --addr "$_addr" "$_dir"
	else
		set -- "$_bin" run --s3-addr "$_addr" --data-dir "$_dir"
	fi
	{
		cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>$_label</string>
	<key>ProgramArguments</key>
	<array>
		<string>/bin/sh</string>
		<string>-c</string>
		<string>set -a; . "\$0"; set +a; exec "\$@"</string>
		<string>$(xml_escape "$_env_file")</string>
EOF
		for _arg in "$@"; do
			printf '\t\t<string>%s</string>\n' "$(xml_escape "$_arg")"
		done
		cat <<EOF
	</array>
	<key>KeepAlive</key>
	<true/>
	<key>RunAtLoad</key>
	<true/>
	<key>StandardOutPath</key>
	<string>$(xml_escape "$HOME/Library/Logs/haven-bucket.log")</string>
	<key>StandardErrorPath</key>
	<string>$(xml_escape "$HOME/Library/Logs/haven-bucket.log")</string>
	<key>EnvironmentVariables</key>
	<dict>
		<key>PATH</key>
		<string>/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin</string>
	</dict>
</dict>
</plist>
EOF
	} >"$_plist" || err "cannot write $_plist"
	launchctl bootout "gui/$(id -u)/$_label" >/dev/null 2>&1 || true
	ensure launchctl bootstrap "gui/$(id -u)" "$_plist"
	say "started the launchd agent $_label (logs: ~/Library/Logs/haven-bucket.log)"
}

xml_escape() {
	printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'
}

start_bucket_nohup() {
	_pid_file="$_dir/bucket.pid"
	_log="$_dir/bucket.log"
	_old="$(cat "$_pid_file" 2>/dev/null)"
	# Only if that pid is still our server, not a process that got its number since.
	_comm="$(cat "/proc/${_old:-0}/comm" 2>/dev/null || ps -p "${_old:-0}" -o comm= 2>/dev/null)"
	case "$_comm" in
	*haven-relay* | *rclone*)
		say "stopping the bucket server started before (pid $_old)"
		kill "$_old" 2>/dev/null
		# It finishes in-flight requests first; the port is free once it is gone.
		_tries=0
		while kill -0 "$_old" 2>/dev/null; do
			_tries=$((_tries + 1))
			[ "$_tries" -le 30 ] || err "the bucket server (pid $_old) did not stop within 30 s"
			sleep 1
		done
		;;
	esac
	(
		set -a
		# shellcheck disable=SC1090
		. "$_env_file"
		set +a
		if [ "$_engine" = rclone ]; then
			exec nohup "$_rclone" serve s3 --addr "$_addr" "$_dir" >>"$_log" 2>&1 </dev/null
		else
			exec nohup "$_bin" run --s3-addr "$_addr" --data-dir "$_dir" >>"$_log" 2>&1 </dev/null
		fi
	) &
	_pid=$!
	echo "$_pid" >"$_pid_file"
	say "started the bucket server in the background (pid $_pid, log $_log); it will not restart after a reboot"
	say "stop it with: kill \$(cat \"$_pid_file\")"
}

# host:port as clients on this machine reach it.
local_endpoint() {
	_port="${_addr##*:}"
	_host="${_addr%:*}"
	case "$_host" in
	0.0.0.0 | "" | "[::]" | "::") _host=127.0.0.1 ;;
	esac
	echo "http://$_host:$_port"
}

# The endpoint to paste into the app.
public_endpoint() {
	_host="${_addr%:*}"
	case "$_host" in
	0.0.0.0 | "" | "[::]" | "::")
		_ip="$(hostname -I 2>/dev/null | awk '{ print $1 }')"
		[ -n "$_ip" ] || _ip="$(ipconfig getifaddr en0 2>/dev/null)"
		[ -n "$_ip" ] || _ip="$(hostname)"
		echo "http://$_ip:${_addr##*:}"
		;;
	*) local_endpoint ;;
	esac
}

# Waits until the endpoint answers HTTP (any status).
wait_for_endpoint() {
	_url="$(local_endpoint)/"
	_tries=0
	while [ "$_tries" -lt 30 ]; do
		if [ -n "${_pid:-}" ] && ! kill -0 "$_pid" 2>/dev/null; then
			tail -n 5 "$_log" >&2 2>/dev/null
			err "the bucket server stopped at once (log: $_log)"
		fi
		if check_cmd curl; then
			curl -s -o /dev/null "$_url" && return 0
		elif wget -S -O /dev/null "$_url" 2>&1 | grep -q 'HTTP/'; then
			return 0
		fi
		_tries=$((_tries + 1))
		sleep 1
	done
	err "the bucket did not answer on $_url within 30 s (see its log)"
}

create_bucket() {
	_endpoint="$(local_endpoint)"
	_aws="${HAVEN_RELAY_AWS_CLI:-}"
	[ -n "$_aws" ] || _aws="$(command -v aws 2>/dev/null)" || _aws=""
	if [ -n "$_aws" ]; then
		if AWS_ACCESS_KEY_ID="$_access_key" AWS_SECRET_ACCESS_KEY="$_secret_key" \
			"$_aws" --endpoint-url "$_endpoint" --region us-east-1 \
			s3api head-bucket --bucket "$_bucket_name" >/dev/null 2>&1; then
			say "bucket $_bucket_name already exists"
			return
		fi
		AWS_ACCESS_KEY_ID="$_access_key" AWS_SECRET_ACCESS_KEY="$_secret_key" \
			"$_aws" --endpoint-url "$_endpoint" --region us-east-1 \
			s3api create-bucket --bucket "$_bucket_name" >/dev/null ||
			err "could not create bucket $_bucket_name with $_aws"
	elif check_cmd curl && curl --help all 2>/dev/null | grep -q -- '--aws-sigv4'; then
		# An empty body's SHA-256, which SigV4 servers want in x-amz-content-sha256.
		_empty=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
		_code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
			-H "x-amz-content-sha256: $_empty" --aws-sigv4 "aws:amz:us-east-1:s3" \
			--user "$_access_key:$_secret_key" "$_endpoint/$_bucket_name")"
		case "$_code" in
		200) ;;
		409) say "bucket $_bucket_name already exists" && return ;;
		*) err "could not create bucket $_bucket_name (HTTP $_code)" ;;
		esac
	else
		err "need the aws CLI (pip install awscli) or curl 7.75+ to create the bucket; then re-run"
	fi
	say "created bucket $_bucket_name"
}

print_bucket() {
	cat <<EOF

Your S3 bucket is ready. In the app, choose "Custom S3 bucket" and enter:

  Endpoint:    $(public_endpoint)
  Region:      us-east-1
  Bucket:      $_bucket_name
  Access key:  $_access_key
  Secret key:  $_secret_key

The keys are kept in $_env_file.
EOF
	case "$_addr" in
	127.* | localhost:*) printf '%s\n' "It listens on $_addr only: phones on your network need --addr 0.0.0.0:${_addr##*:}." ;;
	esac
}

bucket_native() {
	if [ "$_engine" = rclone ]; then
		_rclone="${HAVEN_RELAY_RCLONE_BIN:-}"
		[ -n "$_rclone" ] || _rclone="$(command -v rclone 2>/dev/null)" ||
			err "need 'rclone' for --rclone (https://rclone.org/install/), or leave --rclone out"
	fi
	if [ "$_service" = yes ] && [ "$(uname -s)" = Darwin ] && check_cmd launchctl; then
		start_bucket_launchd
	elif [ "$_service" = yes ] && systemd_user_works; then
		start_bucket_systemd
	else
		if [ "$_service" = yes ]; then
			say "no systemd user manager or launchd here: starting the bucket in the background"
		fi
		start_bucket_nohup
	fi
	wait_for_endpoint
	if [ "$_engine" = rclone ]; then
		# rclone serves each top-level folder as a bucket.
		ensure mkdir -p "$_dir/$_bucket_name"
	else
		create_bucket
	fi
}

bucket_docker() {
	need_cmd docker
	docker compose version >/dev/null 2>&1 || err "need the 'docker compose' plugin (or use --native)"
	_compose_dir="${XDG_CONFIG_HOME:-$HOME/.config}/haven-relay/compose"
	ensure mkdir -p "$_compose_dir"
	_base="$(download_base)"
	download "$_base/docker-compose.yml" "$_tmp/docker-compose.yml" ||
		err "download failed: $_base/docker-compose.yml"
	download "$_base/SHA256SUMS" "$_tmp/SHA256SUMS" || err "download failed: $_base/SHA256SUMS"
	verify_sha256 "$_tmp/docker-compose.yml" "$_tmp/SHA256SUMS" docker-compose.yml
	ensure cp "$_tmp/docker-compose.yml" "$_compose_dir/docker-compose.yml"
	# The compose file reads the keys from the folder's bucket.env; this .env holds no secret.
	printf '%s\n' \
		"HAVEN_BUCKET_DIR=$_dir" \
		"HAVEN_BUCKET_BIND=${_addr%:*}" \
		"HAVEN_BUCKET_PORT=${_addr##*:}" \
		"HAVEN_UID=$(id -u)" \
		"HAVEN_GID=$(id -g)" >"$_compose_dir/.env" || err "cannot write $_compose_dir/.env"
	ensure docker compose --project-directory "$_compose_dir" --profile bucket up -d bucket
	wait_for_endpoint
	create_bucket
}

setup_bucket() {
	ensure mkdir -p "$_dir"
	chmod 700 "$_dir" 2>/dev/null || true
	_dir="$(cd "$_dir" && pwd)" || err "cannot enter $_dir"
	bucket_keys
	if [ "$_engine" = docker ]; then
		bucket_docker
	else
		bucket_native
	fi
	print_bucket
}

# --- main ----------------------------------------------------------------------------------

main() {
	_version=""
	_bin_dir=""
	_from=""
	_cron=no
	_bucket=no
	_engine=""
	_dir=""
	_addr=127.0.0.1:8333
	_bucket_name=haven
	_service=yes
	_print=""
	while [ $# -gt 0 ]; do
		case "$1" in
		-h | --help)
			usage
			return 0
			;;
		--version | --bin-dir | --from | --dir | --addr | --bucket-name)
			[ $# -ge 2 ] && [ -n "$2" ] || err "$1 needs a value (see --help)"
			case "$1" in
			--version) _version="$2" ;;
			--bin-dir) _bin_dir="$2" ;;
			--from) _from="$2" ;;
			--dir) _dir="$2" ;;
			--addr) _addr="$2" ;;
			--bucket-name) _bucket_name="$2" ;;
			esac
			shift
			;;
		--cron) _cron=yes ;;
		--bucket) _bucket=yes ;;
		--native) _engine=native ;;
		--docker) _engine=docker ;;
		--rclone) _engine=rclone ;;
		--no-service) _service=no ;;
		--print-target | --print-url) _print="$1" ;;
		*) err "unknown option '$1' (see --help)" ;;
		esac
		shift
	done
	case "$_version" in
	"" | v[0-9]*) ;;
	[0-9]*) _version="v$_version" ;;
	*) err "--version wants a release tag like v0.2.0, not '$_version'" ;;
	esac
	case "$_addr" in
	*:[0-9]*) ;;
	*) err "--addr wants HOST:PORT, like 127.0.0.1:8333, not '$_addr'" ;;
	esac

	if [ "$_print" = --print-target ]; then
		detect_target
		return
	fi
	if [ "$_print" = --print-url ]; then
		_target="$(detect_target)" || exit 1
		_base="$(download_base)"
		printf '%s\n%s\n' "$_base/haven-relay-$_target.tar.gz" "$_base/SHA256SUMS"
		return
	fi

	[ -n "${HOME:-}" ] || err "HOME is not set"
	[ -n "$_bin_dir" ] || _bin_dir="$HOME/.local/bin"
	[ -n "$_dir" ] || _dir="$HOME/haven-bucket"
	need_cmd uname
	need_cmd mkdir
	need_cmd tar
	need_cmd awk

	_tmp="$(mktemp -d 2>/dev/null || mktemp -d -t haven-relay)" || err "cannot create a temp dir"
	trap 'rm -rf "$_tmp"' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM

	install_binary
	if [ "$_cron" = yes ]; then
		add_cron
	fi
	if [ "$_bucket" = yes ]; then
		if [ -z "$_engine" ]; then
			_engine=native
			if check_cmd docker; then
				if docker compose version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
					_engine=docker
				else
					say "docker is here but 'docker compose' or its daemon is not: serving the bucket natively"
				fi
			fi
		fi
		setup_bucket
	else
		print_next_steps
	fi
}

main "$@"
