#!/usr/bin/env bash
# Big files: a VM-disk-like image (every byte written) backed up, ~30 % of
# it rewritten, backed up again; and a sparse file (mostly holes) backed up
# and restored. For coffer and its peers, one run on the same data: time,
# throughput (apparent bytes / s), bytes read through the file system
# (rchar: holes read as zeros count), peak memory, repository growth, and
# for the sparse file the restored file's allocated size and a byte-for-byte
# check. Run by hand (not a test):
#
#   benches/bigfile.sh [IMAGE_GIB] [SPARSE_GIB] [SPARSE_DATA_PERCENT] [CHANGE_PERCENT]
#
# Defaults 20, 20, 5, 30 (needs ~25 GB for the files plus each tool's
# repository, ~10 GB for the image with its mixed data; the script checks the
# free space first). TOOLS="coffer restic rustic" chooses the peers;
# RESTORE_IMAGE=1 also restores the image (another 20 GB per tool).
# Needs: restic, bc, GNU time, python3, cargo (coffer and rustic are built or
# installed as in compare.sh). Small sizes (e.g. `bigfile.sh 1 2 5`) prove the
# script in a minute.
set -euo pipefail

source "$(dirname "$0")/lib.sh"
IMAGE_GIB=${1:-20}
SPARSE_GIB=${2:-20}
SPARSE_PCT=${3:-5}
CHANGE_PCT=${4:-30}
TOOLS=${TOOLS:-coffer restic rustic}
has() { [[ " $TOOLS " == *" $1 "* ]]; }
WORK=${BENCH_DIR:-/tmp/coffer-bench-big}
BENCH_TMP=$WORK/tmp
GEN="python3 $(dirname "$0")/gen-bigfile.py"

coffer_bin
need bc /usr/bin/time python3 "$COFFER_BIN"
has restic && need restic
has rustic && rustic_bin

rm -rf "$WORK"; mkdir -p "$WORK" "$BENCH_TMP" "$WORK/img" "$WORK/sparse"
need_kb=$(echo "($IMAGE_GIB * 1.6 + $SPARSE_GIB * $SPARSE_PCT / 100 * 4) * 1048576" | bc | cut -d. -f1)
free_kb=$(df -k --output=avail "$WORK" | tail -1)
if [ "$free_kb" -lt "$need_kb" ]; then
  echo "not enough space in $WORK: ${free_kb} KiB free, ~${need_kb} KiB needed" >&2
  exit 1
fi

IMG=$WORK/img/vm.img SPARSE=$WORK/sparse/sparse.img
echo "writing a ${IMAGE_GIB} GiB image and a ${SPARSE_GIB} GiB sparse file ..." >&2
$GEN image "$IMG" "$IMAGE_GIB"
$GEN sparse "$SPARSE" "$SPARSE_GIB" "$SPARSE_PCT"
IMG_BYTES=$(stat -c %s "$IMG")
SPARSE_BYTES=$(stat -c %s "$SPARSE")
SPARSE_ALLOC=$(( $(stat -c %b "$SPARSE") * 512 ))

export COFFER_REPOSITORY=$WORK/coffer/repo.coffer COFFER_KEY_FILE=$WORK/coffer.key
export RESTIC_REPOSITORY=$WORK/restic RESTIC_PASSWORD=benchmark-password RESTIC_CACHE_DIR=$WORK/restic-cache
export RUSTIC_REPOSITORY=$WORK/rustic RUSTIC_PASSWORD=benchmark-password RUSTIC_CACHE_DIR=$WORK/rustic-cache
mkdir -p "$WORK/coffer"
"$COFFER_BIN" init >/dev/null
has restic && restic init --repository-version 2 >/dev/null
has rustic && "$RUSTIC_BIN" init >/dev/null 2>&1

run_backup() { # tool dir
  case $1 in
    coffer) "$COFFER_BIN" backup -q "$2" ;;
    restic) restic backup -q "$2" ;;
    rustic) "$RUSTIC_BIN" backup --no-progress "$2" ;;
  esac
}
run_restore() { # tool snapshot-path target
  case $1 in
    coffer) "$COFFER_BIN" restore -q latest --include "$2" --target "$3" ;;
    # restic writes holes only with --sparse (0.15 and later).
    restic) restic restore latest $RESTIC_SPARSE --include "$2" --target "$3" ;;
    rustic) "$RUSTIC_BIN" restore --no-progress "latest:$2" "$3" ;;
  esac
}
RESTIC_SPARSE=
has restic && restic restore --help 2>/dev/null | grep -q -- '--sparse' && RESTIC_SPARSE=--sparse
export -f run_backup run_restore
export COFFER_BIN RUSTIC_BIN RESTIC_SPARSE

