//! The "Browse…" buttons open GTK's native file chooser, a window WebDriver
//! cannot reach. Under Xvfb `xdotool` can: it finds the dialog by its title,
//! gives it the keyboard focus and types into it through XTEST (Ctrl+L opens
//! GTK's location field; a path and Enter choose; Escape cancels). The test
//! then checks, through WebDriver, what the field holds.
//!
//! All dialogs of the suite are opened by this one test, one after another,
//! so no other test's dialog can be found by the same title.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use coffer_app::dialog::PathKind;

use crate::harness::{run_with, Session, TestResult};
use crate::{make_source, NO_KEYRING};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs xdotool (at most 5 s) and returns its output; a search that finds
/// nothing exits 1 with empty output, which is not an error here.
fn xdotool(args: &[&str]) -> Result<String, Error> {
    let out = Command::new("timeout")
        .arg("5")
        .arg("xdotool")
        .args(args)
        .output()
        .map_err(|e| format!("xdotool could not run ({e}): install it (scripts/setup.sh does)"))?;
    if out.status.code() == Some(124) {
        return Err(format!("xdotool {args:?} took over 5 s").into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The visible windows titled exactly `title`.
fn windows_titled(title: &str) -> Result<Vec<String>, Error> {
    let pattern = format!("^{title}$");
    Ok(xdotool(&["search", "--onlyvisible", "--name", &pattern])?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Waits (up to 15 s) for the file dialog of `kind`; returns its window id.
async fn dialog_of(kind: PathKind) -> Result<String, Error> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(id) = windows_titled(kind.title())?.into_iter().next() {
            return Ok(id);
        }
        if Instant::now() > deadline {
            return Err(format!("no window titled {:?} appeared", kind.title()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 10 s) until window `id` is no longer shown.
async fn closed(kind: PathKind, id: &str) -> TestResult {
    let deadline = Instant::now() + Duration::from_secs(10);
    while windows_titled(kind.title())?.iter().any(|w| w == id) {
        if Instant::now() > deadline {
            return Err(format!("the dialog {:?} stayed open", kind.title()).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// One thing typed into the dialog.
enum Key<'a> {
    /// A key or chord in xdotool's names: `ctrl+l`, `Return`, `Escape`.
    Press(&'a str),
    /// Text, typed character by character.
    Text(&'a str),
}

/// Focuses window `id` (there is no window manager under Xvfb, so nobody
/// else does) before every key, then presses or types it.
fn send(id: &str, keys: &[Key<'_>]) -> TestResult {
    for k in keys {
        xdotool(&["windowfocus", "--sync", id])?;
        match k {
            Key::Press(chord) => xdotool(&["key", "--clearmodifiers", chord])?,
            Key::Text(t) => xdotool(&["type", "--clearmodifiers", "--delay", "2", t])?,
        };
    }
    Ok(())
}

/// Ctrl+L (GTK's location field), the path, Delete (drops the inline
/// completion GTK proposes, e.g. a folder's only subfolder), Enter.
fn location(path: &str) -> [Key<'_>; 4] {
    [
        Key::Press("ctrl+l"),
        Key::Text(path),
        Key::Press("Delete"),
        Key::Press("Return"),
    ]
}

/// The current value of the input with this test id.
async fn value(s: &Session, id: &str) -> Result<String, Error> {
    Ok(s.testid(id).await?.prop("value").await?.unwrap_or_default())
}

/// Clicks `<field>-browse`, waits for its dialog, types `keys` into it and
/// waits until the button reports `outcome` (`picked` or `cancelled`).
async fn browse(
    s: &Session,
    field: &str,
    kind: PathKind,
    keys: &[Key<'_>],
    outcome: &str,
) -> TestResult {
    dialog_button(s, &format!("{field}-browse"), kind, keys, outcome).await
}

/// Clicks `button`, which opens the dialog of `kind`, types `keys` into the
/// dialog and waits until the button reports `outcome` in `data-dialog`.
async fn dialog_button(
    s: &Session,
    button: &str,
    kind: PathKind,
    keys: &[Key<'_>],
    outcome: &str,
) -> TestResult {
    s.click(button).await?;
    let id = dialog_of(kind).await?;
    s.wait_attr(button, "data-dialog", "open", 5).await?;
    // The dialog is not modal to the window, so the window is inert under a
    // veil that says where to look, until the dialog closes.
    assert!(s.testid("dialog-open").await?.is_displayed().await?);
    assert_eq!(shell_inert(s).await?, Some(true));
    // Let GTK finish mapping and focusing its widgets.
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&id, keys)?;
    closed(kind, &id).await?;
    s.wait_attr(button, "data-dialog", outcome, 10).await?;
    assert!(
        !s.exists("dialog-open").await?,
        "the veil stays after the dialog"
    );
    assert_eq!(shell_inert(s).await?, Some(false));
    Ok(())
}

/// Whether the app shell is inert now.
async fn shell_inert(s: &Session) -> Result<Option<bool>, Error> {
    let v = s
        .client
        .execute("return document.getElementById('app').inert", vec![])
        .await?;
    Ok(v.as_bool())
}

/// Saves a picture of the whole X screen (the dialog included: a WebDriver
/// screenshot shows only the webview) next to the harness's screenshots.
fn screen_shot(name: &str) -> String {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("webdriver-screenshots");
    std::fs::create_dir_all(&dir).ok();
    let file = dir.join(format!("{name}-screen.png"));
    let _ = Command::new("timeout")
        .args(["10", "import", "-window", "root"])
        .arg(&file)
        .status();
    file.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn browse_buttons_fill_paths_through_the_native_file_dialog() {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 0);
    let chosen = tmp.path().join("usb");
    std::fs::create_dir_all(&chosen).unwrap();
    let repo = chosen.join("laptop.coffer");
    let name = "browse_buttons_fill_paths_through_the_native_file_dialog";
    run_with(name, NO_KEYRING, |s| async move {
        let r = async {
            s.testid("onboarding-screen").await?;
            s.click("onboard-mode-key").await?;
            let field = "onboard-repo-path";
            let typed = value(&s, field).await?;
            assert!(typed.ends_with("/coffer.db"), "{typed}");

            // Cancelled: the field keeps what it held.
            let save = PathKind::SaveRepository;
            browse(&s, field, save, &[Key::Press("Escape")], "cancelled").await?;
            assert_eq!(value(&s, field).await?, typed);
            assert!(!s.exists("error-panel").await?);

            // A new file: its full path typed into GTK's name field.
            let keys = [
                Key::Press("ctrl+a"),
                Key::Text(repo.to_str().unwrap()),
                Key::Press("Return"),
            ];
            browse(&s, field, save, &keys, "picked").await?;
            assert_eq!(value(&s, field).await?, repo.to_str().unwrap());
            s.click("onboard-create").await?;
            s.testid("onboard-recovery-key").await?;
            assert!(
                repo.is_file(),
                "the backup file was not created where chosen"
            );

            // Confirm the key, to reach the first backup set.
            let input = s.testid("onboard-confirm-input").await?;
            let n = input.attr("data-group").await?.unwrap_or_default();
            let group = s.text(&format!("onboard-key-group-{n}")).await?;
            s.type_in("onboard-confirm-input", &group).await?;
            s.click("onboard-confirm").await?;

            // Folders to back up: each pick adds a line.
            s.testid("set-form").await?;
            assert_eq!(value(&s, "set-sources").await?, "");
            let first = src.display().to_string();
            let docs = src.join("docs").display().to_string();
            browse(
                &s,
                "set-sources",
                PathKind::Folder,
                &location(&first),
                "picked",
            )
            .await?;
            assert_eq!(value(&s, "set-sources").await?, first);
            browse(
                &s,
                "set-sources",
                PathKind::Folder,
                &location(&docs),
                "picked",
            )
            .await?;
            assert_eq!(value(&s, "set-sources").await?, format!("{first}\n{docs}"));
            s.finish_first_set(None).await?;

            // The Recovery wizard: an existing backup file, through GTK's
            // location field.
            s.go("recovery").await?;
            let keys = location(repo.to_str().unwrap());
            let open = PathKind::OpenRepository;
            browse(&s, "recovery-repo-path", open, &keys, "picked").await?;
            assert_eq!(
                value(&s, "recovery-repo-path").await?,
                repo.to_str().unwrap()
            );

            // Support: the diagnostics report saved where the dialog says;
            // cancelled, nothing is written.
            s.go("support").await?;
            s.wait_text("support-diagnostics", "Coffer").await?;
            let kind = PathKind::SaveDiagnostics;
            dialog_button(
                &s,
                "support-save-as",
                kind,
                &[Key::Press("Escape")],
                "cancelled",
            )
            .await?;
            assert!(!s.exists("support-saved-path").await?);
            let report = chosen.join("for-support.txt");
            let keys = [
                Key::Press("ctrl+a"),
                Key::Text(report.to_str().unwrap()),
                Key::Press("Return"),
            ];
            dialog_button(&s, "support-save-as", kind, &keys, "picked").await?;
            s.wait_text("support-saved-path", report.to_str().unwrap())
                .await?;
            let saved = std::fs::read_to_string(&report)?;
            let shown = s.text("support-diagnostics").await?;
            assert_eq!(saved.lines().next(), shown.lines().next(), "{saved}");
            assert_eq!(saved.lines().count(), shown.lines().count(), "{saved}");
            TestResult::Ok(())
        }
        .await;
        if let Err(e) = r {
            return Err(format!("{e}\n  whole screen: {}", screen_shot(name)).into());
        }
        Ok(())
    })
    .await;
}
