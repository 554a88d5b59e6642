#!/usr/bin/env bash
# Compares coffer with restic (repository v2, compressed), rustic (the Rust
# restic, installed from crates.io into a cache on first use), borg and the
# practical limit `tar | zstd -T0 | openssl aes-256-ctr`, on the same data in
# one run: first backup, no-change re-backup, backup after changing 1% of the
# files, full restore, repository size, and each step's peak memory. Run by
# hand (not a test):
#
#   benches/compare.sh [DATA_DIR] [RESTORE_ROUNDS]
#
# DATA_DIR defaults to the Rust toolchain's docs ($(rustc --print sysroot)/share/doc);
# RESTORE_ROUNDS defaults to 5. TOOLS="coffer restic rustic borg" chooses the
# peers (coffer always runs). Needs: restic, borgbackup, zstd, openssl, bc,
# GNU time (Debian packages), cargo (to build coffer and install rustic once;
# RUSTIC_BIN / COFFER_BIN skip that).
# Notes (see shared/design/TOOLCHAIN.md "Benchmarking on this machine"): the
# corpus is re-read right before every timed step because the page cache is
# dropped after ~60 s; restore times drift with the disk, so restores run as
# alternating rounds (the order rotates each round, so no tool always runs
# right after another's writes) and are compared as per-round ratios (median
# shown, and every round printed).
# On this machine's ext4 (no journal), creating files soon after many were
# deleted is several times slower (the inode allocator skips recently deleted
# inodes one by one: see docs/performance.md), which made restore times swing
# 3x. So nothing is deleted while the script measures: restored trees are
# moved aside and deleted at the very end, and an earlier run's files are
# deleted first and then SETTLE seconds (default 400) are waited out.
set -euo pipefail

source "$(dirname "$0")/lib.sh"
DATA=${1:-$(rustc --print sysroot)/share/doc}
ROUNDS=${2:-5}
TOOLS=${TOOLS:-coffer restic rustic borg}
has() { [[ " $TOOLS " == *" $1 "* ]]; }
WORK=${BENCH_DIR:-/tmp/coffer-bench}
BENCH_TMP=$WORK/tmp

coffer_bin
need zstd openssl bc /usr/bin/time "$COFFER_BIN"
has restic && need restic
has borg && need borg
has rustic && rustic_bin

if [ -e "$WORK" ]; then
  echo "deleting an earlier run in $WORK, then waiting ${SETTLE:-400} s ..." >&2
  rm -rf "$WORK"
  sync
  sleep "${SETTLE:-400}"
fi
mkdir -p "$WORK" "$BENCH_TMP"
SRC=$WORK/src
echo "copying $DATA to $SRC ..." >&2
cp -a "$DATA" "$SRC"
NFILES=$(find "$SRC" -type f | wc -l)
NBYTES=$(du -sb --apparent-size "$SRC" | cut -f1)

export COFFER_REPOSITORY=$WORK/coffer/repo.coffer COFFER_KEY_FILE=$WORK/coffer.key
export RESTIC_REPOSITORY=$WORK/restic RESTIC_PASSWORD=benchmark-password RESTIC_CACHE_DIR=$WORK/restic-cache
export RUSTIC_REPOSITORY=$WORK/rustic RUSTIC_PASSWORD=benchmark-password RUSTIC_CACHE_DIR=$WORK/rustic-cache
export BORG_REPO=$WORK/borg BORG_PASSPHRASE=benchmark-password BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_BASE_DIR=$WORK/borg-base
mkdir -p "$WORK/coffer"
"$COFFER_BIN" init >/dev/null
has restic && restic init --repository-version 2 >/dev/null
has rustic && "$RUSTIC_BIN" init >/dev/null 2>&1
has borg && borg init --encryption=repokey >/dev/null 2>&1

# One command per tool and step (exported: `measure` runs them in a child
# shell, whose peak memory and I/O include theirs).
run_backup() { # tool round
  case $1 in
    coffer) "$COFFER_BIN" backup -q "$SRC" ;;
    restic) restic backup -q "$SRC" ;;
    rustic) "$RUSTIC_BIN" backup --no-progress "$SRC" ;;
    borg) borg create "::s$2" "$SRC" ;;
  esac
}
run_restore() { # tool round-of-the-last-backup
  case $1 in
    coffer) "$COFFER_BIN" restore -q latest --target "$WORK/out" ;;
    restic) restic restore latest --target "$WORK/out" ;;
    rustic) "$RUSTIC_BIN" restore --no-progress latest "$WORK/out" ;;
    borg) mkdir -p "$WORK/out" && cd "$WORK/out" && borg extract "::s$2" ;;
    cp) cp -a "$SRC" "$WORK/out" ;;
  esac
}
export -f run_backup run_restore
export COFFER_BIN RUSTIC_BIN SRC WORK

n=0
backup_round() { # step
  local step=$1 tool
  n=$((n + 1))
  for tool in $TOOLS; do
    warm "$SRC"
    measure "${tool}_$step" run_backup "$tool" "$n"
  done
}

echo "first backup ..." >&2
backup_round first
echo "no-change backup ..." >&2
backup_round nochange
echo "changing 1% of the files ..." >&2
i=0
while IFS= read -r -d '' f; do
  i=$((i + 1))
  if [ $((i % 100)) -eq 0 ]; then echo "changed line $i" >>"$f"; fi
done < <(find "$SRC" -type f -print0)
backup_round change1pct

