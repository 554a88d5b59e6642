//! The "Browse…" buttons open GTK's native file chooser, a window WebDriver
//! cannot reach. Under Xvfb two other interfaces can: `xdotool` types into
//! it through XTEST, as a person's keyboard would, and AT-SPI (the
//! accessibility interface screen readers use; `a11y.py`) reads which of its
//! widgets has the focus and what its fields hold. The test then checks,
//! through WebDriver, what the app's field holds.
//!
//! Every step waits for the state the next one needs, never for a delay:
//! AT-SPI shows the field holding the whole path before Return is pressed,
//! and the dialog's default button enabled (an Open dialog enables it only
//! once its location field has been still for 300 ms; Return pressed
//! sooner did nothing, which on a quiet machine was every time: issue 11).
//!
//! All dialogs of the suite are opened by this one test, one after another,
//! so no other test's dialog can be found by the same title.
//!
//! The test runs its app on an X display of its own (a private Xvfb): XTEST
//! keys go to whichever window has the X input focus, and on the suite's
//! shared display the other tests' app windows come and go meanwhile (a
//! window that had the focus and closes sends it back to the pointer's
//! window). The suite failed that way at the last dialog, 3 times in 7
//! full runs (the keys typed into the app's own window, or the dialog
//! answered but its answer lost), never when the test ran alone. On its own
//! display only this app's window and its dialog exist.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use coffer_app::dialog::PathKind;

use crate::harness::{run_with_env, Session, TestResult};
use crate::{make_source, NO_KEYRING};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A private X display (its own Xvfb) for the test's app and its dialogs;
/// every X tool below runs against it. Stopped when dropped.
struct Screen {
    display: String,
    xvfb: std::process::Child,
}

