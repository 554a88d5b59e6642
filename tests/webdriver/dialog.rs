//! The "Browse…" buttons open GTK's native file chooser, a window WebDriver
//! cannot reach. Under Xvfb two other interfaces can: `xdotool` types into
//! it through XTEST, as a person's keyboard would, and AT-SPI (the
//! accessibility interface screen readers use; `a11y.py`) reads which of its
//! widgets has the focus and what its fields hold. The test then checks, through WebDriver, what the
//! app's field holds.
//!
//! Every step waits for the state the next one needs, never for a delay:
//! GTK's location field completes folder names asynchronously, so keys typed
//! at full speed used to reach it before it had finished with the ones
//! before. On a fresh machine (a fresh `HOME`) the Open dialog then ignored
//! its Return every time (issue 11), while a used `HOME` happened to be slow
//! enough. Now the test waits until AT-SPI shows the field holding exactly
//! the path before it presses Return (AT-SPI answers from GTK's main loop, so
//! by then GTK has also run the completion the typed keys started).
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

/// What `a11y.py` said: `Ok(Some(stdout))`, or `Ok(None)` when what it looks
/// for is not shown yet (exit status 3).
fn a11y(args: &[&str]) -> Result<Option<String>, Error> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webdriver/a11y.py");
    // Debian's python3, which has python3-pyatspi, not whichever is first on PATH.
    let out = Command::new("timeout")
        .arg("10")
        .arg("/usr/bin/python3")
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| {
            format!("a11y.py could not run ({e}): install python3-pyatspi (scripts/setup.sh does)")
        })?;
    match out.status.code() {
        Some(0) => Ok(Some(
            String::from_utf8_lossy(&out.stdout)
                .trim_end_matches('\n')
                .to_string(),
        )),
        Some(3) => Ok(None),
        _ => Err(format!(
            "a11y.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into()),
    }
}

/// Polls `probe` every 50 ms until it returns `Some`, for at most 10 s.
async fn until<T>(
    what: impl Fn() -> String,
    mut probe: impl FnMut() -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("waited 10 s for {}", what()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The visible windows titled exactly `title`.
fn windows_titled(title: &str) -> Result<Vec<String>, Error> {
    let pattern = format!("^{title}$");
    Ok(xdotool(&["search", "--onlyvisible", "--name", &pattern])?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Waits (up to 10 s) for the file dialog of `kind`; returns its window id.
async fn dialog_of(kind: PathKind) -> Result<String, Error> {
    until(
        || format!("a window titled {:?}", kind.title()),
        || Ok(windows_titled(kind.title())?.into_iter().next()),
    )
    .await
}

/// Waits (up to 10 s) until window `id` is no longer shown.
async fn closed(kind: PathKind, id: &str) -> TestResult {
    until(
        || format!("the dialog {:?} to close", kind.title()),
        || Ok((!windows_titled(kind.title())?.iter().any(|w| w == id)).then_some(())),
    )
    .await
}

/// Presses a key or chord (xdotool's names: `ctrl+l`, `Escape`) in window
/// `id`, focused first (there is no window manager under Xvfb, so nobody
/// else gives it the keyboard).
fn key(id: &str, chord: &str) -> TestResult {
    xdotool(&["windowfocus", "--sync", id])?;
    xdotool(&["key", "--clearmodifiers", chord])?;
    Ok(())
}

/// Types `text` into window `id`, character by character.
fn type_text(id: &str, text: &str) -> TestResult {
    xdotool(&["windowfocus", "--sync", id])?;
    xdotool(&["type", "--clearmodifiers", "--delay", "2", text])?;
    Ok(())
}

/// What the test does in an open dialog.
#[derive(Clone, Copy)]
enum Answer<'a> {
    /// Escape: the dialog closes with nothing chosen.
    Cancel,
    /// Chooses `path`, typed into the field GTK offers for it: the name
    /// field of a save dialog (focused when it opens), or the location field
    /// of an open or folder dialog (Ctrl+L shows it).
    Path(&'a str),
}

/// The text of the dialog's focused text field, once AT-SPI shows one.
async fn field_text(kind: PathKind) -> Result<String, Error> {
    until(
        || format!("a focused text field in {:?}", kind.title()),
        || a11y(&["text", kind.title()]),
    )
    .await
}

/// Waits until the dialog's focused field holds a text that `ok` accepts;
/// returns it.
async fn field_until(kind: PathKind, ok: impl Fn(&str) -> bool) -> Result<String, Error> {
    let last = std::sync::Mutex::new(String::new());
    until(
        || {
            format!(
                "the field of {:?} (it holds {:?})",
                kind.title(),
                last.lock().unwrap()
            )
        },
        || {
            let t = a11y(&["text", kind.title()])?;
            if let Some(t) = &t {
                *last.lock().unwrap() = t.clone();
            }
            Ok(t.filter(|t| ok(t)))
        },
    )
    .await
}

/// Answers the dialog `id` of `kind`.
async fn answer(kind: PathKind, id: &str, a: Answer<'_>) -> TestResult {
    // GTK gives one of the dialog's widgets the keyboard focus once the
    // dialog is ready for keys.
    until(
        || format!("a focused widget in {:?}", kind.title()),
        || a11y(&["focused", kind.title()]),
    )
    .await?;
    let Answer::Path(path) = a else {
        return key(id, "Escape");
    };
    if !matches!(kind, PathKind::SaveRepository | PathKind::SaveDiagnostics) {
        // The location field; what it holds on opening varies (the folder,
        // or nothing), so it is selected and typed over.
        key(id, "ctrl+l")?;
        field_text(kind).await?;
    }
    key(id, "ctrl+a")?;
    type_text(id, path)?;
    // GTK completes inline right after each typed character, when the
    // folder is loaded: a folder's only subfolder is appended, selected.
    // Once the field shows every typed character, Delete drops any such
    // completion (and changes nothing otherwise).
    let shown = field_until(kind, |t| t.starts_with(path)).await?;
    if shown != path {
        key(id, "Delete")?;
        field_until(kind, |t| t == path).await?;
    }
    // Every key above has been taken by GTK (the field shows it), so Return
    // now chooses what the field holds.
    key(id, "Return")
}

/// The current value of the input with this test id.
async fn value(s: &Session, id: &str) -> Result<String, Error> {
    Ok(s.testid(id).await?.prop("value").await?.unwrap_or_default())
}

/// Clicks `<field>-browse`, answers its dialog and waits until the button
/// reports `outcome` (`picked` or `cancelled`).
async fn browse(
    s: &Session,
    field: &str,
    kind: PathKind,
    a: Answer<'_>,
    outcome: &str,
) -> TestResult {
    dialog_button(s, &format!("{field}-browse"), kind, a, outcome).await
}

/// Clicks `button`, which opens the dialog of `kind`, answers the dialog
/// and waits until the button reports `outcome` in `data-dialog`.
async fn dialog_button(
    s: &Session,
    button: &str,
    kind: PathKind,
    a: Answer<'_>,
    outcome: &str,
) -> TestResult {
    s.click(button).await?;
    let id = dialog_of(kind).await?;
    s.wait_attr(button, "data-dialog", "open", 5).await?;
    // The dialog is not modal to the window, so the window is inert under a
    // veil that says where to look, until the dialog closes.
    assert!(s.testid("dialog-open").await?.is_displayed().await?);
    assert_eq!(shell_inert(s).await?, Some(true));
    if let Err(e) = answer(kind, &id, a).await {
        let tree = a11y(&["tree", kind.title()])
            .ok()
            .flatten()
            .unwrap_or_default();
        return Err(format!("{e}\n  the dialog's widgets:\n{tree}").into());
    }
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
    match Command::new("timeout")
        .args(["10", "import", "-window", "root"])
        .arg(&file)
        .status()
    {
        Ok(st) if st.success() => file.display().to_string(),
        Ok(st) => format!("none (import exited with {st})"),
        Err(e) => format!("none (import from ImageMagick could not run: {e})"),
    }
}

/// A trust policy (its log key is RFC 8032's first test public key: the
/// dialog only has to fill the form, the policy is not used).
const POLICY: &str =
    "log witness.example+7ae038f4+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea\nquorum none\nmax-age 3600\n";

#[tokio::test(flavor = "multi_thread")]
async fn browse_buttons_fill_paths_through_the_native_file_dialog() {
    let tmp = tempfile::tempdir().unwrap();
    let src = make_source(tmp.path(), 0);
    let chosen = tmp.path().join("usb");
    std::fs::create_dir_all(&chosen).unwrap();
    let repo = chosen.join("laptop.coffer");
    let policy = chosen.join("vault.example.policy");
    std::fs::write(&policy, POLICY).unwrap();
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
            browse(&s, field, save, Answer::Cancel, "cancelled").await?;
            assert_eq!(value(&s, field).await?, typed);
            assert!(!s.exists("error-panel").await?);

            // A new file: its full path typed into GTK's name field.
            let new = Answer::Path(repo.to_str().unwrap());
            browse(&s, field, save, new, "picked").await?;
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
                Answer::Path(&first),
                "picked",
            )
            .await?;
            assert_eq!(value(&s, "set-sources").await?, first);
            browse(
                &s,
                "set-sources",
                PathKind::Folder,
                Answer::Path(&docs),
                "picked",
            )
            .await?;
            assert_eq!(value(&s, "set-sources").await?, format!("{first}\n{docs}"));
            s.finish_first_set(None).await?;

            // The Recovery wizard: an existing backup file, through GTK's
            // location field.
            s.go("recovery").await?;
            let existing = Answer::Path(repo.to_str().unwrap());
            let open = PathKind::OpenRepository;
            browse(&s, "recovery-repo-path", open, existing, "picked").await?;
            assert_eq!(
                value(&s, "recovery-repo-path").await?,
                repo.to_str().unwrap()
            );

            // Support: the diagnostics report saved where the dialog says;
            // cancelled, nothing is written.
            s.go("support").await?;
            s.wait_text("support-diagnostics", "Coffer").await?;
            let kind = PathKind::SaveDiagnostics;
            dialog_button(&s, "support-save-as", kind, Answer::Cancel, "cancelled").await?;
            assert!(!s.exists("support-saved-path").await?);
            let report = chosen.join("for-support.txt");
            let saved_at = Answer::Path(report.to_str().unwrap());
            dialog_button(&s, "support-save-as", kind, saved_at, "picked").await?;
            s.wait_text("support-saved-path", report.to_str().unwrap())
                .await?;
            let saved = std::fs::read_to_string(&report)?;
            let shown = s.text("support-diagnostics").await?;
            assert_eq!(saved.lines().next(), shown.lines().next(), "{saved}");
            assert_eq!(saved.lines().count(), shown.lines().count(), "{saved}");

            // Settings → Vault, remote: a trust policy file picked in the
            // open dialog is read at once into the form.
            s.go("settings").await?;
            s.click("vault-choice-remote").await?;
            let pick = Answer::Path(policy.to_str().unwrap());
            browse(
                &s,
                "vault-policy-file",
                PathKind::OpenPolicy,
                pick,
                "picked",
            )
            .await?;
            assert_eq!(
                value(&s, "vault-policy-file").await?,
                policy.to_str().unwrap()
            );
            s.wait_text("vault-policy-loaded", "maximum age 1 h")
                .await?;
            assert_eq!(value(&s, "vault-trust-policy").await?, POLICY);
            assert_eq!(value(&s, "vault-max-age-hours").await?, "1");
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
