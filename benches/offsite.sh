#!/usr/bin/env bash
# Off-site backups: coffer against restic's native S3 and SFTP backends, on
# the same servers and data in one run: a one-node Garage (S3), a
# three-node Garage cluster (replication factor 3) and OpenSSH's
# sftp-server behind an sshd, all on loopback, started here with their own
# folders and ports. Steps per destination: first backup (coffer: into its
# local file and uploaded; restic: straight to the destination), no-change
# backup, full restore on a "new computer" (no local database or cache:
# coffer reads the copy's index and fetches the packs; restic with an empty
# cache), and the bytes the destination stores. Run by hand (not a test):
#
#   benches/offsite.sh [DATA_DIR] [RESTORE_ROUNDS]
#
# DESTINATIONS="s3 s3x3 sftp" (the default) picks which destinations run.
# DATA_DIR defaults to the Rust toolchain's docs ($(rustc --print
# sysroot)/share/doc). Needs: restic (Debian), garage (scripts/setup.sh),
# openssh-server, and a release build of coffer (built here if COFFER_BIN is
# not set). As in benches/compare.sh, the corpus is re-read right before
# every timed step, and restores alternate coffer/restic in rounds.
# Nothing is deleted while the script measures (this disk's ext4 creates
# files several times slower within minutes of a mass deletion: see
# docs/performance.md, "Why restores of many small files varied so much"):
# restored trees are moved aside and deleted at the end, and an earlier
# run's files are deleted first and SETTLE seconds (default 400) waited out.
set -euo pipefail

