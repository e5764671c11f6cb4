#!/usr/bin/env bash
# Ceph's S3 conformance suite (github.com/ceph/s3-tests) against the embedded store and a
# mirror set of two backends (a local directory and `rclone serve s3`), side by side, and the
# tests that pass on one but not the other. Not part of `tests/run.sh`: the suite lives on
# GitHub, which a fresh CI machine cannot reach. Results: docs/S3-COMPATIBILITY.md.
#
#   git clone https://github.com/ceph/s3-tests /path/to/s3-tests
#   bash tests/run.sh     # once: installs rclone into .tools/
#   cargo build && bash benches/conformance/run.sh /path/to/s3-tests
#
# The suite's bucket cleanup lists object versions; haven-relay has no versioning, so a copy of
# the suite is patched to clean up with a plain listing when ListObjectVersions is
# NotImplemented. Nothing else is changed.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUITE=${1:?usage: run.sh PATH-TO-S3-TESTS}
BIN=${BIN:-$PWD/target/debug/haven-relay}
RCLONE=${HAVEN_RELAY_RCLONE:-$PWD/.tools/venv/bin/rclone}
WORK=$(mktemp -d)
AK=0555b35654ad1656d804
SK='h7GhxuBLTrlhVUyxSPUKUV8r/2EI4ngqJxD7iBdBYLhwluN30JaT3Q=='
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cp -r "$SUITE" "$WORK/suite"
python3 - "$WORK/suite/s3tests/functional/__init__.py" <<'EOF'
import sys
path = sys.argv[1]
src = open(path).read()
old = "def list_versions(client, bucket, batch_size):\n"
new = old + """    try:
        client.list_object_versions(Bucket=bucket, MaxKeys=1)
    except ClientError as e:
        if e.response['Error']['Code'] != 'NotImplemented':
            raise
        pages = client.get_paginator('list_objects_v2').paginate(
            Bucket=bucket, PaginationConfig={'PageSize': batch_size})
        for page in pages:
            if page.get('Contents'):
                yield [{'Key': o['Key']} for o in page['Contents']]
        return
"""
assert old in src, "the suite's list_versions moved: update this patch"
open(path, "w").write(src.replace(old, new, 1))
EOF
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet --disable-pip-version-check -r "$WORK/suite/requirements.txt" pytest-timeout

RCLONE_PORT=$(free_port)
mkdir -p "$WORK/rclone/mirror" "$WORK/fs"
"$RCLONE" serve s3 --addr "127.0.0.1:$RCLONE_PORT" --auth-key rak,rsecret12345 "$WORK/rclone" \
  >"$WORK/rclone.log" 2>&1 &
PIDS+=($!)

EMBEDDED_PORT=$(free_port)
"$BIN" run --data-dir "$WORK/embedded" --s3-port "$EMBEDDED_PORT" --access-key "$AK" \
  --secret-key "$SK" >"$WORK/relay-embedded.log" 2>&1 &
PIDS+=($!)
MIRROR_PORT=$(free_port)
AWS_ACCESS_KEY_ID=rak AWS_SECRET_ACCESS_KEY=rsecret12345 "$BIN" run --data-dir "$WORK/mirror" \
  --s3-port "$MIRROR_PORT" --access-key "$AK" --secret-key "$SK" --backend "fs:$WORK/fs" \
  --backend "s3://mirror?endpoint=http://127.0.0.1:$RCLONE_PORT&region=us-east-1&path_style=true" \
  >"$WORK/relay-mirror.log" 2>&1 &
PIDS+=($!)
for port in "$EMBEDDED_PORT" "$MIRROR_PORT"; do
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
done

# Every user of the suite (main, alt, tenant) gets the relay's one key pair.
run_suite() {
  local label=$1 port=$2
  sed -e "s/^port = 8000/port = $port/" \
    -e 's/^bucket prefix = .*/bucket prefix = s3t-{random}-/' \
    -e "s|^access_key = .*|access_key = $AK|" -e "s|^secret_key = .*|secret_key = $SK|" \
    "$WORK/suite/s3tests.conf.SAMPLE" >"$WORK/$label.conf"
  (cd "$WORK/suite" && S3TEST_CONF="$WORK/$label.conf" "$WORK/venv/bin/python" -m pytest -q \
    -p no:cacheprovider --timeout 60 -o junit_family=xunit1 --junitxml="$WORK/$label.xml" \
    s3tests/functional/test_s3.py s3tests/functional/test_headers.py >"$WORK/$label.log" 2>&1) || true
}
run_suite embedded "$EMBEDDED_PORT" &
first=$!
run_suite mirror "$MIRROR_PORT"
wait "$first"

python3 - "$WORK/embedded.xml" "$WORK/mirror.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET

def outcomes(path):
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        status = "fail" if tags & {"failure", "error"} else "skip" if "skipped" in tags else "pass"
        out[case.get("classname", "") + "::" + case.get("name")] = status
    return out

embedded, mirror = outcomes(sys.argv[1]), outcomes(sys.argv[2])
for label, results in (("embedded store", embedded), ("mirror set (fs + rclone serve s3)", mirror)):
    counts = {s: list(results.values()).count(s) for s in ("pass", "fail", "skip")}
    print(f"{label}: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
only = lambda a, b: sorted(n for n, s in a.items() if s == "pass" and b.get(n) != "pass")
for label, names in (("pass only on the embedded store", only(embedded, mirror)),
                     ("pass only on the mirror set", only(mirror, embedded))):
    print(f"{label}: {len(names)}")
    for name in names:
        print("  " + name)
EOF
echo "logs and JUnit results: $WORK"
