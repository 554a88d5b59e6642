#!/usr/bin/env bash
# Installs what is missing, then runs every check and test of Coffer:
# formatting, lints, the frontend type-check and unit tests, the IPC bindings
# freshness check, all Rust unit and integration tests, and the WebDriver tests
# of the app under Xvfb. Prints the counts at the end.
#
#   --fresh-home   run as a first run on a new machine sees it: a new, empty
#                  HOME and XDG directories (no GTK/dconf settings, no
#                  recently-used files, no keyring), keeping only the Rust
#                  toolchain, the build cache and npm's download cache.
set -euo pipefail
for arg in "$@"; do
  case "$arg" in
    --fresh-home)
      warm_home="$HOME"
      export CARGO_HOME="${CARGO_HOME:-$warm_home/.cargo}"
      export RUSTUP_HOME="${RUSTUP_HOME:-$warm_home/.rustup}"
      export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$warm_home/.cache/coffer/target}"
      export npm_config_cache="${npm_config_cache:-$warm_home/.npm}"
      export PATH="$CARGO_HOME/bin:$PATH"
      HOME="$(mktemp -d -t coffer-fresh-home.XXXXXX)"
      export HOME
      unset XDG_CONFIG_HOME XDG_DATA_HOME XDG_CACHE_HOME XDG_STATE_HOME XDG_RUNTIME_DIR \
        DBUS_SESSION_BUS_ADDRESS GNOME_KEYRING_CONTROL COFFER_DATA_DIR
      echo "[test-all] fresh HOME: $HOME (toolchain, build cache and npm cache kept)"
      ;;
    *) echo "usage: $0 [--fresh-home]" >&2; exit 2 ;;
  esac
done
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
log_dir="$(mktemp -d)"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# If anything stops the script, say where, so a log never ends silently.
trap 'rc=$?; [[ $- == *e* ]] && echo "test-all.sh: stopped at line $LINENO (exit $rc): $BASH_COMMAND" >&2' ERR
t0=$(date +%s)

step "cargo fmt --check"
cargo fmt --all -- --check

step "frontend: type-check (tsc) and unit tests (vitest)"
npx --no-install tsc --noEmit -p ui/tsconfig.json
npx --no-install vitest run --root ui 2>&1 | tee "$log_dir/vitest.log"

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "cargo test --workspace (unit, integration, WebDriver under Xvfb, keyring under D-Bus)"
set +e
# One D-Bus session with an unlocked gnome-keyring for the keyring tests, a
# session keyring for keyutils, and Xvfb for the WebDriver tests.
# The keyring daemon keeps its files in a fresh directory, so a keyring left
# by another run (with another password) can never be the locked default.
keyring_home="$(mktemp -d)"
export keyring_home
# The daemon outlives its D-Bus session, so its pid is noted and it is
# stopped afterwards: no keyring daemon of an earlier run is left behind.
dbus-run-session -- bash -c '
  before="$(pgrep -x gnome-keyring-d | sort)"
  eval "$(printf coffer-test | XDG_DATA_HOME="$keyring_home" gnome-keyring-daemon --unlock --components=secrets --daemonize)" >/dev/null
  comm -13 <(echo "$before") <(pgrep -x gnome-keyring-d | sort) > "$keyring_home/daemon.pids"
  export GNOME_KEYRING_CONTROL
  exec keyctl session - xvfb-run -a --server-args="-screen 0 1280x800x24" cargo test --workspace --no-fail-fast
' 2>&1 | tee "$log_dir/cargo.log"
status=${PIPESTATUS[0]}
xargs -r kill < "$keyring_home/daemon.pids" 2>/dev/null || true
rm -rf "$keyring_home"
set -e

passed=$(awk '{ gsub(/\033\[[0-9;]*m/, "") } /^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$log_dir/cargo.log")
failed=$(awk '{ gsub(/\033\[[0-9;]*m/, "") } /^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$log_dir/cargo.log")
# vitest colours its output when CI is set (picocolors), so the escapes are
# stripped before the count is read; a count that cannot be read is 0, never
# a reason to stop before the summary.
vpassed=$(sed -E 's/\x1b\[[0-9;]*m//g' "$log_dir/vitest.log" | grep -E '^ +Tests +[0-9]+ passed' | sed -E 's/^ +Tests +([0-9]+) passed.*/\1/' | head -1 || true)
step "summary ($(( $(date +%s) - t0 )) s)"
echo "rust tests: ${passed:-0} passed, ${failed:-0} failed"
echo "frontend tests: ${vpassed:-0} passed"
echo "$(( ${passed:-0} + ${vpassed:-0} )) passed, ${failed:-0} failed"
if [ "$status" -ne 0 ]; then
  # Name what failed last, so a log that keeps only its end still says it.
  echo "cargo test exited with status $status; failed tests and panics:"
  grep -E '^test .* FAILED$|panicked at|^error(\[|:)' "$log_dir/cargo.log" | head -40 || true
  echo "(full log: $log_dir/cargo.log)"
fi
exit "$status"