repo_size() { # tool
  case $1 in
    coffer) du -cb "$WORK/coffer" | tail -1 | cut -f1 ;;
    restic) du -sb "$RESTIC_REPOSITORY" | cut -f1 ;;
    rustic) du -sb "$RUSTIC_REPOSITORY" | cut -f1 ;;
  esac
}

declare -A GROWTH ALLOC SAME
step() { # name dir
  local name=$1 dir=$2 tool before
  for tool in $TOOLS; do
    before=$(repo_size "$tool")
    warm "$dir"
    measure "${tool}_$name" run_backup "$tool" "$dir"
    GROWTH[${tool}_$name]=$(( $(repo_size "$tool") - before ))
  done
}

echo "first backup of the image ..." >&2
step first "$WORK/img"
echo "rewriting ${CHANGE_PCT} % of the image ..." >&2
$GEN change "$IMG" "$CHANGE_PCT"
echo "second backup of the image ..." >&2
step second "$WORK/img"
echo "backup of the sparse file ..." >&2
step sparse "$WORK/sparse"

echo "restore of the sparse file ..." >&2
for tool in $TOOLS; do
  out=$WORK/out-$tool
  # Each tool's restore lays the snapshot path out differently: find the file.
  measure "${tool}_restore" run_restore "$tool" "$WORK/sparse" "$out"
  got=$(find "$out" -name sparse.img -type f | head -1)
  ALLOC[$tool]=$(( $(stat -c %b "$got") * 512 ))
  cmp -s "$SPARSE" "$got" && SAME[$tool]=yes || SAME[$tool]=NO
  rm -rf "$out"
done
if [ "${RESTORE_IMAGE:-0}" = 1 ]; then
  echo "restore of the image ..." >&2
  for tool in $TOOLS; do
    out=$WORK/out-$tool
    measure "${tool}_restore_img" run_restore "$tool" "$WORK/img" "$out"
    got=$(find "$out" -name vm.img -type f | head -1)
    cmp -s "$IMG" "$got" && SAME[${tool}_img]=yes || SAME[${tool}_img]=NO
    rm -rf "$out"
  done
fi

mbs() { echo "scale=0; $1 / $2 / 1000000" | bc -l; }
printf '\nimage: %s bytes, %s %% rewritten; sparse: %s bytes apparent, %s allocated   cpus: %s   load: %s   date: %s\n' \
  "$IMG_BYTES" "$CHANGE_PCT" "$SPARSE_BYTES" "$SPARSE_ALLOC" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u +%FT%TZ)"
printf 'coffer %s' "$("$COFFER_BIN" --version)"
has restic && printf ' | %s' "$(restic version | cut -d' ' -f1-2)"
has rustic && printf ' | %s' "$("$RUSTIC_BIN" --version 2>/dev/null | head -1)"
printf '\n\n%-16s %-8s %9s %9s %12s %12s %10s\n' step tool seconds "MB/s" "read MiB" "repo +MiB" "peak MiB"
for s in first second sparse; do
  case $s in sparse) bytes=$SPARSE_BYTES ;; *) bytes=$IMG_BYTES ;; esac
  for tool in $TOOLS; do
    k=${tool}_$s
    printf '%-16s %-8s %9.2f %9s %12.1f %12.1f %10.1f\n' "backup $s" "$tool" "${SECS[$k]}" "$(mbs "$bytes" "${SECS[$k]}")" \
      "$(mib "${READ[$k]}")" "$(mib "${GROWTH[$k]}")" "$(echo "${RSS_KB[$k]} / 1024" | bc -l)"
  done
done
for tool in $TOOLS; do
  k=${tool}_restore
  printf '%-16s %-8s %9.2f %9s %12.1f %12s %10.1f   allocated %.1f MiB (original %.1f MiB), bit-exact: %s\n' \
    "restore sparse" "$tool" "${SECS[$k]}" "$(mbs "$SPARSE_BYTES" "${SECS[$k]}")" "$(mib "${READ[$k]}")" "" \
    "$(echo "${RSS_KB[$k]} / 1024" | bc -l)" "$(mib "${ALLOC[$tool]}")" "$(mib "$SPARSE_ALLOC")" "${SAME[$tool]}"
done
if [ "${RESTORE_IMAGE:-0}" = 1 ]; then
  for tool in $TOOLS; do
    k=${tool}_restore_img
    printf '%-16s %-8s %9.2f %9s %12.1f %12s %10.1f   bit-exact: %s\n' "restore image" "$tool" "${SECS[$k]}" \
      "$(mbs "$IMG_BYTES" "${SECS[$k]}")" "$(mib "${READ[$k]}")" "" "$(echo "${RSS_KB[$k]} / 1024" | bc -l)" "${SAME[${tool}_img]}"
  done
fi
echo
echo "read MiB: bytes the tool read through the file system (its repository included); a tool that reads holes reads the sparse file's whole apparent size."
rm -rf "$WORK"