impl Screen {
    /// Starts Xvfb on a free display number (it writes the number to its
    /// stdout once it accepts clients).
    fn start() -> Result<Screen, Error> {
        use std::io::BufRead;
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "1280x800x24",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("Xvfb could not run ({e}): install xvfb (scripts/setup.sh does)")
            })?;
        let mut line = String::new();
        std::io::BufReader::new(xvfb.stdout.take().expect("piped")).read_line(&mut line)?;
        let n = line.trim();
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            let _ = xvfb.kill();
            let _ = xvfb.wait();
            return Err(format!("Xvfb did not report a display (it said {line:?})").into());
        }
        Ok(Screen {
            display: format!(":{n}"),
            xvfb,
        })
    }

    fn command(&self, program: &str, limit_s: u32) -> Command {
        let mut c = Command::new("timeout");
        c.arg(limit_s.to_string())
            .arg(program)
            .env("DISPLAY", &self.display);
        c
    }

    /// Runs xdotool (at most 5 s) and returns its output; a search that
    /// finds nothing exits 1 with empty output, which is not an error here.
    fn xdotool(&self, args: &[&str]) -> Result<String, Error> {
        let out = self
            .command("xdotool", 5)
            .args(args)
            .output()
            .map_err(|e| {
                format!("xdotool could not run ({e}): install it (scripts/setup.sh does)")
            })?;
        if out.status.code() == Some(124) {
            return Err(format!("xdotool {args:?} took over 5 s").into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// What `a11y.py` said: `Ok(Some(stdout))`, or `Ok(None)` when what it
    /// looks for is not shown yet (exit status 3).
    fn a11y(&self, args: &[&str]) -> Result<Option<String>, Error> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webdriver/a11y.py");
        // Debian's python3, which has python3-pyatspi, not whichever is first on PATH.
        let out = self
            .command("/usr/bin/python3", 10)
            .arg(&script)
            .args(args)
            .output()
            .map_err(|e| {
                format!(
                    "a11y.py could not run ({e}): install python3-pyatspi (scripts/setup.sh does)"
                )
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

    /// Saves a picture of the whole display (the dialog included: a
    /// WebDriver screenshot shows only the webview) next to the harness's
    /// screenshots, and says which window had the keyboard.
    fn shot(&self, name: &str) -> String {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("webdriver-screenshots");
        std::fs::create_dir_all(&dir).ok();
        let file = dir.join(format!("{name}-screen.png"));
        let focus = self
            .xdotool(&["getwindowfocus", "getwindowname"])
            .unwrap_or_else(|e| e.to_string());
        let picture = match self
            .command("import", 10)
            .args(["-window", "root"])
            .arg(&file)
            .status()
        {
            Ok(st) if st.success() => file.display().to_string(),
            Ok(st) => format!("none (import exited with {st})"),
            Err(e) => format!("none (import from ImageMagick could not run: {e})"),
        };
        format!("{picture} (X focus: {focus:?})")
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.xvfb.kill();
        let _ = self.xvfb.wait();
    }
}

/// How long a dialog may take to reach a state. Generous: the suite runs on
/// 2 busy cores, and a wait ends as soon as the state is there.
const DIALOG_WAIT: Duration = Duration::from_secs(30);

/// Polls `probe` every 50 ms until it returns `Some`, for at most
/// [`DIALOG_WAIT`].
async fn until<T>(
    what: impl Fn() -> String,
    mut probe: impl FnMut() -> Result<Option<T>, Error>,
) -> Result<T, Error> {
    let deadline = Instant::now() + DIALOG_WAIT;
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("waited {} s for {}", DIALOG_WAIT.as_secs(), what()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The visible windows titled exactly `title`.
fn windows_titled(x: &Screen, title: &str) -> Result<Vec<String>, Error> {
    let pattern = format!("^{title}$");
    Ok(x.xdotool(&["search", "--onlyvisible", "--name", &pattern])?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Waits (up to [`DIALOG_WAIT`]) for the file dialog of `kind`; returns its window id.
async fn dialog_of(x: &Screen, kind: PathKind) -> Result<String, Error> {
    until(
        || format!("a window titled {:?}", kind.title()),
        || Ok(windows_titled(x, kind.title())?.into_iter().next()),
    )
    .await
}

/// Waits (up to [`DIALOG_WAIT`]) until window `id` is no longer shown.
async fn closed(x: &Screen, kind: PathKind, id: &str) -> TestResult {
    until(
        || format!("the dialog {:?} to close", kind.title()),
        || Ok((!windows_titled(x, kind.title())?.iter().any(|w| w == id)).then_some(())),
    )
    .await
}

/// Presses a key or chord (xdotool's names: `ctrl+l`, `Escape`) in window
/// `id`, focused first (there is no window manager under Xvfb, so nobody
/// else gives it the keyboard).
fn key(x: &Screen, id: &str, chord: &str) -> TestResult {
    x.xdotool(&["windowfocus", "--sync", id])?;
    x.xdotool(&["key", "--clearmodifiers", chord])?;
    Ok(())
}

/// Types `text` into window `id`, character by character.
fn type_text(x: &Screen, id: &str, text: &str) -> TestResult {
    x.xdotool(&["windowfocus", "--sync", id])?;
    x.xdotool(&["type", "--clearmodifiers", "--delay", "2", text])?;
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
async fn field_text(x: &Screen, kind: PathKind) -> Result<String, Error> {
    until(
        || format!("a focused text field in {:?}", kind.title()),
        || x.a11y(&["text", kind.title()]),
    )
    .await
}

/// Waits until the dialog's focused field holds a text that `ok` accepts;
/// returns it.
async fn field_until(
    x: &Screen,
    kind: PathKind,
    ok: impl Fn(&str) -> bool,
) -> Result<String, Error> {
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
            let t = x.a11y(&["text", kind.title()])?;
            if let Some(t) = &t {
                *last.lock().unwrap() = t.clone();
            }
            Ok(t.filter(|t| ok(t)))
        },
    )
    .await
}

/// Answers the dialog `id` of `kind`.
async fn answer(x: &Screen, kind: PathKind, id: &str, a: Answer<'_>) -> TestResult {
    // GTK marks one of the dialog's widgets focused once the dialog is ready
    // for keys, but only while its window has the X input focus. There is
    // no window manager under Xvfb to give it: the focus follows the
    // pointer, so whether the new dialog had it depended on where GTK put
    // the window and where the pointer was (a fresh machine's run waited
    // 10 s for a save dialog that never got it). Give it first.
    x.xdotool(&["windowfocus", "--sync", id])?;
    until(
        || format!("a focused widget in {:?}", kind.title()),
        || x.a11y(&["focused", kind.title()]),
    )
    .await?;
    let Answer::Path(path) = a else {
        return key(x, id, "Escape");
    };
    if !matches!(kind, PathKind::SaveRepository | PathKind::SaveDiagnostics) {
        // The location field; what it holds on opening varies (the folder,
        // or nothing), so it is selected and typed over.
        key(x, id, "ctrl+l")?;
        field_text(x, kind).await?;
    }
    key(x, id, "ctrl+a")?;
    type_text(x, id, path)?;
    // GTK completes inline right after each typed character, when the
    // folder is loaded: a folder's only subfolder is appended, selected.
    // Once the field shows every typed character, Delete drops any such
    // completion (and changes nothing otherwise).
    let shown = field_until(x, kind, |t| t.starts_with(path)).await?;
    if shown != path {
        key(x, id, "Delete")?;
        field_until(x, kind, |t| t == path).await?;
    }
    // Return activates the dialog's default button ("Open"), and does
    // nothing while that is insensitive: an Open dialog enables it only
    // when its location field has been still for 300 ms (issue 11: Return
    // right after the last key left the dialog open every time on a quiet
    // machine; a bare GTK dialog on its own Xvfb did the same 3 times in 3,
    // and closed 5 times in 5 once the test waited for the button).
    until(
        || format!("the default button of {:?} to be enabled", kind.title()),
        || x.a11y(&["accept", kind.title()]),
    )
    .await?;
    key(x, id, "Return")
}

/// The current value of the input with this test id.
async fn value(s: &Session, id: &str) -> Result<String, Error> {
    Ok(s.testid(id).await?.prop("value").await?.unwrap_or_default())
}

/// Clicks `<field>-browse`, answers its dialog and waits until the button
/// reports `outcome` (`picked` or `cancelled`).
async fn browse(
    s: &Session,
    x: &Screen,
    field: &str,
    kind: PathKind,
    a: Answer<'_>,
    outcome: &str,
) -> TestResult {
    dialog_button(s, x, &format!("{field}-browse"), kind, a, outcome).await
}

/// Clicks `button`, which opens the dialog of `kind`, answers the dialog
/// and waits until the button reports `outcome` in `data-dialog`.
async fn dialog_button(
    s: &Session,
    x: &Screen,
    button: &str,
    kind: PathKind,
    a: Answer<'_>,
    outcome: &str,
) -> TestResult {
    s.click(button).await?;
    let id = dialog_of(x, kind).await?;
    s.wait_attr(button, "data-dialog", "open", 5).await?;
    // The dialog is modal, and the window is also inert under a veil that
    // says where to look (no window manager keeps the dialog on top here),
    // until the dialog closes.
    assert!(s.testid("dialog-open").await?.is_displayed().await?);
    assert_eq!(shell_inert(s).await?, Some(true));
    if let Err(e) = answer(x, kind, &id, a).await {
        let tree = x
            .a11y(&["tree", kind.title()])
            .ok()
            .flatten()
            .unwrap_or_default();
        return Err(format!("{e}\n  the dialog's widgets:\n{tree}").into());
    }
    closed(x, kind, &id).await?;
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
    let screen = Screen::start().unwrap();
    let x = &screen;
    let display = screen.display.clone();
    run_with_env(name, NO_KEYRING, &[("DISPLAY", &display)], |s| async move {
        let r = async {
            s.testid("onboarding-screen").await?;
            s.click("onboard-mode-key").await?;
            let field = "onboard-repo-path";
            let typed = value(&s, field).await?;
            assert!(typed.ends_with("/coffer.db"), "{typed}");

            // Cancelled: the field keeps what it held.
            let save = PathKind::SaveRepository;
            browse(&s, x, field, save, Answer::Cancel, "cancelled").await?;
            assert_eq!(value(&s, field).await?, typed);
            assert!(!s.exists("error-panel").await?);

            // A new file: its full path typed into GTK's name field.
            let new = Answer::Path(repo.to_str().unwrap());
            browse(&s, x, field, save, new, "picked").await?;
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
                x,
                "set-sources",
                PathKind::Folder,
                Answer::Path(&first),
                "picked",
            )
            .await?;
            assert_eq!(value(&s, "set-sources").await?, first);
            browse(
                &s,
                x,
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
            browse(&s, x, "recovery-repo-path", open, existing, "picked").await?;
            assert_eq!(
                value(&s, "recovery-repo-path").await?,
                repo.to_str().unwrap()
            );

            // A backup set's SFTP destination: the private key file picked
            // in the open dialog (the picker only fills in the path; the
            // key is read when the connection is tested).
            s.go("backups").await?;
            s.click("set-edit-set-1").await?;
            s.testid("set-remote-type")
                .await?
                .select_by_value("sftp")
                .await?;
            let key_file = chosen.join("id_ed25519");
            std::fs::write(&key_file, "a private key")?;
            let pick = Answer::Path(key_file.to_str().unwrap());
            let kind = PathKind::OpenKeyFile;
            browse(&s, x, "set-remote-key-file", kind, pick, "picked").await?;
            assert_eq!(
                value(&s, "set-remote-key-file").await?,
                key_file.to_str().unwrap()
            );
            s.click("set-cancel").await?;

            // Support: the diagnostics report saved where the dialog says;
            // cancelled, nothing is written.
            s.go("support").await?;
            s.wait_text("support-diagnostics", "Coffer").await?;
            let kind = PathKind::SaveDiagnostics;
            dialog_button(&s, x, "support-save-as", kind, Answer::Cancel, "cancelled").await?;
            assert!(!s.exists("support-saved-path").await?);
            let report = chosen.join("for-support.txt");
            let saved_at = Answer::Path(report.to_str().unwrap());
            dialog_button(&s, x, "support-save-as", kind, saved_at, "picked").await?;
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
                x,
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
            return Err(format!("{e}\n  whole screen: {}", x.shot(name)).into());
        }
        Ok(())
    })
    .await;
}
