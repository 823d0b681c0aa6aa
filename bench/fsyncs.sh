#!/bin/bash
# Count the supervisor's fsyncs at rest: the shipped example (interval 0.1 s) from a copy of
# the home in REPO (default: this repository), 30 s under `strace -c`, nothing changing.
#   bash bench/fsyncs.sh [REPO]        (needs strace: apt-get install strace)
set -eu
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
h=$(mktemp -d /var/tmp/hadaemon-fsyncs-XXXX)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$h"' EXIT
cp -r "$repo/etc" "$repo/checks" "$repo/actions" "$h/"
sed -i 's/^interval = 2/interval = 0.1/' "$h/etc/checks.conf"
(cd "$repo" && exec python -m hadaemon --home "$h" run 2>/dev/null) & pid=$!
sleep 5
echo "fsync/fdatasync calls of the supervisor in 30 s at rest ($repo):"
timeout 30 strace -f -c -e trace=fsync,fdatasync -p "$pid" 2>&1 | grep -E "calls|fsync" || echo "none"
