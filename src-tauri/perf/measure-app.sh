#!/usr/bin/env bash
# Measures the desktop app (release build). Runs N times under Xvfb.
#
# key mode (default): time from starting the process to the window's first
#   request (the UI has loaded and asks for its data: the log line "ui
#   ready"), and the memory of the app and its WebKit processes after 10 s
#   idle, with a fresh data directory.
# vault mode: the app is started by WebKitWebDriver (as in the WebDriver
#   tests), which clicks "Use a recovery code" on the first-run screen: the
#   app starts the embedded 5-node demo fleet and its witness and verifies it
#   over the air. Memory is taken 10 s after the fleet was shown as verified.
#   For comparison, "vault-key" is the same WebDriver start without the
#   click (the fleet is not started).
#
# Usage: src-tauri/perf/measure-app.sh PATH/TO/coffer-desktop [N] [key|vault|vault-key]
# Extra environment for the app (e.g. MALLOC_ARENA_MAX=2) is passed through;
# MEASURE_THREADS=1 also lists the app's threads.
set -euo pipefail
bin="$(realpath "$1")"; runs="${2:-5}"; mode="${3:-key}"
export DISPLAY="${DISPLAY:-:97}"
if ! xdpyinfo >/dev/null 2>&1; then Xvfb "$DISPLAY" -screen 0 1280x800x24 >/dev/null 2>&1 & xvfb=$!; sleep 1; fi
tree_kb() { # $2 (Rss, Pss or Uss = Private_Clean + Private_Dirty) of a process and all its descendants, in KiB
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true) $(for c in $(pgrep -P "$1" || true); do pgrep -P "$c" || true; done); do
    total=$(( total + $(kb "$p" "$2") ))
  done
  echo "$total"
}
kb() { # pid, Rss | Pss | Anonymous | Uss -> KiB
  awk -v k="$2" '$1 == k ":" {s += $2} k == "Uss" && ($1 == "Private_Clean:" || $1 == "Private_Dirty:") {s += $2} END {print s + 0}' /proc/"$1"/smaps_rollup 2>/dev/null || echo 0
}
report() { # run number, app pid, extra text
  local others
  # PSS shares library pages with every process that maps them: other
  # WebKit apps running at the same time lower it. USS (private pages) does not move.
  others=$(( $(pgrep -c -f 'WebKitWebProcess' || true) - $(pgrep -c -P "$2" -f WebKitWebProcess || true) ))
  if [ -n "${MEASURE_THREADS:-}" ]; then # MEASURE_THREADS=1: the app's threads by name
    for t in /proc/"$2"/task/*; do cat "$t/comm"; done | sort | uniq -c | tr -s ' ' | paste -sd, -
  fi
  echo "run $1 ($mode): $3idle app process RSS $(( $(kb "$2" Rss) / 1024 )) MiB, PSS $(( $(kb "$2" Pss) / 1024 )), USS $(( $(kb "$2" Uss) / 1024 )), anonymous $(( $(kb "$2" Anonymous) / 1024 )), threads $(ls /proc/"$2"/task | wc -l); app + WebKit processes PSS $(( $(tree_kb "$2" Pss) / 1024 )) MiB, USS $(( $(tree_kb "$2" Uss) / 1024 )) MiB; other WebKit web processes on the machine: $others"
}

# WebDriver (vault modes): WebKitWebDriver on a free port, JSON over curl.
wd() { # METHOD PATH [JSON] -> response body
  curl -sf -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "http://127.0.0.1:$port$2"
}
json() { python3 -c 'import json,sys; v=json.load(sys.stdin)["value"]; print(eval(sys.argv[1]))' "$1"; }
find_el() { # testid -> element id (waits up to 30 s)
  local i
  for i in $(seq 1 300); do
    if r=$(wd POST "/session/$sid/element" "{\"using\":\"css selector\",\"value\":\"[data-testid=\\\"$1\\\"]\"}"); then
      echo "$r" | json 'list(v.values())[0]'; return
    fi
    sleep 0.1
  done
  echo "no element $1" >&2; return 1
}

for i in $(seq 1 "$runs"); do
  dir=$(mktemp -d); log="$dir/log"
  if [ "$mode" = key ]; then
    t0=$(date +%s%N)
    COFFER_LOG=info "$bin" --data-dir "$dir/data" --no-keyring >"$log" 2>&1 & pid=$!
    until grep -q "ui ready" "$log" 2>/dev/null; do
      sleep 0.005
      if ! kill -0 "$pid" 2>/dev/null; then echo "app exited"; cat "$log"; exit 1; fi
    done
    t1=$(date +%s%N)
    sleep 10
    report "$i" "$pid" "start to UI ready $(( (t1 - t0) / 1000000 )) ms; "
    kill "$pid"; wait "$pid" 2>/dev/null || true
  else
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    # As tauri-driver does: the app enables WebKit automation when asked.
    TAURI_WEBVIEW_AUTOMATION=true WebKitWebDriver --port="$port" >"$dir/driver.log" 2>&1 & driver=$!
    for _ in $(seq 1 100); do wd GET /status >/dev/null 2>&1 && break; sleep 0.1; done
    caps="{\"capabilities\":{\"alwaysMatch\":{\"webkitgtk:browserOptions\":{\"binary\":\"$bin\",\"args\":[\"--data-dir\",\"$dir/data\",\"--no-keyring\"]}}}}"
    sid=$(wd POST /session "$caps" | json 'v["sessionId"]')
    pid=$(pgrep -f -n "^$bin --data-dir $dir/data")
    el=$(find_el onboard-mode-vault)
    if [ "$mode" = vault ]; then
      t0=$(date +%s%N)
      wd POST "/session/$sid/element/$el/click" '{}' >/dev/null
      fleet=$(find_el onboard-fleet)
      until [ "$(wd GET "/session/$sid/element/$fleet/attribute/data-verified" | json v)" = true ]; do
        sleep 0.05
        [ $(( ($(date +%s%N) - t0) / 1000000000 )) -lt 60 ] || { echo "the fleet was not verified in 60 s"; exit 1; }
      done
      t1=$(date +%s%N)
      extra="fleet started and verified in $(( (t1 - t0) / 1000000 )) ms; "
    else
      extra=""
    fi
    sleep 10
    report "$i" "$pid" "$extra"
    wd DELETE "/session/$sid" >/dev/null || true
    kill "$driver"; wait "$driver" 2>/dev/null || true
  fi
  rm -rf "$dir"
done
[ -n "${xvfb:-}" ] && kill "$xvfb"
