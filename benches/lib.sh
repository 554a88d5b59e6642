# Shared helpers of the bench scripts (sourced, not run). Benchmarks are run
# by hand, never as timed tests; see docs/performance.md for how to run them
# on a quiet machine.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# Where installed peers (rustic) and their builds are kept between runs.
BENCH_CACHE=${BENCH_CACHE:-$HOME/.cache/coffer-bench}

# coffer_bin: sets COFFER_BIN to a release build of the CLI (built here if
# COFFER_BIN is not set).
coffer_bin() {
  if [ -z "${COFFER_BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -q -p coffer-cli)
    COFFER_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/coffer
  fi
  export COFFER_BIN
}

# rustic_bin: sets RUSTIC_BIN, installing rustic-rs (crates.io) into
# $BENCH_CACHE/rustic once: `cargo install` takes ~10-20 min on 2 cores, so
# the binary is kept. RUSTIC_VERSION pins a version (default: the one the
# issue measured). Only the bench scripts do this, never the test command.
RUSTIC_VERSION=${RUSTIC_VERSION:-0.11.4}
rustic_bin() {
  if [ -z "${RUSTIC_BIN:-}" ]; then
    RUSTIC_BIN=$BENCH_CACHE/rustic-$RUSTIC_VERSION/bin/rustic
    if [ ! -x "$RUSTIC_BIN" ]; then
      echo "installing rustic-rs $RUSTIC_VERSION into $BENCH_CACHE (once) ..." >&2
      mkdir -p "$BENCH_CACHE"
      cargo install --locked rustic-rs --version "$RUSTIC_VERSION" \
        --root "$BENCH_CACHE/rustic-$RUSTIC_VERSION" \
        --target-dir "$BENCH_CACHE/rustic-build" >&2
    fi
  fi
  export RUSTIC_BIN
}

need() {
  for t in "$@"; do
    command -v "$t" >/dev/null || { echo "missing: $t (apt-get install it)" >&2; exit 1; }
  done
}

# Reads a tree through the page cache (the machine drops pages untouched for
# ~60 s, so this runs right before every timed step). `tar > /dev/null` would
# not read file contents: pipe through cat.
warm() { tar cf - "$@" 2>/dev/null | cat >/dev/null; }

# t CMD...: seconds taken (output discarded; a failure stops the bench).
t() {
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }
  e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}

# measure NAME CMD...: runs CMD under GNU time and /proc accounting; sets
# SECS[NAME], RSS_KB[NAME] (peak resident set, KiB), READ[NAME] and
# WRITTEN[NAME] (bytes the process tree read and wrote through the file
# system: rchar/wchar of /proc/PID/io, which counts page-cache hits too;
# summed over the command's children by GNU time is not possible, so the
# command runs under a small wrapper shell whose own io we read).
declare -A SECS RSS_KB READ WRITTEN
measure() {
  local name=$1; shift
  local out=$BENCH_TMP/measure.$$
  local s e
  s=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$out.rss" bash -c '"$@" >/dev/null 2>'"$out.err"'; rc=$?; cat /proc/$$/io >'"$out.io"'; exit $rc' _ "$@" \
    || { echo "FAILED: $*" >&2; cat "$out.err" >&2; exit 1; }
  e=$(date +%s.%N)
  SECS[$name]=$(echo "$e - $s" | bc -l)
  RSS_KB[$name]=$(tail -1 "$out.rss")
  READ[$name]=$(awk '/^rchar/ {print $2}' "$out.io")
  WRITTEN[$name]=$(awk '/^wchar/ {print $2}' "$out.io")
}

ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mib() { echo "scale=1; $1 / 1048576" | bc -l; }
