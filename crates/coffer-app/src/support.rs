//! Support: the error catalog (docs/errors.md, built into the app), the
//! step-by-step recovery guide, and opening audit links in the browser.

use coffer_error::ErrorReport;

use crate::error::AppError;
use crate::ipc::{ErrorCatalogEntry, GuideStep};
use crate::settings::KeyMode;

/// docs/errors.md as shipped with this build.
pub const ERRORS_MD: &str = include_str!("../../../docs/errors.md");

/// Every documented error code with its kind, meaning and next step.
pub fn error_catalog() -> Vec<ErrorCatalogEntry> {
    parse_catalog(ERRORS_MD)
}

/// Parses the table rows `| \`CF-X000\` | kind | meaning | what to do |`.
pub fn parse_catalog(md: &str) -> Vec<ErrorCatalogEntry> {
    let mut out = Vec::new();
    for line in md.lines() {
        let Some(rest) = line.trim().strip_prefix("| `CF-") else {
            continue;
        };
        let cells: Vec<&str> = rest
            .trim_end_matches('|')
            .split(" | ")
            .map(str::trim)
            .collect();
        if cells.len() < 4 {
            continue;
        }
        let Some(code) = cells[0].strip_suffix('`') else {
            continue;
        };
        out.push(ErrorCatalogEntry {
            code: format!("CF-{code}"),
            kind: cells[1].to_string(),
            meaning: cells[2].to_string(),
            what_to_do: cells[3..].join(" | "),
        });
    }
    out
}

/// One code from the catalog (case and spaces forgiven).
pub fn lookup_error(code: &str) -> Result<ErrorCatalogEntry, ErrorReport> {
    let want = code.trim().to_ascii_uppercase();
    error_catalog()
        .into_iter()
        .find(|e| e.code == want)
        .ok_or_else(|| AppError::UnknownCode(code.trim().chars().take(16).collect()).report_now())
}

/// What the app knows of a recovery in progress (each field marks steps
/// of the guide done).
#[derive(Debug, Clone, Copy, Default)]
pub struct GuideProgress {
    /// How this installation recovers (names "recovery key" or "code").
    pub mode: Option<KeyMode>,
    /// The backup file is known and exists.
    pub repo_ok: bool,
    /// K for it is in memory (the key or code was entered).
    pub unlocked: bool,
    /// The snapshots were looked at in this session.
    pub browsed: bool,
    /// A restore finished in this session.
    pub restored: bool,
    /// K is kept in the OS keyring.
    pub in_keyring: bool,
}

/// The recovery guide support staff walk a user through.
pub fn guide(p: GuideProgress) -> Vec<GuideStep> {
    let GuideProgress {
        mode,
        repo_ok,
        unlocked,
        browsed,
        restored,
        in_keyring,
    } = p;
    let step = |id: &str, title: &str, detail: &str, done: bool| GuideStep {
        id: id.into(),
        title: title.into(),
        detail: detail.into(),
        done,
    };
    let secret = match mode {
        Some(KeyMode::RecoveryCode) => "recovery code",
        _ => "recovery key",
    };
    vec![
        step(
            "kit",
            "Find the recovery kit",
            "The printed or saved kit holds the 64-digit recovery key (17 groups of 4 characters) or reminds you of your recovery code. Support staff never ask for it.",
            unlocked,
        ),
        step(
            "repository",
            "Pick the repository file",
            "Open the Recovery wizard and type the full path of the backup file (for example /media/usb/coffer.db). Copy it from the old disk or sync folder first if needed.",
            repo_ok,
        ),
        step(
            "key",
            &format!("Enter the {secret}"),
            "Type it exactly as in the kit. A typo in the recovery key is caught by its checksum before anything is tried; the message names the group to re-check.",
            unlocked,
        ),
        step(
            "browse",
            "Look at the snapshots",
            "Open Snapshots: each backup is listed with its time and size. Browse or search for the files you need.",
            browsed,
        ),
        step(
            "restore",
            "Restore the files",
            "Choose the files, type a folder to restore into, check the preview, then restore. Existing files are never overwritten.",
            restored,
        ),
        step(
            "device",
            "Keep the key on this device",
            "Coffer keeps a copy of the backup key in the OS keyring so scheduled backups run. If the keyring is unavailable (error CF-A010), unlock or start it; Coffer asks for the key until then.",
            in_keyring,
        ),
    ]
}

/// Opens an `http(s)` link in the system browser (`xdg-open`).
pub fn open_link(url: &str) -> Result<(), ErrorReport> {
    let u = url.trim();
    let ok = (u.starts_with("https://") || u.starts_with("http://"))
        && u.len() < 2048
        && !u.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(AppError::NotAWebLink(u.chars().take(64).collect()).report_now());
    }
    std::process::Command::new("xdg-open")
        .arg(u)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
        .map_err(|e| AppError::OpenFailed(e.to_string()).report_now())
}

/// Sends a desktop notification with `notify-send`, best effort.
pub fn desktop_notification(title: &str, body: &str) {
    let r = std::process::Command::new("notify-send")
        .args(["--app-name=Coffer", "--", title, body])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Ok(mut child) = r {
        // Reap it without blocking the caller.
        std::thread::spawn(move || child.wait());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_holds_every_code_of_this_crate_and_the_repository() {
        let cat = error_catalog();
        for code in crate::ERROR_CODES.iter().chain(coffer_repo::ERROR_CODES) {
            assert!(
                cat.iter().any(|e| e.code == *code),
                "{code} missing from the catalog"
            );
        }
        let e = lookup_error(" cf-r002 ").unwrap();
        assert_eq!(e.kind, "invalid_input");
        assert!(e.what_to_do.contains("group"), "{e:?}");
        let k = lookup_error("CF-A010").unwrap();
        assert_eq!(k.kind, "keyring_unavailable");
        assert_eq!(lookup_error("CF-Z999").unwrap_err().code, "CF-A057");
    }

    #[test]
    fn rows_with_pipes_in_the_last_cell_are_kept_whole() {
        let md = "| `CF-X001` | io | it broke | do a | or b |\n| not a row |\n";
        let cat = parse_catalog(md);
        assert_eq!(cat.len(), 1);
        assert_eq!(cat[0].what_to_do, "do a | or b");
    }

    #[test]
    fn the_guide_marks_what_is_done() {
        let g = guide(GuideProgress {
            mode: Some(KeyMode::RecoveryKey),
            repo_ok: true,
            unlocked: true,
            ..Default::default()
        });
        let done: Vec<&str> = g.iter().filter(|s| s.done).map(|s| s.id.as_str()).collect();
        assert_eq!(done, ["kit", "repository", "key"]);
        assert!(g.iter().any(|s| s.title == "Enter the recovery key"));
        let g = guide(GuideProgress {
            mode: Some(KeyMode::RecoveryCode),
            ..Default::default()
        });
        assert!(g.iter().all(|s| !s.done));
        assert!(g.iter().any(|s| s.title == "Enter the recovery code"));
    }

    #[test]
    fn only_web_links_are_opened() {
        for bad in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://a b",
            "/usr/bin/x",
            "",
        ] {
            assert_eq!(open_link(bad).unwrap_err().code, "CF-A060", "{bad}");
        }
    }
}
