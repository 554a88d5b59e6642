#!/usr/bin/env bash
# Measures the desktop app (release build): time from starting the process
# to the window's first request (the UI has loaded and asks for its data:
# the log line "ui ready"), and the resident memory of the app and its
# WebKit processes after 10 s idle. Runs N times under Xvfb.
# Usage: src-tauri/perf/measure-app.sh PATH/TO/coffer-desktop [N]
set -euo pipefail
bin="$1"; runs="${2:-5}"
export DISPLAY="${DISPLAY:-:97}"
if ! xdpyinfo >/dev/null 2>&1; then Xvfb "$DISPLAY" -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!; sleep 1; fi
tree_kb() { # $2 (Rss or Pss) of a process and all its descendants, in KiB
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true) $(for c in $(pgrep -P "$1" || true); do pgrep -P "$c" || true; done); do
    total=$(( total + $(awk -v k="$2:" '$1 == k {print $2}' /proc/"$p"/smaps_rollup 2>/dev/null || echo 0) ))
  done
  echo "$total"
}
for i in $(seq 1 "$runs"); do
  dir=$(mktemp -d); log="$dir/log"
  t0=$(date +%s%N)
  COFFER_LOG=info "$bin" --data-dir "$dir/data" --no-keyring >"$log" 2>&1 & pid=$!
  until grep -q "ui ready" "$log" 2>/dev/null; do
    sleep 0.005
    if ! kill -0 "$pid" 2>/dev/null; then echo "app exited"; cat "$log"; exit 1; fi
  done
  t1=$(date +%s%N)
  sleep 10
  rss=$(awk '$1 == "Rss:" {print $2}' /proc/"$pid"/smaps_rollup)
  pss=$(awk '$1 == "Pss:" {print $2}' /proc/"$pid"/smaps_rollup)
  anon=$(awk '$1 == "Anonymous:" {print $2}' /proc/"$pid"/smaps_rollup)
  all_pss=$(tree_kb "$pid" Pss)
  echo "run $i: start to UI ready $(( (t1 - t0) / 1000000 )) ms; idle app process RSS $(( rss / 1024 )) MiB (PSS $(( pss / 1024 )), private heap $(( anon / 1024 ))); app + WebKit processes PSS $(( all_pss / 1024 )) MiB"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
done
[ -n "${xvfb:-}" ] && kill "$xvfb"
