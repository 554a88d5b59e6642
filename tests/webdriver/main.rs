//! WebDriver tests of the desktop app (tauri-driver + WebKitWebDriver, under
//! Xvfb). See docs/ui-testing.md for how to run and write them.

mod harness;

use harness::{run, TestResult};

/// The app starts, the home screen shows, and a round trip through the
/// `app_status` command replaces "Checking…" with this run's data directory.
#[tokio::test(flavor = "multi_thread")]
async fn smoke_home_screen_round_trip() {
    run("smoke_home_screen_round_trip", |s| async move {
        s.testid("home-screen").await?;
        let dir = s.text("home-data-dir").await?;
        assert_eq!(
            dir,
            s.data_dir.display().to_string(),
            "the app must use the per-test data directory"
        );
        assert!(
            !s.exists("home-status-loading").await?,
            "the loading text must be gone"
        );
        let vault = s.text("home-vault-label").await?;
        assert!(vault.contains("demo"), "{vault}");
        assert!(s.testid("demo-fleet-badge").await?.is_displayed().await?);
        TestResult::Ok(())
    })
    .await;
}
