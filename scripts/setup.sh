#!/usr/bin/env bash
# Installs whatever Coffer's build, app and tests need and is missing, and says
# what it installs. Idempotent: quick when everything is there.
# Sourced by scripts/run-app.sh and scripts/test-all.sh.
set -euo pipefail

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coffer/target}"
export PATH="$HOME/.cargo/bin:$PATH"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Debian packages: the WebKitGTK toolchain for Tauri, Xvfb and the WebKit
# WebDriver for UI tests, D-Bus + gnome-keyring + keyutils for the OS keyring,
# notify-send for desktop notifications.
# dunst (a notification daemon) is what the notification test sends to and
# reads back with `dunstctl history`; trayer (an XEmbed system tray),
# x11-utils (xwininfo) and xdotool let the tray test find Coffer's icon in a
# real tray and use its menu (crates/coffer-app/tests/notifications.rs,
# tests/tray.rs); xdotool also types into the native file dialog of the
# Browse… buttons, which WebDriver cannot reach, and python3-pyatspi (AT-SPI,
# the accessibility interface; at-spi2-core is its bus) lets that test wait
# until the dialog has taken each key (tests/webdriver/dialog.rs, a11y.py).
# imagemagick's `import` takes the whole-screen shot a failing UI test saves;
# gdb prints the backtrace of an app that crashed in a test (tests/tray.rs).
# python3-aiosmtpd is the real SMTP server on loopback that the vault's
# account service mails its codes to (crates/coffer-vault/tests/accounts.rs;
# /usr/bin/python3, or COFFER_PYTHON).
# openssh-server (sshd, sftp-server) and openssh-client (ssh-keygen): the
# off-site tests start their own sshd on a loopback port (never the system
# service); faketime runs `coffer` with a wrong clock (the clock-skew error).
APT_PACKAGES=(
  build-essential pkg-config libssl-dev libwebkit2gtk-4.1-dev librsvg2-dev
  libayatana-appindicator3-dev webkit2gtk-driver xvfb xauth dbus dbus-x11
  gnome-keyring keyutils libdbus-1-dev python3 libnotify-bin
  dunst trayer x11-utils xdotool python3-pyatspi at-spi2-core imagemagick
  python3-aiosmtpd gdb
  openssh-server openssh-client faketime
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
command -v node >/dev/null || { echo "node not found: install Node.js 20.19+ first" >&2; exit 1; }

# npm packages (Vite, TypeScript, Vitest, Tauri's JS API and CLI), from the lock file.
cd "$ROOT"
stamp="node_modules/.coffer-lock"
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
fi

# tauri-driver, the WebDriver server for Tauri apps (UI tests only).
if [ "${COFFER_SETUP_DRIVER:-1}" = 1 ] && ! command -v tauri-driver >/dev/null; then
  say "installing tauri-driver 2.1.0 (cargo install, ~30 s)"
  cargo install tauri-driver --version 2.1.0 --locked --quiet
fi

# Garage, the S3-compatible server the off-site tests run on loopback
# (crates/coffer-testenv/src/servers.rs). Built once into ~/.cargo/bin and
# skipped whenever a garage binary is there (or on the PATH, or named by
# COFFER_GARAGE): ~14 min on 2 idle cores, 60 min (2026-12-05) when the 2
# cores were shared with three other builds; a ~3 GB build folder that is
# deleted afterwards. CI should cache ~/.cargo/bin/garage.
if ! command -v garage >/dev/null && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/garage" ] \
  && [ -z "${COFFER_GARAGE:-}" ]; then
  say "installing garage 2.5.0 (cargo install, ~14 min on 2 cores, once)"
  garage_build="$(mktemp -d)"
  CARGO_TARGET_DIR="$garage_build" cargo install garage --version 2.5.0 --locked --quiet
  rm -rf "$garage_build"
fi

# The UI bundle that Tauri embeds into the binary.
if [ ! -f ui/dist/index.html ] || [ -n "$(find ui/src ui/index.html vite.config.ts -newer ui/dist/index.html 2>/dev/null | head -1)" ]; then
  say "building the UI (vite build)"
  npx --no-install vite build --logLevel warn
fi
