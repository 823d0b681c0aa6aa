#!/usr/bin/env bash
# How docs/status-page.png is made: the shipped example runs for about five minutes (db1 hands
# over to db2, the failover's four commands run, then db1 is down for a while and comes back as
# a slave); its status page is rendered from `hadaemon status --json` and `history --json` and
# shot by Debian's headless Chromium, then made small by pngquant where it is installed.
# Run at the top of a clone with the README's venv active (hadaemon importable); as root too.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$PWD/docs/status-page.png
py=${PYTHON:-python3}
work=$(mktemp -d)
home=$work/hadaemon
ha() { "$py" -m hadaemon --home "$home" "$@"; }
trap 'ha stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
wait_for() { until ha "$1" | grep -q "$2"; do sleep 1; done; }

"$py" -m hadaemon init "$home" >/dev/null
ha start >/dev/null
wait_for status '^db1 *master'; wait_for status '^db2 *slave'
sleep 50
echo slave > "$home/var/role/db1"; wait_for status '^db1 *slave'
echo master > "$home/var/role/db2"; wait_for history 'db2: slave -> master \[done\]'
sleep 70
echo down > "$home/var/role/db1"; wait_for status '^db1 *down'
sleep 45
echo slave > "$home/var/role/db1"; wait_for status '^db1 *slave'
sleep 60

ha status --json > "$work/status.json" || true  # exit 4 while a check is stale: shown on the page
ha history --json --limit 200 > "$work/history.json"
"$py" - "$work" <<'PY'
import json, sys, time
from pathlib import Path
from hadaemon import page
work = Path(sys.argv[1])
status, history = (json.loads((work / f"{n}.json").read_text()) for n in ("status", "history"))
(work / "page.html").write_text(page.render(status, history, time.time()))
PY
sandbox=(); [ "$(id -u)" = 0 ] && sandbox=(--no-sandbox)
chromium --headless "${sandbox[@]}" --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --hide-scrollbars --window-size=1100,860 \
  --screenshot="$work/shot.png" "file://$work/page.html" 2>/dev/null
if command -v pngquant >/dev/null; then
  pngquant --force --quality=70-95 --strip --output "$out" "$work/shot.png"
else
  cp "$work/shot.png" "$out"
fi
echo "$out: $(stat -c %s "$out") bytes"
