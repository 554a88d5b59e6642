#!/usr/bin/env bash
# Scale: generated trees of many small files (benches/gen-million.py: mixed
# sizes, deep and wide folders), for coffer and its peers: first backup,
# no-change backup, full restore, `find` of a name, `ls` of the deepest
# folder; the time and peak resident memory (GNU time) of each, and the time
# per file of the first backup at each size, with its ratio to the smallest
# size. Run by hand (not a test):
#
#   benches/scale.sh [FILES...]          default: 50000 1000000
#
# TOOLS="coffer restic rustic" chooses the tools. Generated trees are kept in
# $TREES (default $BENCH_DIR/trees) and reused by later runs (1 M files take
# minutes to write and ~4.5 GB). SKIP_RESTORE=1 leaves the restores out (a
# 1 M-file restore writes the tree again, per tool).
#
# On this machine's ext4 (no journal), creating files soon after many were
# deleted is several times slower (the inode allocator skips recently deleted
# inodes one by one: see docs/performance.md). So this script deletes
# nothing while it measures: restored trees are moved aside and deleted at
# the very end, and a tree left by an earlier run is deleted first and then
# SETTLE seconds (default 400) are waited out.
set -euo pipefail

source "$(dirname "$0")/lib.sh"
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(50000 1000000)
TOOLS=${TOOLS:-coffer restic rustic}
has() { [[ " $TOOLS " == *" $1 "* ]]; }
WORK=${BENCH_DIR:-/tmp/coffer-bench-scale}
TREES=${TREES:-$WORK/trees}
BENCH_TMP=$WORK/tmp
SETTLE=${SETTLE:-400}

coffer_bin
need bc /usr/bin/time python3 "$COFFER_BIN"
has restic && need restic
has rustic && rustic_bin
export COFFER_BIN RUSTIC_BIN

mkdir -p "$WORK" "$TREES"
if ls -d "$WORK"/run "$WORK"/trash >/dev/null 2>&1; then
  echo "deleting an earlier run's repositories and trees, then waiting ${SETTLE} s ..." >&2
  rm -rf "$WORK"/run "$WORK"/trash
  sync
  sleep "$SETTLE"
fi
mkdir -p "$WORK/run" "$WORK/trash" "$BENCH_TMP"
trash=0
aside() { trash=$((trash + 1)); [ -e "$1" ] && mv "$1" "$WORK/trash/$trash"; sync; }

run_step() { # tool step src
  local tool=$1 step=$2 src=$3 deep
  deep=$(cat "$src.deepest")
  case "$tool:$step" in
    coffer:backup) "$COFFER_BIN" backup -q "$src" ;;
    coffer:restore) "$COFFER_BIN" restore -q latest --target "$OUT" ;;
    coffer:find) "$COFFER_BIN" find 'f00044.md' ;;
    coffer:ls) "$COFFER_BIN" ls latest "$deep" ;;
    restic:backup) restic backup -q "$src" ;;
    restic:restore) restic restore latest --target "$OUT" ;;
    restic:find) restic find 'f00044.md' ;;
    restic:ls) restic ls latest "$deep" ;;
    rustic:backup) "$RUSTIC_BIN" backup --no-progress "$src" ;;
    rustic:restore) "$RUSTIC_BIN" restore --no-progress latest "$OUT" ;;
    rustic:find) "$RUSTIC_BIN" find --glob 'f00044.md' ;;
    rustic:ls) "$RUSTIC_BIN" ls "latest:$deep" ;;
  esac
}
export -f run_step

