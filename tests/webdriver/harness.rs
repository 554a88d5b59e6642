//! The WebDriver harness: one tauri-driver (and its WebKitWebDriver) per test,
//! on free ports, with the app given its own temporary data directory.
//!
//! * The app binary is the one cargo built for this test run
//!   (`CARGO_BIN_EXE_coffer-desktop`), or `$COFFER_TEST_APP` when set (a
//!   copy of the binary, when several work trees share one target directory).
//! * `tauri-driver` is found on PATH, in `~/.cargo/bin`, or at `$TAURI_DRIVER`.
//! * The tests need a display: the README's test command runs them under
//!   `xvfb-run`.
//! * When a test fails, a screenshot is saved to
//!   `<target>/tmp/webdriver-screenshots/<test>.png` before the app is closed.
//! * Drivers are stopped with SIGTERM (never SIGKILL, which would orphan
//!   WebKitWebDriver).

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// A WebDriver screenshot never answers while WebKit's compositing is off
/// (the app turns it off unless WEBKIT_DISABLE_COMPOSITING_MODE is set), so
/// a docs screenshot is bounded: the run fails with this hint, not hangs.
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(10);
const SCREENSHOT_HANG: &str = "WebKitWebDriver screenshots hang with compositing off: run with WEBKIT_DISABLE_COMPOSITING_MODE=0";

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// One running app under WebDriver.
pub struct Session {
    pub client: Client,
    pub data_dir: PathBuf,
    /// The app's `XDG_CONFIG_HOME` (a temporary folder of its own, so a test
    /// never writes the user's ~/.config).
    pub config_dir: PathBuf,
    /// The driver's log, where the app's own log (stderr) goes too.
    pub log: PathBuf,
}