echo "tar | zstd | openssl ..." >&2
warm "$SRC"
measure tar_first bash -c "tar cf - '$SRC' 2>/dev/null | zstd -q -T0 -1 | openssl enc -aes-256-ctr -pbkdf2 -pass pass:x -out '$WORK/tar.zst.enc'"

declare -A SIZE
SIZE[coffer]=$(du -cb "$WORK/coffer" | tail -1 | cut -f1)
has restic && SIZE[restic]=$(du -sb "$RESTIC_REPOSITORY" | cut -f1)
has rustic && SIZE[rustic]=$(du -sb "$RUSTIC_REPOSITORY" | cut -f1)
has borg && SIZE[borg]=$(du -sb "$BORG_REPO" | cut -f1)
SIZE[tar]=$(stat -c %s "$WORK/tar.zst.enc")

echo "restores ($ROUNDS alternating rounds) ..." >&2
# Restored trees are moved aside, not deleted between steps: deleting 50k
# files can take minutes on this disk and would disturb the next step.
trash=0
aside() { trash=$((trash + 1)); mv "$WORK/out" "$WORK/trash.$trash"; sync; }
declare -A RT RR
RTOOLS="$TOOLS cp"
rot=($RTOOLS)
for k in $(seq 1 "$ROUNDS"); do
  line="restore round $k:"
  # Rotate the order each round.
  order=("${rot[@]:$(( (k - 1) % ${#rot[@]} ))}" "${rot[@]:0:$(( (k - 1) % ${#rot[@]} ))}")
  for tool in "${order[@]}"; do
    measure "${tool}_restore" run_restore "$tool" "$n"
    RT[$tool]="${RT[$tool]:-} ${SECS[${tool}_restore]}"
    RSS_KB[${tool}_restore_$k]=${RSS_KB[${tool}_restore]}
    aside
    line+=$(printf ' %s %.2fs' "$tool" "${SECS[${tool}_restore]}")
  done
  c=${SECS[coffer_restore]}
  for tool in $RTOOLS; do
    [ "$tool" = coffer ] && continue
    RR[$tool]="${RR[$tool]:-} $(ratio "${SECS[${tool}_restore]}" "$c")"
  done
  echo "$line" >&2
done

# Check that coffer restores bit-exact.
"$COFFER_BIN" restore -q latest --target "$WORK/verify" >/dev/null
diff -r "$SRC" "$WORK/verify$SRC" >/dev/null && verified=yes || verified=NO

peers=()
for tool in $TOOLS; do [ "$tool" != coffer ] && peers+=("$tool"); done
printf '\ncorpus: %s (%d files, %s bytes)   cpus: %s   load: %s   date: %s\n' "$DATA" "$NFILES" "$NBYTES" "$(nproc)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u +%FT%TZ)"
printf 'coffer %s' "$("$COFFER_BIN" --version)"
has restic && printf ' | %s' "$(restic version | cut -d' ' -f1-2)"
has rustic && printf ' | %s' "$("$RUSTIC_BIN" --version 2>/dev/null | head -1)"
has borg && printf ' | %s' "$(borg --version)"
printf '\n\n'
printf '%-20s' step; for tool in $TOOLS; do printf '%10s' "$tool"; done; printf '%10s' tar+zstd
for p in "${peers[@]}"; do printf '%12s' "$p/cf"; done; printf '%12s\n' "tar/cf"
for s in first nochange change1pct; do
  printf '%-20s' "backup $s"
  for tool in $TOOLS; do printf '%9.2fs' "${SECS[${tool}_$s]}"; done
  tt=${SECS[tar_$s]:-}
  printf '%10s' "${tt:+$(printf '%.2fs' "$tt")}"
  for p in "${peers[@]}"; do printf '%11sx' "$(ratio "${SECS[${p}_$s]}" "${SECS[coffer_$s]}")"; done
  printf '%12s\n' "${tt:+$(ratio "$tt" "${SECS[coffer_$s]}")x}"
done
# shellcheck disable=SC2086
printf '%-20s' "restore (median)"; for tool in $TOOLS; do printf '%9.2fs' "$(median ${RT[$tool]})"; done; printf '%10s' ""
# shellcheck disable=SC2086
for p in "${peers[@]}"; do printf '%11sx' "$(median ${RR[$p]})"; done
# shellcheck disable=SC2086
printf '   cp -a/cf: %sx (cp -a median %.2fs)\n' "$(median ${RR[cp]})" "$(median ${RT[cp]})"
printf '%-20s' "repository size"; for tool in $TOOLS; do printf '%9.1fM' "$(mib "${SIZE[$tool]}")"; done
printf '%9.1fM' "$(mib "${SIZE[tar]}")"
for p in "${peers[@]}"; do printf '%12s' "$(ratio "${SIZE[coffer]}" "${SIZE[$p]}")"; done
printf '%12s\n' "$(ratio "${SIZE[coffer]}" "${SIZE[tar]}")"
echo
echo "peak resident memory (MiB):"
for s in first nochange change1pct restore; do
  printf '  %-18s' "$s"
  for tool in $TOOLS; do printf '%10.1f' "$(echo "${RSS_KB[${tool}_$s]} / 1024" | bc -l)"; done
  echo
done
echo
echo "time ratios are other/coffer (above 1: coffer is faster); size ratios are coffer/other (below 1: coffer is smaller)."
echo "restore rounds: every round's times are printed above (stderr); ratios are per round, then the median."
echo "coffer restore bit-exact: $verified"
echo "deleting the restored trees ..." >&2
rm -rf "$WORK"/trash.* "$WORK/verify"