declare -A NFILES
for n in "${SIZES[@]}"; do
  src=$TREES/tree-$n
  if [ ! -f "$src.done" ]; then
    rm -rf "$src"
    echo "generating $n files in $src ..." >&2
    python3 "$(dirname "$0")/gen-million.py" "$src" "$n"
    # The deepest folder of the first deep chain.
    find "$src/deep/c0000" -type d | awk '{ print length($0) " " $0 }' | sort -n | tail -1 | cut -d' ' -f2- >"$src.deepest"
    touch "$src.done"
  fi
  NFILES[$n]=$(find "$src" -type f | wc -l)
  for tool in $TOOLS; do
    R=$WORK/run/$tool-$n
    export COFFER_REPOSITORY=$R/repo.coffer COFFER_KEY_FILE=$R.key
    export RESTIC_REPOSITORY=$R RESTIC_PASSWORD=benchmark-password RESTIC_CACHE_DIR=$R-cache
    export RUSTIC_REPOSITORY=$R RUSTIC_PASSWORD=benchmark-password RUSTIC_CACHE_DIR=$R-cache
    export OUT=$WORK/run/out-$tool-$n
    mkdir -p "$R"
    case $tool in
      coffer) "$COFFER_BIN" init >/dev/null ;;
      restic) restic init --repository-version 2 >/dev/null ;;
      rustic) rmdir "$R"; "$RUSTIC_BIN" init >/dev/null 2>&1 ;;
    esac
    echo "$tool, $n files: first backup ..." >&2
    warm "$src"; measure "$tool:$n:first" run_step "$tool" backup "$src"
    echo "$tool, $n files: no-change backup ..." >&2
    warm "$src"; measure "$tool:$n:nochange" run_step "$tool" backup "$src"
    if [ "${SKIP_RESTORE:-0}" != 1 ]; then
      echo "$tool, $n files: restore ..." >&2
      measure "$tool:$n:restore" run_step "$tool" restore "$src"
      aside "$OUT"
    fi
    measure "$tool:$n:find" run_step "$tool" find "$src"
    measure "$tool:$n:ls" run_step "$tool" ls "$src"
  done
done

steps="first nochange restore find ls"
[ "${SKIP_RESTORE:-0}" = 1 ] && steps="first nochange find ls"
printf '\ncpus: %s   load: %s   date: %s\n' "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u +%FT%TZ)"
printf 'coffer %s' "$("$COFFER_BIN" --version)"
has restic && printf ' | %s' "$(restic version | cut -d' ' -f1-2)"
has rustic && printf ' | %s' "$("$RUSTIC_BIN" --version 2>/dev/null | head -1)"
printf '\n\n%-10s %-9s' files step
for tool in $TOOLS; do printf '%12s %9s' "$tool s" "peak MiB"; done
echo
for n in "${SIZES[@]}"; do
  for s in $steps; do
    printf '%-10s %-9s' "${NFILES[$n]}" "$s"
    for tool in $TOOLS; do
      printf '%12.2f %9.1f' "${SECS[$tool:$n:$s]}" "$(echo "${RSS_KB[$tool:$n:$s]} / 1024" | bc -l)"
    done
    echo
  done
done
echo
base=${SIZES[0]}
echo "first backup, microseconds per file (ratio to $base files):"
for n in "${SIZES[@]}"; do
  printf '  %-10s' "${NFILES[$n]}"
  for tool in $TOOLS; do
    us=$(echo "${SECS[$tool:$n:first]} * 1000000 / ${NFILES[$n]}" | bc -l)
    us0=$(echo "${SECS[$tool:$base:first]} * 1000000 / ${NFILES[$base]}" | bc -l)
    printf '  %s %8.1f (%sx)' "$tool" "$us" "$(ratio "$us" "$us0")"
  done
  echo
done
echo "peak memory of the first backup, coffer / other:"
for n in "${SIZES[@]}"; do
  printf '  %-10s' "${NFILES[$n]}"
  for tool in $TOOLS; do
    [ "$tool" = coffer ] && continue
    printf '  /%s %s' "$tool" "$(ratio "${RSS_KB[coffer:$n:first]}" "${RSS_KB[$tool:$n:first]}")"
  done
  echo
done
echo
echo "deleting the restored trees and repositories ..." >&2
rm -rf "$WORK/run" "$WORK/trash"
