//! Moving the data folder through the App on a real file system: a set
//! and the run history survive the move, the old folder stays as it was,
//! settings are not written to it afterwards, and a start without
//! `--data-dir` follows the pointer to the new folder.

use std::ffi::OsString;
use std::sync::Arc;

use coffer_app::jobs::NoEvents;
use coffer_app::keyring::OsKeyring;
use coffer_app::schedule::Schedule;
use coffer_app::settings::{BackupSetInput, Retention};
use coffer_app::App;

fn open(dir: &std::path::Path) -> App {
    App::with_parts(
        dir.to_path_buf(),
        Arc::new(OsKeyring::with_backends(vec![])),
        Arc::new(NoEvents),
    )
    .unwrap()
}

#[test]
fn the_data_folder_moves_and_the_next_start_uses_it() {
    let t = tempfile::tempdir().unwrap();
    let old = t.path().join("old-data");
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"hello").unwrap();
    let repo = t.path().join("backups/coffer.db");
    let a = open(&old);
    let new = a
        .create_key_repository(repo.to_str().unwrap(), true)
        .unwrap();
    let g = new.confirm_group as usize;
    a.confirm_recovery_key(new.confirm_group, &new.groups[g - 1])
        .unwrap();
    let input = |name: &str| BackupSetInput {
        name: name.into(),
        sources: vec![src.clone()],
        excludes: vec![],
        repository: repo.clone(),
        schedule: Schedule::Manual.into(),
        retention: Retention::default(),
        remote: None,
        upload_limit: None,
    };
    a.complete_onboarding(input("Documents")).unwrap();
    let before = std::fs::read(old.join("settings.json")).unwrap();

    // Without a configuration folder a move is refused, nothing copied.
    let target = t.path().join("moved/data");
    let e = a.move_data_dir(target.to_str().unwrap()).unwrap_err();
    assert_eq!(e.code, "CF-A084");
    assert!(!target.exists());

    let cfg = t.path().join("config");
    let pointer = cfg.join("coffer/data-dir");
    a.set_data_dir_origin(Some(pointer.clone()), false);
    assert_eq!(
        a.move_data_dir("moved/data").unwrap_err().code,
        "CF-A080",
        "relative"
    );
    let moved = a.move_data_dir(target.to_str().unwrap()).unwrap();
    assert_eq!(moved.new_dir, target.display().to_string());
    assert!(moved.files_copied >= 1 && !moved.overridden_at_start);
    assert_eq!(
        std::fs::read(target.join("settings.json")).unwrap(),
        before,
        "settings copied byte for byte"
    );
    assert_eq!(std::fs::read(old.join("settings.json")).unwrap(), before);

    // Until the restart nothing is written to the old folder.
    let e = a.save_set(None, input("Photos")).unwrap_err();
    assert_eq!(e.code, "CF-A085");
    assert_eq!(a.move_data_dir("/elsewhere").unwrap_err().code, "CF-A085");
    assert_eq!(std::fs::read(old.join("settings.json")).unwrap(), before);
    assert!(a.run_due_sets().is_empty());
    drop(a);

    // The next start without --data-dir follows the pointer.
    let c = cfg.clone().into_os_string();
    let env = move |k: &str| -> Option<OsString> { (k == "XDG_CONFIG_HOME").then(|| c.clone()) };
    let dir = coffer_app::paths::resolve_data_dir(Vec::<OsString>::new(), env);
    assert_eq!(dir, target);
    let b = open(&dir);
    let sets = b.list_sets();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0].set.name, "Documents");
    assert!(b.overview().onboarded);
}
