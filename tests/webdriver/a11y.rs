//! Accessibility basics on every screen, checked in the running app: every
//! control has an accessible name (a `<label>`, `aria-label`,
//! `aria-labelledby` or its text), none is taken out of the keyboard order,
//! every screen has one `<h1>`, ids are unique, and the keyboard alone moves
//! through the sidebar into a screen.

use fantoccini::key::Key;
use serde_json::Value;

use crate::harness::{run_with, Session, TestResult};
use crate::NO_KEYRING;
use fantoccini::elements::Element;

/// Returns a list of problems in the current view (empty = fine).
const AUDIT: &str = r#"
const bad = [];
const sel = 'input, select, textarea, button, a[href], [role="button"], [role="radio"], [role="checkbox"], [tabindex]';
const seen = new Set();
for (const el of document.querySelectorAll('[id]')) {
  if (seen.has(el.id)) bad.push('duplicate id ' + el.id);
  seen.add(el.id);
}
function visible(el) {
  return !el.closest('[hidden]') && el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
}
function nameOf(el) {
  const aria = (el.getAttribute('aria-label') || '').trim();
  if (aria) return aria;
  const by = el.getAttribute('aria-labelledby');
  if (by) {
    const t = by.split(/\s+/).map((id) => document.getElementById(id)?.textContent || '').join(' ').trim();
    if (t) return t;
  }
  if (el.labels && el.labels.length) {
    const t = [...el.labels].map((l) => l.textContent || '').join(' ').trim();
    if (t) return t;
  }
  if (['BUTTON', 'A', 'SUMMARY'].includes(el.tagName) || el.getAttribute('role') === 'button') {
    const t = (el.textContent || '').trim();
    if (t) return t;
  }
  return (el.getAttribute('title') || '').trim();
}
for (const el of document.querySelectorAll(sel)) {
  if (el.type === 'hidden' || !visible(el)) continue;
  // Containers focused by script (the view after navigation) are not controls.
  if (el.getAttribute('tabindex') === '-1' && !el.matches('input, select, textarea, button, a[href]')) continue;
  const what = el.outerHTML.slice(0, 140);
  if (!nameOf(el)) bad.push('no accessible name: ' + what);
  if (el.tabIndex < 0 && !el.disabled) bad.push('not reachable by keyboard: ' + what);
}
const h1 = document.querySelectorAll('#view h1');
if (h1.length !== 1) bad.push(h1.length + ' h1 elements in the view');
return bad;
"#;

/// Presses Tab where the focus is; returns the newly focused element.
async fn tab(s: &Session) -> Result<Element, fantoccini::error::CmdError> {
    s.client
        .active_element()
        .await?
        .send_keys(&Key::Tab.to_string())
        .await?;
    s.client.active_element().await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_screen_has_named_keyboard_reachable_controls() {
    run_with(
        "every_screen_has_named_keyboard_reachable_controls",
        NO_KEYRING,
        |s| async move {
            let src = crate::make_source(&s.data_dir, 0);
            let repo = s.data_dir.join("coffer.db");
            // First run (before onboarding) is a screen of its own.
            s.testid("onboarding-screen").await?;
            let mut problems = Vec::new();
            let mut audit = |screen: &str, v: Value| {
                for p in v.as_array().cloned().unwrap_or_default() {
                    problems.push(format!("{screen}: {}", p.as_str().unwrap_or("?")));
                }
            };
            audit("onboarding", s.client.execute(AUDIT, vec![]).await?);
            crate::onboard(&s, &repo, &src).await?;
            for screen in [
                "home",
                "backups",
                "snapshots",
                "recovery",
                "verification",
                "support",
                "settings",
            ] {
                s.go(screen).await?;
                s.testid(&format!("{screen}-screen")).await?;
                // Let the screen's first answers arrive (lists, reports).
                tokio::time::sleep(std::time::Duration::from_millis(400)).await;
                audit(screen, s.client.execute(AUDIT, vec![]).await?);
            }
            assert!(problems.is_empty(), "{}", problems.join("\n"));

            // The keyboard alone: Tab reaches the sidebar, Enter opens a
            // screen, and Tab then moves into it.
            s.go("home").await?;
            let mut reached = None;
            for _ in 0..40 {
                let a = tab(&s).await?;
                if a.attr("data-testid").await?.as_deref() == Some("nav-settings") {
                    reached = Some(a);
                    break;
                }
            }
            let nav = reached.ok_or("Tab never reached the Settings link")?;
            nav.send_keys(&Key::Enter.to_string()).await?;
            s.testid("settings-screen").await?;
            for _ in 0..60 {
                let a = tab(&s).await?;
                let inside: bool = s
                    .client
                    .execute(
                        "return !!document.activeElement && !!document.activeElement.closest('[data-testid=\"settings-screen\"]') && document.activeElement.tagName !== 'SECTION';",
                        vec![],
                    )
                    .await?
                    .as_bool()
                    .unwrap_or(false);
                if inside {
                    let id = a.attr("data-testid").await?.unwrap_or_default();
                    eprintln!("keyboard reached {id:?} in Settings");
                    return TestResult::Ok(());
                }
            }
            Err("Tab never moved into the Settings screen".into())
        },
    )
    .await;
}
