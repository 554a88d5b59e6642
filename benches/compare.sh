#!/usr/bin/env bash
# Compares coffer with restic (repository v2, compressed), borg and the
# practical limit `tar | zstd -T0 | openssl aes-256-ctr`, on the same data in
# one run: first backup, no-change re-backup, backup after changing 1% of the
# files, full restore, repository size. Run by hand (not a test):
#
#   benches/compare.sh [DATA_DIR] [RESTORE_PAIRS]
#
# DATA_DIR defaults to the Rust toolchain's docs ($(rustc --print sysroot)/share/doc).
# Needs: restic, borgbackup, zstd, openssl (Debian packages) and a release
# build of coffer (built here if COFFER_BIN is not set).
# Notes (see shared/design/TOOLCHAIN.md "Benchmarking on this machine"): the
# corpus is re-read right before every timed step because the page cache is
# dropped after ~60 s; restore times drift with the disk, so restores run as
# alternating rounds and are compared as per-round ratios (median shown).
set -euo pipefail

DATA=${1:-$(rustc --print sysroot)/share/doc}
PAIRS=${2:-3}
WORK=${BENCH_DIR:-/tmp/coffer-bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${COFFER_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p coffer-cli)
  COFFER_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/coffer
fi
for t in restic borg zstd openssl "$COFFER_BIN"; do
  command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 1; }
done

rm -rf "$WORK"; mkdir -p "$WORK"
SRC=$WORK/src
echo "copying $DATA to $SRC ..." >&2
cp -a "$DATA" "$SRC"
NFILES=$(find "$SRC" -type f | wc -l)
NBYTES=$(du -sb --apparent-size "$SRC" | cut -f1)

export COFFER_REPOSITORY=$WORK/coffer/repo.coffer COFFER_KEY_FILE=$WORK/coffer.key
export RESTIC_REPOSITORY=$WORK/restic RESTIC_PASSWORD=benchmark-password RESTIC_CACHE_DIR=$WORK/restic-cache
export BORG_REPO=$WORK/borg BORG_PASSPHRASE=benchmark-password BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
export BORG_BASE_DIR=$WORK/borg-base
mkdir -p "$WORK/coffer"
"$COFFER_BIN" init >/dev/null
restic init --repository-version 2 >/dev/null
borg init --encryption=repokey >/dev/null 2>&1

warm() { tar cf - "$SRC" 2>/dev/null | cat >/dev/null; }
# t CMD...: seconds taken (output discarded)
t() {
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; exit 1; }
  e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}
ratio() { echo "scale=2; $1 / $2" | bc -l; }

declare -A T
n=0
backup_round() { # name
  local name=$1
  n=$((n + 1))
  warm; T[coffer_$name]=$(t "$COFFER_BIN" backup -q "$SRC")
  warm; T[restic_$name]=$(t restic backup -q "$SRC")
  warm; T[borg_$name]=$(t borg create "::s$n" "$SRC")
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
warm
T[tar_first]=$(t bash -c "tar cf - '$SRC' 2>/dev/null | zstd -q -T0 -1 | openssl enc -aes-256-ctr -pbkdf2 -pass pass:x -out '$WORK/tar.zst.enc'")

size_coffer=$(du -cb "$WORK/coffer" | tail -1 | cut -f1)
size_restic=$(du -sb "$RESTIC_REPOSITORY" | cut -f1)
size_borg=$(du -sb "$BORG_REPO" | cut -f1)
size_tar=$(stat -c %s "$WORK/tar.zst.enc")

echo "restores ($PAIRS alternating rounds) ..." >&2
rr_restic=(); rr_borg=(); rr_cp=(); rc_all=()
# Restored trees are moved aside, not deleted between steps: deleting 50k
# files can take minutes on this disk and would disturb the next step.
trash=0
aside() { trash=$((trash + 1)); mv "$WORK/out" "$WORK/trash.$trash"; sync; }
for k in $(seq 1 "$PAIRS"); do
  tc=$(t "$COFFER_BIN" restore -q latest --target "$WORK/out"); aside
  tr=$(t restic restore latest --target "$WORK/out"); aside
  mkdir -p "$WORK/out"
  tb=$(t bash -c "cd '$WORK/out' && borg extract ::s$n"); aside
  tp=$(t cp -a "$SRC" "$WORK/out"); aside
  rc_all+=("$tc"); rr_restic+=("$(ratio "$tr" "$tc")"); rr_borg+=("$(ratio "$tb" "$tc")"); rr_cp+=("$(ratio "$tp" "$tc")")
  printf 'restore round %d: coffer %.2fs restic %.2fs borg %.2fs cp -a %.2fs\n' "$k" "$tc" "$tr" "$tb" "$tp" >&2
done
rm -rf "$WORK"/trash.* &
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Check that coffer restores bit-exact.
"$COFFER_BIN" restore -q latest --target "$WORK/verify" >/dev/null
diff -r "$SRC" "$WORK/verify$SRC" >/dev/null && verified=yes || verified=NO
rm -rf "$WORK/verify"

printf '\ncorpus: %s (%d files, %s bytes)   cpus: %s   date: %s\n' "$DATA" "$NFILES" "$NBYTES" "$(nproc)" "$(date -u +%FT%TZ)"
printf 'coffer %s | %s | %s\n\n' "$("$COFFER_BIN" --version)" "$(restic version | cut -d' ' -f1-2)" "$(borg --version)"
printf '%-22s %9s %9s %9s %9s   %-10s %-10s %-10s\n' step coffer restic borg tar+zstd "restic/cf" "borg/cf" "tar/cf"
for s in first nochange change1pct; do
  tt=${T[tar_$s]:-}
  printf '%-22s %8.2fs %8.2fs %8.2fs %9s   %-10s %-10s %-10s\n' "backup $s" "${T[coffer_$s]}" "${T[restic_$s]}" "${T[borg_$s]}" \
    "${tt:+$(printf '%.2fs' "$tt")}" "$(ratio "${T[restic_$s]}" "${T[coffer_$s]}")x" "$(ratio "${T[borg_$s]}" "${T[coffer_$s]}")x" \
    "${tt:+$(ratio "$tt" "${T[coffer_$s]}")x}"
done
printf '%-22s %8.2fs %9s %9s %9s   %-10s %-10s %-10s\n' "restore (median)" "$(median "${rc_all[@]}")" "" "" "" \
  "$(median "${rr_restic[@]}")x" "$(median "${rr_borg[@]}")x" "cp: $(median "${rr_cp[@]}")x"
printf '%-22s %8.1fM %8.1fM %8.1fM %8.1fM   %-10s %-10s %-10s\n' "repository size" \
  "$(echo "$size_coffer/1048576" | bc -l)" "$(echo "$size_restic/1048576" | bc -l)" "$(echo "$size_borg/1048576" | bc -l)" "$(echo "$size_tar/1048576" | bc -l)" \
  "$(ratio "$size_coffer" "$size_restic")" "$(ratio "$size_coffer" "$size_borg")" "$(ratio "$size_coffer" "$size_tar")"
echo
echo "time ratios are other/coffer (above 1: coffer is faster); size ratios are coffer/other (below 1: coffer is smaller)."
echo "coffer restore bit-exact: $verified"
