#!/bin/sh
# shellcheck shell=sh
#
# Keeps haven-relay running on a Mac: writes the launchd agent
# ~/Library/LaunchAgents/com.haven.relay.plist (started at login, restarted when it stops) and
# loads it. Run it after install.sh:
#
#     sh setup-macos.sh --link "haven-relay://circle#…"    # the first time
#     sh setup-macos.sh                                     # later: rewrites the agent, no link
#
# POSIX sh; all work is in functions and the last line calls main.

set -u

LABEL=com.haven.relay

usage() {
	cat <<EOF
Usage: setup-macos.sh [--link LINK] [--bin PATH] [--data-dir DIR]

Writes the launchd agent ~/Library/LaunchAgents/$LABEL.plist that runs
'haven-relay run' at login and whenever it stops, then loads it.

Options:
  --link LINK      The circle link from the app; passed to the relay only while it has
                   not joined a circle yet (it remembers the circle after that)
  --bin PATH       The haven-relay binary (default: haven-relay on PATH, else
                   ~/.local/bin/haven-relay)
  --data-dir DIR   The relay's data dir (default: \$HAVEN_RELAY_DATA_DIR or ~/.haven-relay)
  --uninstall      Stop the agent and remove its plist
  -h, --help       Print this help

Logs: ~/Library/Logs/haven-relay.log. Stop: launchctl bootout gui/\$(id -u)/$LABEL
EOF
}

say() {
	printf 'setup-macos: %s\n' "$1"
}

err() {
	printf 'setup-macos: error: %s\n' "$1" >&2
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

ensure() {
	if ! "$@"; then
		err "command failed: $*"
	fi
}

xml_escape() {
	printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'
}

# Prints the plist for the agent; its arguments are the program's arguments.
plist() {
	cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>$LABEL</string>
	<key>ProgramArguments</key>
	<array>
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
	<key>ThrottleInterval</key>
	<integer>10</integer>
	<key>StandardOutPath</key>
	<string>$(xml_escape "$_log")</string>
	<key>StandardErrorPath</key>
	<string>$(xml_escape "$_log")</string>
	<key>EnvironmentVariables</key>
	<dict>
		<key>PATH</key>
		<string>/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin</string>
		<key>HAVEN_RELAY_DATA_DIR</key>
		<string>$(xml_escape "$_data_dir")</string>
	</dict>
</dict>
</plist>
EOF
}

# Unloads the agent if launchd has it.
bootout() {
	if launchctl print "$_domain/$LABEL" >/dev/null 2>&1; then
		launchctl bootout "$_domain/$LABEL" || err "cannot stop the running agent $LABEL"
	fi
}

main() {
	_link=""
	_bin=""
	_data_dir="${HAVEN_RELAY_DATA_DIR:-}"
	_uninstall=no
	while [ $# -gt 0 ]; do
		case "$1" in
		-h | --help)
			usage
			return 0
			;;
		--link | --bin | --data-dir)
			[ $# -ge 2 ] && [ -n "$2" ] || err "$1 needs a value (see --help)"
			case "$1" in
			--link) _link="$2" ;;
			--bin) _bin="$2" ;;
			--data-dir) _data_dir="$2" ;;
			esac
			shift
			;;
		--uninstall) _uninstall=yes ;;
		*) err "unknown option '$1' (see --help)" ;;
		esac
		shift
	done
	[ "$(uname -s)" = Darwin ] || err "this sets up launchd on macOS; on Linux use the systemd user unit (docs/OPERATIONS.md)"
	[ -n "${HOME:-}" ] || err "HOME is not set"
	need_cmd launchctl
	need_cmd id
	_domain="gui/$(id -u)"
	_plist="$HOME/Library/LaunchAgents/$LABEL.plist"
	_log="$HOME/Library/Logs/haven-relay.log"

	if [ "$_uninstall" = yes ]; then
		bootout
		rm -f "$_plist" || err "cannot remove $_plist"
		say "stopped $LABEL and removed $_plist"
		return 0
	fi

	[ -n "$_data_dir" ] || _data_dir="$HOME/.haven-relay"
	if [ -z "$_bin" ]; then
		_bin="$(command -v haven-relay 2>/dev/null)" || _bin="$HOME/.local/bin/haven-relay"
	fi
	case "$_bin" in
	/*) ;;
	*) _bin="$(pwd)/$_bin" ;;
	esac
	[ -x "$_bin" ] || err "no haven-relay binary at $_bin (install it first, or pass --bin PATH)"

	set -- "$_bin" run
	if [ -n "$_link" ]; then
		case "$_link" in
		haven-relay://*) ;;
		*) err "--link wants the circle link from the app (haven-relay://circle#…)" ;;
		esac
		if [ -f "$_data_dir/circle-link" ]; then
			say "the relay in $_data_dir has joined a circle already: starting it without --link"
		else
			set -- "$@" --link "$_link"
		fi
	elif [ ! -f "$_data_dir/circle-link" ]; then
		say "no circle yet: the relay runs without a tunnel until you re-run this with --link"
	fi

	ensure mkdir -p "$HOME/Library/LaunchAgents" "$HOME/Library/Logs"
	# The circle link is a secret of the circle: the plist is readable by this user only.
	umask 077
	plist "$@" >"$_plist.part" || err "cannot write $_plist"
	ensure mv -f "$_plist.part" "$_plist"
	bootout
	ensure launchctl bootstrap "$_domain" "$_plist"
	say "loaded $LABEL: haven-relay starts now, at every login, and again if it stops"
	say "its QR code and relay link are in $_log (or run: haven-relay link)"
	say "stop it with: launchctl bootout $_domain/$LABEL"
}

main "$@"