impl Session {
    /// Waits (up to 15 s) for the element with this `data-testid`.
    pub async fn testid(&self, id: &str) -> Result<Element, fantoccini::error::CmdError> {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(&format!("[data-testid=\"{id}\"]")))
            .await
    }

    /// The text of the element with this `data-testid`, once it is
    /// non-empty (an element replaced while being read is looked up again).
    pub async fn text(&self, id: &str) -> Result<String, fantoccini::error::CmdError> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let t = match self.testid(id).await?.text().await {
                Ok(t) => t,
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => String::new(),
            };
            if !t.trim().is_empty() || Instant::now() > deadline {
                return Ok(t);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element with this `data-testid`.
    pub async fn click(&self, id: &str) -> Result<(), fantoccini::error::CmdError> {
        self.testid(id).await?.click().await
    }

    /// Replaces the value of the input with this `data-testid`.
    pub async fn type_in(&self, id: &str, text: &str) -> Result<(), fantoccini::error::CmdError> {
        let e = self.testid(id).await?;
        e.clear().await?;
        e.send_keys(text).await
    }

    /// Shows a screen through the sidebar.
    pub async fn go(&self, screen: &str) -> Result<(), fantoccini::error::CmdError> {
        self.click(&format!("nav-{screen}")).await?;
        self.testid(&format!("{screen}-screen")).await.map(|_| ())
    }

    /// Every element with this `data-testid`.
    pub async fn all(&self, id: &str) -> Result<Vec<Element>, fantoccini::error::CmdError> {
        self.client
            .find_all(Locator::Css(&format!("[data-testid=\"{id}\"]")))
            .await
    }

    /// Waits (up to `secs`) until attribute `attr` of the element is `want`.
    pub async fn wait_attr(&self, id: &str, attr: &str, want: &str, secs: u64) -> TestResult {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = None;
        while Instant::now() < deadline {
            if let Ok(Some(e)) = self
                .client
                .find_all(Locator::Css(&format!("[data-testid=\"{id}\"]")))
                .await
                .map(|v| v.into_iter().next())
            {
                // A replaced (stale) element is looked up again.
                last = e.attr(attr).await.unwrap_or(None);
                if last.as_deref() == Some(want) {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{id}[{attr}] is {last:?}, not {want:?}").into())
    }

    /// Waits (up to 20 s) until the element's text contains `needle`.
    pub async fn wait_text(
        &self,
        id: &str,
        needle: &str,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(e) = self.all(id).await?.into_iter().next() {
                last = e.text().await.unwrap_or_default();
                if last.contains(needle) {
                    return Ok(last);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{id} never contained {needle:?}; last text: {last:?}").into())
    }

    /// Saves a screenshot for the docs when `COFFER_SCREENSHOT_DIR` is set.
    pub async fn shot(&self, name: &str) -> TestResult {
        if let Some(dir) = std::env::var_os("COFFER_SCREENSHOT_DIR") {
            // Let WebKit paint the screen that was just shown.
            tokio::time::sleep(Duration::from_millis(400)).await;
            // WebKitWebDriver's screenshot never answers for a page that
            // does not scroll (found by elimination: the same screen shot
            // fine once it was taller than the window). One pixel more than
            // the window makes it scroll; it is taken away afterwards.
            self.client
                .execute(
                    "document.documentElement.style.minHeight = 'calc(100vh + 1px)';",
                    vec![],
                )
                .await?;
            let png = tokio::time::timeout(SCREENSHOT_TIMEOUT, self.client.screenshot())
                .await
                .map_err(|_| {
                    format!("the screenshot {name} took over 10 s: {SCREENSHOT_HANG}")
                })??;
            self.client
                .execute("document.documentElement.style.minHeight = '';", vec![])
                .await?;
            std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png)?;
        }
        Ok(())
    }

    /// First run's last step with the set form filled: a manual schedule,
    /// then "Finish" leads to Home. `shot` names a docs screenshot of the
    /// filled form, taken before finishing.
    pub async fn finish_first_set(&self, shot: Option<&str>) -> TestResult {
        self.testid("set-schedule-kind")
            .await?
            .select_by_value("manual")
            .await?;
        if let Some(name) = shot {
            self.shot(name).await?;
        }
        self.click("onboard-finish").await?;
        self.testid("home-screen").await?;
        Ok(())
    }

    /// Whether an element with this `data-testid` is in the page right now.
    pub async fn exists(&self, id: &str) -> Result<bool, fantoccini::error::CmdError> {
        Ok(!self
            .client
            .find_all(Locator::Css(&format!("[data-testid=\"{id}\"]")))
            .await?
            .is_empty())
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tauri_driver() -> PathBuf {
    if let Some(p) = std::env::var_os("TAURI_DRIVER") {
        return p.into();
    }
    if let Ok(out) = Command::new("sh")
        .args(["-c", "command -v tauri-driver"])
        .output()
    {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !p.is_empty() {
            return p.into();
        }
    }
    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo/bin/tauri-driver")
}

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        // SIGTERM lets tauri-driver stop WebKitWebDriver too.
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("webdriver-screenshots")
}

/// Runs one WebDriver test: starts the app with a fresh data directory, runs
/// `body`, saves a screenshot if it failed, and stops everything.
pub async fn run<F, Fut>(name: &str, body: F)
where
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = TestResult>,
{
    run_with(name, &[], body).await
}

/// Like [`run`], with extra arguments for the app (e.g. `--no-keyring`) and
/// an optional data directory to reuse (a second app on the same data).
pub async fn run_with<F, Fut>(name: &str, extra_args: &[&str], body: F)
where
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = TestResult>,
{
    run_prepared(name, extra_args, |_| {}, body).await
}

/// Like [`run_with`], calling `prepare` on the fresh data directory before
/// the app starts (to give it settings, for example).
pub async fn run_prepared<P, F, Fut>(name: &str, extra_args: &[&str], prepare: P, body: F)
where
    P: FnOnce(&Path),
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = TestResult>,
{
    run_full(name, extra_args, &[], prepare, body).await
}

/// Like [`run_with`], with environment variables for the app (through the
/// driver that starts it), e.g. the session bus of a private keyring.
pub async fn run_with_env<F, Fut>(name: &str, extra_args: &[&str], env: &[(&str, &str)], body: F)
where
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = TestResult>,
{
    run_full(name, extra_args, env, |_| {}, body).await
}

async fn run_full<P, F, Fut>(
    name: &str,
    extra_args: &[&str],
    env: &[(&str, &str)],
    prepare: P,
    body: F,
) where
    P: FnOnce(&Path),
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = TestResult>,
{
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "WebDriver tests need a display: run them under xvfb-run (the README's test command does)"
    );
    let data = tempfile::Builder::new()
        .prefix("coffer-wd-")
        .tempdir()
        .unwrap();
    prepare(data.path());
    let config = tempfile::Builder::new()
        .prefix("coffer-wd-config-")
        .tempdir()
        .unwrap();
    let app = std::env::var_os("COFFER_TEST_APP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_coffer-desktop")));
    let mut args = vec![json!("--data-dir"), json!(data.path())];
    args.extend(extra_args.iter().map(|a| json!(a)));
    let caps = json!({
        "browserName": "wry",
        "tauri:options": {
            "application": app,
            "args": args,
        }
    });
    // A free port can be taken by a parallel test between our check and the
    // driver's bind: then start again on other ports (at most 3 times).
    let mut attempt = 0;
    let (_driver, client, log_path) = loop {
        attempt += 1;
        let port = free_port();
        let native_port = free_port();
        let log_path = std::env::temp_dir().join(format!("coffer-wd-{name}-{port}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(tauri_driver())
            .args(["--port", &port.to_string(), "--native-port", &native_port.to_string()])
            .env("COFFER_DATA_DIR", data.path())
            .env("XDG_CONFIG_HOME", config.path())
            .env("COFFER_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("tauri-driver not found: the README's test command installs it (cargo install tauri-driver --locked)");
        let driver = Driver(child);
        wait_for_port(port, &log_path);
        match ClientBuilder::rustls()
            .expect("rustls connector")
            .capabilities(caps.as_object().unwrap().clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => break (driver, client, log_path),
            Err(e) if attempt < 3 => {
                eprintln!("{name}: WebDriver session did not start ({e}); retrying on other ports");
                drop(driver);
            }
            Err(e) => panic!(
                "could not start a WebDriver session: {e}; driver log: {}",
                read(&log_path)
            ),
        }
    };

    let session = Session {
        client: client.clone(),
        data_dir: data.path().to_path_buf(),
        config_dir: config.path().to_path_buf(),
        log: log_path.clone(),
    };
    // A stuck test fails (with its screenshot) instead of hanging the suite;
    // the screenshot and the session close get their own short limits, since
    // a wedged WebKitWebDriver may never answer them.
    let result = match tokio::time::timeout(TEST_LIMIT, body(session)).await {
        Ok(r) => r,
        Err(_) => Err(format!("the test did not finish within {} s", TEST_LIMIT.as_secs()).into()),
    };
    if let Err(e) = &result {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).ok();
        let shot = dir.join(format!("{name}.png"));
        if let Ok(Ok(png)) =
            tokio::time::timeout(Duration::from_secs(15), client.screenshot()).await
        {
            std::fs::write(&shot, png).ok();
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), client.clone().close()).await;
        panic!(
            "{name} failed: {e}\n  screenshot: {}\n  driver log: {}",
            shot.display(),
            log_path.display()
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(15), client.close()).await;
    std::fs::remove_file(&log_path).ok();
}

/// The longest a WebDriver test may run (the slowest takes ~30 s here).
const TEST_LIMIT: Duration = Duration::from_secs(300);

fn wait_for_port(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("tauri-driver did not listen on {port}: {}", read(log));
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
