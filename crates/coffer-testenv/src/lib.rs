//! Helpers for tests that run real desktop daemons (a D-Bus session bus,
//! Xvfb, dunst, trayer) and real storage servers (Garage for S3, OpenSSH's
//! sftp-server; `servers`): a child process that is stopped when dropped, a
//! private session bus, an X display that picks its own number, and a check
//! that a tool is installed (a missing tool fails the test with the command
//! that installs it; tests never skip).
//!
//! Test-only (`publish = false`); used as a dev-dependency.
#![forbid(unsafe_code)]

pub mod servers;
pub mod smtp;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
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

/// A private session bus with its own unlocked gnome-keyring (a real
/// daemon keeping its files in a fresh folder). Dropping it stops both and
/// removes the folder.
pub struct Keyring {
    // Field order is drop order: the daemon before its bus.
    _daemon: Proc,
    _bus: Proc,
    /// The bus address, for `DBUS_SESSION_BUS_ADDRESS`.
    pub address: String,
    dir: PathBuf,
}

impl Drop for Keyring {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `name` has an owner on the bus at `address` (asked without
/// auto-start, so the bus never activates a service from its files).
pub fn name_has_owner(address: &str, name: &str) -> bool {
    Command::new("dbus-send")
        .args([
            "--session",
            "--print-reply=literal",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
            &format!("string:{name}"),
        ])
        .env("DBUS_SESSION_BUS_ADDRESS", address)
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("true"))
}

/// Starts a private bus and an unlocked gnome-keyring on it, and waits
/// (10 s at most) until it serves the Secret Service with its default
/// collection unlocked: owning the bus name comes before the daemon has
/// made and unlocked the login keyring, and a request in between is not
/// what a user's logged-in session ever sees. The daemon's own output is
/// kept in its folder and shown when a test in it fails
/// ([`Keyring::run_test_in_child`]).
pub fn start_keyring() -> Keyring {
    for tool in ["dbus-daemon", "dbus-send", "gnome-keyring-daemon"] {
        require_tool(tool);
    }
    let (bus, address) = start_bus();
    let dir = std::env::temp_dir().join(format!(
        "coffer-keyring-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut child = Command::new("gnome-keyring-daemon")
        .args(["--foreground", "--unlock", "--components=secrets"])
        .env("DBUS_SESSION_BUS_ADDRESS", &address)
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_RUNTIME_DIR", &dir)
        // The test run's own daemon must never be found or replaced.
        .env_remove("GNOME_KEYRING_CONTROL")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("gnome-keyring-daemon could not start: run scripts/setup.sh");
    // The login keyring's password, then end of input.
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(b"coffer-test")
        .unwrap();
    let mut keyring = Keyring {
        _daemon: Proc(child),
        _bus: bus,
        address,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !keyring.default_collection_unlocked() {
        if let Ok(Some(status)) = keyring._daemon.0.try_wait() {
            panic!(
                "gnome-keyring-daemon exited ({status}) before it served: {}",
                keyring.daemon_log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "gnome-keyring-daemon did not serve an unlocked default collection in 10 s: {}",
            keyring.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    keyring
}

impl Keyring {
    /// Whether the Secret Service answers on this bus and its default
    /// collection (the login keyring) is unlocked. Asked without
    /// auto-start, so the bus never activates another daemon from its
    /// service files.
    fn default_collection_unlocked(&self) -> bool {
        name_has_owner(&self.address, "org.freedesktop.secrets")
            && Command::new("dbus-send")
                .args([
                    "--session",
                    "--print-reply=literal",
                    "--dest=org.freedesktop.secrets",
                    "/org/freedesktop/secrets/aliases/default",
                    "org.freedesktop.DBus.Properties.Get",
                    "string:org.freedesktop.Secret.Collection",
                    "string:Locked",
                ])
                .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
                .output()
                .is_ok_and(|o| {
                    o.status.success() && String::from_utf8_lossy(&o.stdout).contains("false")
                })
    }

    /// What the daemon printed, and whether it still runs.
    pub fn daemon_log(&mut self) -> String {
        let state = match self._daemon.0.try_wait() {
            Ok(Some(status)) => format!("the daemon exited ({status})"),
            _ => "the daemon still runs".to_string(),
        };
        let log = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        format!("{state}; its output:\n{log}")
    }

    /// [`run_test_in_child`] on this keyring's bus (`env` added); a
    /// failure also shows the daemon's state and output.
    pub fn run_test_in_child(&mut self, name: &str, env: &[(&str, &str)]) {
        let address = self.address.clone();
        let mut all = vec![("DBUS_SESSION_BUS_ADDRESS", address.as_str())];
        all.extend_from_slice(env);
        if let Err(failure) = child_test(name, &all) {
            panic!("{failure}\nkeyring: {}", self.daemon_log());
        }
    }
}

/// The line a test prints when it ran to the end in a child process.
pub const CHILD_PASSED: &str = "CHILD-CHECKS-PASSED";

/// Runs the test `name` of the current test binary again in a child
/// process with `env` added, and checks that it ran to the end (it prints
/// [`CHILD_PASSED`] last). For tests that need another environment (another
/// session bus) without changing this process's global state.
pub fn run_test_in_child(name: &str, env: &[(&str, &str)]) {
    if let Err(failure) = child_test(name, env) {
        panic!("{failure}");
    }
}

fn child_test(name: &str, env: &[(&str, &str)]) -> Result<(), String> {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([name, "--exact", "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stdout.contains(CHILD_PASSED) {
        Ok(())
    } else {
        Err(format!(
            "the test {name} failed in its child process:\n{stdout}\n{stderr}"
        ))
    }
}