DATA=${1:-$(rustc --print sysroot)/share/doc}
ROUNDS=${2:-3}
WORK=${BENCH_DIR:-/tmp/coffer-offsite-bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GARAGE=${COFFER_GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
if [ -z "${COFFER_BIN:-}" ]; then
  (cd "$ROOT" && cargo build --release -q -p coffer-cli)
  COFFER_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/coffer
fi
for t in restic "$GARAGE" /usr/sbin/sshd ssh ssh-keygen "$COFFER_BIN"; do
  command -v "$t" >/dev/null || { echo "missing: $t" >&2; exit 1; }
done

if [ -e "$WORK" ]; then
  echo "deleting an earlier run in $WORK, then waiting ${SETTLE:-400} s ..." >&2
  rm -rf "$WORK"; sync; sleep "${SETTLE:-400}"
fi
mkdir -p "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${HOLD:-}" ] || rm -rf "$WORK"/trash.*
}
trash=0
aside() { trash=$((trash + 1)); mv "$1" "$WORK/trash.$trash"; sync; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- Garage, blocks uncompressed (restic and coffer compress): one node,
# and a cluster of three nodes (three processes on loopback, replication
# factor 3: every block written to all three, quorum reads and writes).
RPC_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
garage_node() { # dir replication-factor -> prints its S3 port; starts the process
  local d=$1 rf=$2 rpc api
  rpc=$(free_port); api=$(free_port); mkdir -p "$d"
  cat >"$d/garage.toml" <<EOF
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
replication_factor = $rf
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$RPC_SECRET"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$api"
root_domain = ".s3.garage.localhost"
EOF
  RUST_LOG=warn "$GARAGE" -c "$d/garage.toml" server >"$d/log" 2>&1 &
  echo "$! $api"
}
G=$WORK/garage
read -r pid API < <(garage_node "$G" 1); PIDS+=("$pid")
gcli() { "$GARAGE" -c "$G/garage.toml" "$@"; }
until gcli node id -q >/dev/null 2>&1; do sleep 0.2; done
gcli layout assign -z dc1 -c 10G "$(gcli node id -q | cut -d@ -f1)" >/dev/null
gcli layout apply --version 1 >/dev/null
gcli key create bench >"$G/key"
for b in coffer-bench restic-bench; do
  until gcli bucket create $b >/dev/null 2>&1; do sleep 0.2; done
  gcli bucket allow --read --write --owner $b --key bench >/dev/null
done
export AWS_ACCESS_KEY_ID=$(awk -F': *' '/Key ID/ {print $2}' "$G/key")
export AWS_SECRET_ACCESS_KEY=$(awk -F': *' '/Secret key/ {print $2}' "$G/key")

# The cluster: node 1 connects to 2 and 3, one zone each, the same key
# imported so one set of credentials serves both stores.
C=$WORK/garage3
CAPI=()
for n in 1 2 3; do
  read -r pid api < <(garage_node "$C/n$n" 3); PIDS+=("$pid"); CAPI+=("$api")
done
ncli() { local n=$1; shift; "$GARAGE" -c "$C/n$n/garage.toml" "$@"; }
ccli() { ncli 1 "$@"; }
for n in 1 2 3; do
  until ncli $n node id -q >/dev/null 2>&1; do sleep 0.2; done
done
for n in 2 3; do
  ccli node connect "$(ncli $n node id -q)" >/dev/null
done
for n in 1 2 3; do
  ccli layout assign -z "dc$n" -c 10G "$(ncli $n node id -q | cut -d@ -f1)" >/dev/null
done
ccli layout apply --version 1 >/dev/null
ccli key import --yes -n bench "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null
for b in coffer-bench restic-bench; do
  until ccli bucket create $b >/dev/null 2>&1; do sleep 0.2; done
  ccli bucket allow --read --write --owner $b --key bench >/dev/null
done
# "Size: 4.5 MB (4.3 MiB)" -> "4.3 MiB"
bucket_bytes() { "$@" | sed -n 's/^Size:.*(\(.*\)).*/\1/p' | head -1; }

# --- sshd with sftp-server, its own host key, a client key.
S=$WORK/sshd; mkdir -p "$S/store"
ssh-keygen -q -t ed25519 -N '' -f "$S/host"
ssh-keygen -q -t ed25519 -N '' -f "$S/client"
cp "$S/client.pub" "$S/authorized_keys"
[ "$(id -u)" != 0 ] || mkdir -p /run/sshd
SSHPORT=$(free_port)
cat >"$S/sshd_config" <<EOF
Port $SSHPORT
ListenAddress 127.0.0.1
HostKey $S/host
PidFile none
AuthorizedKeysFile $S/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
LogLevel ERROR
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
/usr/sbin/sshd -D -e -f "$S/sshd_config" 2>"$S/log" &
PIDS+=($!)
until (exec 3<>/dev/tcp/127.0.0.1/$SSHPORT) 2>/dev/null; do sleep 0.2; done
HOSTFP=$(ssh-keygen -l -E sha256 -f "$S/host.pub" | awk '{print $2}')
USER_NAME=$(id -un)
SSH_CMD="ssh -p $SSHPORT -i $S/client -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR $USER_NAME@127.0.0.1 -s sftp"

SRC=$WORK/src
echo "copying $DATA to $SRC ..." >&2
cp -a "$DATA" "$SRC"
NFILES=$(find "$SRC" -type f | wc -l)
NBYTES=$(du -sb --apparent-size "$SRC" | cut -f1)
warm() { tar cf - "$SRC" 2>/dev/null | cat >/dev/null; }
t() {
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null 2>"$WORK/last.err" || { echo "FAILED: $*" >&2; cat "$WORK/last.err" >&2; exit 1; }
  e=$(date +%s.%N)
  echo "$e - $s" | bc -l
}
ratio() { echo "scale=2; $1 / $2" | bc -l; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

export COFFER_KEY_FILE=$WORK/coffer.key RESTIC_PASSWORD=benchmark-password
declare -A T SIZE
run_destination() { # name coffer-url restic-repo [restic options...]
  local name=$1 curl=$2 rrepo=$3; shift 3
  local ropts=("$@")
  local repo=$WORK/$name-local/repo.coffer
  mkdir -p "$(dirname "$repo")"
  echo "[$name] init ..." >&2
  [ -f "$COFFER_KEY_FILE" ] || "$COFFER_BIN" -r "$WORK/keygen.coffer" --key-file "$COFFER_KEY_FILE" init >/dev/null
  "$COFFER_BIN" -r "$repo" --remote "$curl" init >/dev/null
  RESTIC_CACHE_DIR=$WORK/$name-restic-cache restic -r "$rrepo" "${ropts[@]}" init --repository-version 2 >/dev/null
  echo "[$name] first backup ..." >&2
  warm; T[${name}_coffer_first]=$(t "$COFFER_BIN" -q -r "$repo" --remote "$curl" backup "$SRC")
  warm; T[${name}_restic_first]=$(t env RESTIC_CACHE_DIR=$WORK/$name-restic-cache restic -r "$rrepo" "${ropts[@]}" backup -q "$SRC")
  echo "[$name] no-change backup ..." >&2
  warm; T[${name}_coffer_nochange]=$(t "$COFFER_BIN" -q -r "$repo" --remote "$curl" backup "$SRC")
  warm; T[${name}_restic_nochange]=$(t env RESTIC_CACHE_DIR=$WORK/$name-restic-cache restic -r "$rrepo" "${ropts[@]}" backup -q "$SRC")
  echo "[$name] restores on a new computer ($ROUNDS rounds) ..." >&2
  local cr=() rr=() lr=() ratios=()
  for i in $(seq "$ROUNDS"); do
    local a b c cache=$WORK/$name-restic-fresh-cache.$i
    # The order alternates, so neither tool always runs right after the
    # other's writes.
    if [ $((i % 2)) = 1 ]; then
      a=$(t "$COFFER_BIN" -q --remote "$curl" restore latest --target "$WORK/r-coffer")
      b=$(t env RESTIC_CACHE_DIR=$cache restic -r "$rrepo" "${ropts[@]}" restore latest --target "$WORK/r-restic")
    else
      b=$(t env RESTIC_CACHE_DIR=$cache restic -r "$rrepo" "${ropts[@]}" restore latest --target "$WORK/r-restic")
      a=$(t "$COFFER_BIN" -q --remote "$curl" restore latest --target "$WORK/r-coffer")
    fi
    c=$(t "$COFFER_BIN" -q -r "$repo" restore latest --target "$WORK/r-local")
    cr+=("$a"); rr+=("$b"); lr+=("$c"); ratios+=("$(ratio "$b" "$a")")
    [ "$i" = "$ROUNDS" ] || aside "$WORK/r-coffer"
    aside "$WORK/r-restic"; aside "$WORK/r-local"
  done
  diff -r "$SRC" "$WORK/r-coffer$SRC" >/dev/null || { echo "coffer's restore differs" >&2; exit 1; }
  aside "$WORK/r-coffer"
  T[${name}_coffer_restore]=$(median "${cr[@]}")
  T[${name}_restic_restore]=$(median "${rr[@]}")
  T[${name}_restore_ratio]=$(median "${ratios[@]}")
  T[${name}_restore_rounds]="coffer ${cr[*]} / restic ${rr[*]} / coffer from its local file ${lr[*]}"
}

want() { [[ " ${DESTINATIONS:-s3 s3x3 sftp} " == *" $1 "* ]]; }
if want s3; then
run_destination s3 "s3:http://127.0.0.1:$API/coffer-bench/laptop?region=garage" \
  "s3:http://127.0.0.1:$API/restic-bench/laptop" -o s3.region=garage
SIZE[s3_coffer]=$(bucket_bytes gcli bucket info coffer-bench)
SIZE[s3_restic]=$(bucket_bytes gcli bucket info restic-bench)
fi

# The same code on the three-node cluster (S3 requests to node 1; each
# block stored on all three: the sizes are per replica).
if want s3x3; then
run_destination s3x3 "s3:http://127.0.0.1:${CAPI[0]}/coffer-bench/laptop?region=garage" \
  "s3:http://127.0.0.1:${CAPI[0]}/restic-bench/laptop" -o s3.region=garage
SIZE[s3x3_coffer]=$(bucket_bytes ccli bucket info coffer-bench)
SIZE[s3x3_restic]=$(bucket_bytes ccli bucket info restic-bench)
fi

export COFFER_SSH_KEY=$S/client
if want sftp; then
run_destination sftp "sftp://$USER_NAME@127.0.0.1:$SSHPORT/$S/store/coffer?host_key=$HOSTFP" \
  "sftp:$USER_NAME@127.0.0.1:$S/store/restic" -o sftp.command="$SSH_CMD"
mib() { echo "scale=1; $(du -sb "$1" | cut -f1) / 1048576" | bc -l; }
SIZE[sftp_coffer]="$(mib "$S/store/coffer") MiB"
SIZE[sftp_restic]="$(mib "$S/store/restic") MiB"
fi

echo
echo "corpus: $DATA ($NFILES files, $NBYTES bytes); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| destination | step | coffer | restic | restic ÷ coffer |\n|---|---|---|---|---|\n'
for d in ${DESTINATIONS:-s3 s3x3 sftp}; do
  for s in first nochange restore; do
    c=${T[${d}_coffer_$s]}; r=${T[${d}_restic_$s]}
    if [ "$s" = restore ]; then q=${T[${d}_restore_ratio]}; else q=$(ratio "$r" "$c"); fi
    printf '| %s | %s | %.2f s | %.2f s | %s× |\n' "$d" "$s" "$c" "$r" "$q"
  done
  printf '| %s | stored | %s | %s | |\n' "$d" "${SIZE[${d}_coffer]}" "${SIZE[${d}_restic]}"
  echo "restore rounds ($d): ${T[${d}_restore_rounds]}"
done

# HOLD=1 keeps the servers and the repositories for profiling by hand: the
# variables a coffer or restic command needs are in $WORK/env.
if [ -n "${HOLD:-}" ]; then
  {
    echo "export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY"
    echo "export COFFER_KEY_FILE=$COFFER_KEY_FILE RESTIC_PASSWORD=$RESTIC_PASSWORD COFFER_SSH_KEY=$S/client"
    echo "S3_COFFER='s3:http://127.0.0.1:$API/coffer-bench/laptop?region=garage'"
    echo "S3_RESTIC='s3:http://127.0.0.1:$API/restic-bench/laptop'"
    echo "SFTP_COFFER='sftp://$USER_NAME@127.0.0.1:$SSHPORT/$S/store/coffer?host_key=$HOSTFP'"
  } >"$WORK/env"
  echo "servers kept (HOLD): source $WORK/env; Ctrl-C or kill $$ ends them" >&2
  sleep infinity
fi
