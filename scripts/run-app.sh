#!/usr/bin/env bash
# Installs what is missing, builds Coffer and starts it with the embedded
# vault (a local demo fleet of simulated HSMs and a witness; no server needed).
# Extra arguments go to the app, e.g. --data-dir DIR.
set -euo pipefail
COFFER_SETUP_DRIVER=0 source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
echo "[run] building the app (first time ~3-5 min)"
cargo build --quiet --bin coffer-desktop
app="$CARGO_TARGET_DIR/debug/coffer-desktop"

run() {
  if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    echo "[run] no display found: starting under Xvfb (xvfb-run)"
    exec xvfb-run -a "$@"
  fi
  exec "$@"
}
# The OS keyring needs a D-Bus session; start one (with an unlocked
# gnome-keyring) when none is running, as in a container or over SSH.
if [ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ]; then
  echo "[run] no D-Bus session: starting one with gnome-keyring"
  export -f run
  # Its own keyring folder, so the password below always matches it.
  export COFFER_KEYRING_HOME="${COFFER_KEYRING_HOME:-$HOME/.local/share/coffer-keyring}"
  mkdir -p "$COFFER_KEYRING_HOME"
  exec dbus-run-session -- bash -c 'eval "$(printf "%s" "${COFFER_KEYRING_PASSWORD:-coffer}" | XDG_DATA_HOME="$COFFER_KEYRING_HOME" gnome-keyring-daemon --unlock --components=secrets --daemonize)" >/dev/null; export GNOME_KEYRING_CONTROL SSH_AUTH_SOCK; run "$@"' bash "$app" "$@"
fi
run "$app" "$@"
