//! Helpers for tests that run real desktop daemons (a D-Bus session bus,
//! Xvfb, dunst, trayer): a child process that is stopped when dropped, a
//! private session bus, an X display that picks its own number, and a check
//! that a tool is installed (a missing tool fails the test with the command
//! that installs it; tests never skip).
//!
//! Test-only (`publish = false`); used as a dev-dependency.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process stopped (SIGTERM, then SIGKILL after 3 s) when dropped.
pub struct Proc(pub Child);

impl Proc {
    /// Waits up to `secs` for the process to exit.
    pub fn wait_exit(&mut self, secs: u64) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .stderr(Stdio::null())
            .status();
        if self.wait_exit(3).is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Fails (with what to run) unless `name` is on the PATH.
pub fn require_tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{name}` is not installed: run scripts/setup.sh (it installs the \
         desktop tools these tests need: Xvfb, dbus, dunst, libnotify-bin, \
         trayer, x11-utils, xdotool)"
    );
}

/// Reads the first line a child prints on stdout.
fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .unwrap();
    line
}

/// A private session bus; returns the daemon and its address.
pub fn start_bus() -> (Proc, String) {
    let mut child = Command::new("dbus-daemon")
        .args(["--session", "--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dbus-daemon could not start: run scripts/setup.sh");
    let line = first_line(&mut child);
    let address = line.trim().to_string();
    assert!(address.starts_with("unix:"), "dbus-daemon said {line:?}");
    (Proc(child), address)
}

/// Starts Xvfb with a `WxHxD` screen on a display number it picks itself
/// (`-displayfd`: it writes the number once it accepts connections);
/// returns it and ":N".
pub fn start_xvfb(screen: &str) -> (Proc, String) {
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            screen,
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb could not start: run scripts/setup.sh");
    let line = first_line(&mut child);
    let n: u32 = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("Xvfb did not start (it said {line:?})"));
    (Proc(child), format!(":{n}"))
}
