//! Desktop notifications, end to end: a backup run through [`App`] ends (and
//! another fails), the app's notification path
//! ([`coffer_app::support::desktop_notification`], which runs `notify-send`)
//! sends them over D-Bus, and a real notification daemon (dunst) shows them;
//! `dunstctl history` proves what arrived.
//!
//! The test starts its own D-Bus session bus (so a desktop's notification
//! daemon never answers instead of dunst) and its own Xvfb display for dunst.
//! `scripts/setup.sh` installs dunst, notify-send and Xvfb; without them this
//! test fails, it never skips.
//!
//! This file holds one test on purpose: it points this process's
//! `DBUS_SESSION_BUS_ADDRESS` at the private bus before any other thread runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_app::jobs::{EventSink, JobEvent, JobState};
use coffer_app::keyring::OsKeyring;
use coffer_app::schedule::Schedule;
use coffer_app::settings::{BackupSetInput, Retention};
use coffer_app::App;
use coffer_testenv::{name_has_owner, require_tool, start_bus, start_xvfb, Proc};

/// The shell's sink (`WindowSink` in src-tauri/src/main.rs) minus the window:
/// notifications go through the app's real notification path.
struct DesktopSink;

impl EventSink for DesktopSink {
    fn job_event(&self, _event: &JobEvent) {}
    fn notify(&self, title: &str, body: &str) {
        coffer_app::support::desktop_notification(title, body);
    }
}

/// Starts dunst on the bus and display and waits until it owns the
/// notification name.
fn start_dunst(config_dir: &Path, display: &str) -> Proc {
    // An empty configuration: dunst's defaults, whatever the user has set.
    let config = config_dir.join("dunstrc");
    std::fs::write(&config, "").unwrap();
    let mut child = Command::new("dunst")
        .arg("-config")
        .arg(&config)
        .env("DISPLAY", display)
        .env_remove("WAYLAND_DISPLAY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dunst could not start: run scripts/setup.sh");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!("dunst exited ({status}): {err}");
        }
        // Asked without auto-start: dunstctl would have the bus start a
        // second dunst from its service file.
        let bus = std::env::var("DBUS_SESSION_BUS_ADDRESS").unwrap_or_default();
        let owned = name_has_owner(&bus, "org.freedesktop.Notifications");
        if owned {
            return Proc(child);
        }
        assert!(Instant::now() < deadline, "dunst did not come up in 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (app name, summary, body) of every notification dunst has shown, after
/// moving those on screen into its history.
fn dunst_history() -> Vec<(String, String, String)> {
    let closed = Command::new("dunstctl").arg("close-all").status().unwrap();
    assert!(closed.success());
    let out = Command::new("dunstctl").arg("history").output().unwrap();
    assert!(out.status.success(), "dunstctl history failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("dunstctl history is not JSON ({e})"));
    let field = |n: &serde_json::Value, k: &str| n[k]["data"].as_str().unwrap_or("").to_string();
    v["data"][0]
        .as_array()
        .expect("history: data[0] is the list of notifications")
        .iter()
        .map(|n| (field(n, "appname"), field(n, "summary"), field(n, "body")))
        .collect()
}

/// Waits (up to 10 s) until dunst has shown a notification with `summary`.
fn wait_for(summary: &str) -> (String, String, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let history = dunst_history();
        if let Some(n) = history.iter().find(|n| n.1 == summary) {
            return n.clone();
        }
        assert!(
            Instant::now() < deadline,
            "dunst never showed {summary:?}; it showed {history:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_job(app: &App, job: u64) -> JobEvent {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ev = app.job_status(job).unwrap();
        if ev.state != JobState::Running {
            return ev;
        }
        assert!(Instant::now() < deadline, "job {job} did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Key-mode first run with one backup set "Letters" over `src`.
fn onboard(tmp: &Path, repo: &Path, src: &Path) -> App {
    let app = App::with_parts(
        tmp.join("data"),
        Arc::new(OsKeyring::with_backends(vec![])),
        Arc::new(DesktopSink),
    )
    .unwrap();
    let new = app
        .create_key_repository(repo.to_str().unwrap(), true)
        .unwrap();
    let group = new.confirm_group;
    app.confirm_recovery_key(group, &new.groups[group as usize - 1])
        .unwrap();
    app.complete_onboarding(BackupSetInput {
        name: "Letters".into(),
        sources: vec![src.to_path_buf()],
        excludes: vec![],
        repository: repo.to_path_buf(),
        schedule: Schedule::Manual.into(),
        retention: Retention::default(),
        remote: None,
        upload_limit: None,
    })
    .unwrap();
    app
}

#[test]
fn finished_and_failed_backups_reach_the_notification_daemon() {
    for tool in [
        "dbus-daemon",
        "dbus-send",
        "Xvfb",
        "dunst",
        "dunstctl",
        "notify-send",
    ] {
        require_tool(tool);
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_bus, address) = start_bus();
    // Before any thread starts (one test in this binary): the app's
    // notify-send and dunstctl talk to the private bus.
    std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &address);
    let (_xvfb, display) = start_xvfb("800x600x24");
    let _dunst = start_dunst(tmp.path(), &display);
    assert!(dunst_history().is_empty(), "a fresh dunst has no history");

    let src: PathBuf = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for name in ["a.txt", "b.txt", "c.txt"] {
        std::fs::write(src.join(name), name).unwrap();
    }
    let repo = tmp.path().join("dest/coffer.db");
    let app = onboard(tmp.path(), &repo, &src);

    let ev = wait_job(&app, app.run_backup("set-1").unwrap());
    assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    let (appname, _, body) = wait_for("Backup finished");
    assert_eq!(appname, "Coffer");
    assert_eq!(body, "Letters: backed up 3 files.");

    // The repository disappears (a drive unplugged): the run fails, and the
    // notification says so in plain words, with the step to take in the app.
    std::fs::rename(tmp.path().join("dest"), tmp.path().join("unplugged")).unwrap();
    let ev = wait_job(&app, app.run_backup("set-1").unwrap());
    assert_eq!(ev.state, JobState::Failed);
    let code = ev.error.expect("a failed run carries its error").code;
    let (appname, _, body) = wait_for("Backup failed");
    assert_eq!(appname, "Coffer");
    let words = coffer_app::wording::run_failure(&code);
    assert_eq!(
        body,
        format!("Letters: {} {}", words.message, words.next_step)
    );
    assert!(body.contains("does not exist"), "{body}");
    assert!(!body.contains("CF-") && !body.contains("`coffer"), "{body}");
    assert_eq!(dunst_history().len(), 2, "one notification per run");
}
