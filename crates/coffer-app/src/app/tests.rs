//! Flow tests of [`App`] against real repositories in temporary folders and
//! the real OS keyring code (with no backend, so "keyring unavailable" is
//! exercised, or kernel keyutils where it works).

use super::*;
use crate::jobs::EventSink;
use crate::keyring::KeyringBackend;
use crate::schedule::Schedule;
use std::time::Instant;

#[derive(Default)]
struct Collect {
    events: Mutex<Vec<JobEvent>>,
    notes: Mutex<Vec<String>>,
}
impl EventSink for Collect {
    fn job_event(&self, event: &JobEvent) {
        self.events.lock().unwrap().push(event.clone());
    }
    fn notify(&self, title: &str, _body: &str) {
        self.notes.lock().unwrap().push(title.to_string());
    }
}

fn no_keyring() -> Arc<dyn DeviceKeyStore> {
    Arc::new(OsKeyring::with_backends(vec![]))
}

fn app(dir: &Path, sink: Arc<Collect>) -> App {
    App::with_parts(dir.to_path_buf(), no_keyring(), sink).unwrap()
}

fn wait(app: &App, job: u64) -> JobEvent {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ev = app.job_status(job).unwrap();
        // The done callback (run records) runs right after the final event.
        if ev.state != JobState::Running && !app.state().running.values().any(|j| *j == job) {
            return ev;
        }
        assert!(Instant::now() < deadline, "job {job} did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn set_input(name: &str, src: &Path, repo: &Path) -> BackupSetInput {
    BackupSetInput {
        name: name.into(),
        sources: vec![src.to_path_buf()],
        excludes: vec!["*.tmp".into()],
        repository: repo.to_path_buf(),
        schedule: Schedule::Manual.into(),
        retention: Retention::default(),
        remote: None,
        upload_limit: None,
    }
}

/// First run in key mode: returns (app, recovery key as typed, repo path).
fn onboard(tmp: &Path, sink: Arc<Collect>) -> (App, String, PathBuf, PathBuf) {
    let data = tmp.join("data");
    let src = tmp.join("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    std::fs::write(src.join("docs/letter.txt"), b"dear reader").unwrap();
    std::fs::write(src.join("notes.md"), b"# notes").unwrap();
    std::fs::write(src.join("skip.tmp"), b"junk").unwrap();
    let repo = tmp.join("dest/coffer.db");
    let a = app(&data, sink);
    let o = a.overview();
    assert!(!o.onboarded);
    assert!(!o.keyring.available);
    assert!(o.keyring.error.is_none(), "not probed yet");
    assert_eq!(a.keyring_status().error.unwrap().code, "CF-A010");
    assert_eq!(a.overview().keyring.error.unwrap().code, "CF-A010");
    let new = a
        .create_key_repository(repo.to_str().unwrap(), true)
        .unwrap();
    assert_eq!(new.groups.len(), 17);
    assert!((1..=16).contains(&new.confirm_group));
    let g = new.confirm_group as usize;
    let wrong = if new.groups[g - 1] == "0000" {
        "1111"
    } else {
        "0000"
    };
    let e = a
        .confirm_recovery_key(new.confirm_group, wrong)
        .unwrap_err();
    assert_eq!(e.code, "CF-A052");
    let installed = a
        .confirm_recovery_key(new.confirm_group, &new.groups[g - 1].to_uppercase())
        .unwrap();
    // No keyring backend: the distinct error, and the app still works.
    assert!(!installed.keyring_saved);
    assert_eq!(
        installed.keyring_error.unwrap().kind,
        ErrorKind::KeyringUnavailable
    );
    assert_eq!(
        a.confirm_recovery_key(1, "abcd").unwrap_err().code,
        "CF-A053"
    );
    let v = a
        .complete_onboarding(set_input("Documents", &src, &repo))
        .unwrap();
    assert_eq!(v.set.id, "set-1");
    let o = a.overview();
    assert!(o.onboarded && o.unlocked);
    assert_eq!(o.key_mode, Some(KeyMode::RecoveryKey));
    (a, new.groups.join("-"), repo, src)
}

#[test]
fn key_mode_first_run_backup_browse_restore_and_recover_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Arc::new(Collect::default());
    let (a, key, repo, src) = onboard(tmp.path(), sink.clone());

    let job = a.run_backup("set-1").unwrap();
    let ev = wait(&a, job);
    assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    let Some(JobOutcome::Backup { summary, .. }) = &ev.outcome else {
        panic!("no summary")
    };
    assert_eq!(summary.files, 2, "skip.tmp is excluded");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sink.notes.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(sink.notes.lock().unwrap().as_slice(), ["Backup finished"]);
    let sets = a.list_sets();
    assert_eq!(sets[0].last.as_ref().unwrap().outcome, RunOutcome::Ok);
    assert!(sets[0].running_job.is_none());
    assert!(sink
        .events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.state == JobState::Done && e.job_id == job));

    let snaps = a.list_snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    let top = a.list_tree(&snaps[0].id, None).unwrap();
    assert!(!top.is_empty());
    let found = a.find_files("letter.txt").unwrap();
    assert_eq!((found.hits.len(), found.total), (1, 1));
    assert_eq!(found.hits[0].snapshots, 1);
    let letter = found.hits[0].entry.path.clone();
    let versions = a.file_versions(&letter).unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].snapshot, snaps[0].id);

    let out = tmp.path().join("restored");
    let plan = a
        .plan_restore(
            &snaps[0].id,
            vec![letter.clone()],
            out.to_str().unwrap(),
            OnExisting::Refuse,
        )
        .unwrap();
    assert_eq!(plan.files, 1);
    assert!(
        !out.join(letter.trim_start_matches('/')).exists(),
        "a preview writes nothing"
    );
    let ev = wait(
        &a,
        a.run_restore(
            &snaps[0].id,
            vec![letter.clone()],
            out.to_str().unwrap(),
            OnExisting::Refuse,
        )
        .unwrap(),
    );
    assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    assert_eq!(
        std::fs::read(out.join(letter.trim_start_matches('/'))).unwrap(),
        b"dear reader"
    );
    // To the original location ("/"), where the user changed the letter
    // since: refused unless told; Skip keeps theirs; KeepBoth puts the
    // snapshot's beside it.
    std::fs::write(&letter, b"edited since").unwrap();
    let to_original = |on: OnExisting| {
        let ev = wait(
            &a,
            a.run_restore(&snaps[0].id, vec![letter.clone()], "/", on)
                .unwrap(),
        );
        (ev.state, ev.error.map(|e| e.code))
    };
    assert_eq!(
        to_original(OnExisting::Refuse),
        (JobState::Failed, Some("CF-R011".into()))
    );
    let plan = a
        .plan_restore(
            &snaps[0].id,
            vec![letter.clone()],
            "/",
            OnExisting::KeepBoth,
        )
        .unwrap();
    let beside = letter.replace("letter.txt", "letter (restored).txt");
    assert_eq!(plan.items.last().unwrap().target, beside);
    assert_eq!(to_original(OnExisting::Skip), (JobState::Done, None));
    assert_eq!(std::fs::read(&letter).unwrap(), b"edited since");
    assert_eq!(to_original(OnExisting::KeepBoth), (JobState::Done, None));
    assert_eq!(std::fs::read(&letter).unwrap(), b"edited since");
    assert_eq!(std::fs::read(&beside).unwrap(), b"dear reader");
    std::fs::remove_file(&beside).unwrap();
    assert_eq!(to_original(OnExisting::Replace), (JobState::Done, None));
    assert_eq!(std::fs::read(&letter).unwrap(), b"dear reader");
    // The computer that made the backups entered no key: the guide's
    // recovery steps stay open though it browsed and restored.
    let done: Vec<String> = a
        .recovery_guide()
        .into_iter()
        .filter(|s| s.done)
        .map(|s| s.id)
        .collect();
    assert_eq!(done, ["repository"]);

    let ev = wait(&a, a.run_check().unwrap());
    let Some(JobOutcome::Check { report }) = &ev.outcome else {
        panic!("{:?}", ev.error)
    };
    assert!(report.ok);

    // A fresh data directory on a "new device": nothing from the old one.
    let b = app(&tmp.path().join("data2"), Arc::new(Collect::default()));
    assert_eq!(b.list_snapshots().unwrap_err().code, "CF-A050");
    // A typo is caught by the checksum before the repository is touched.
    let mut typo = key.clone().into_bytes();
    typo[5] = if typo[5] == b'0' { b'1' } else { b'0' };
    let e = b
        .unlock_with_recovery_key("/nonexistent/repo.db", std::str::from_utf8(&typo).unwrap())
        .unwrap_err();
    assert_eq!(e.code, "CF-R002", "{e:?}");
    assert!(e.message.contains("group 2"), "{e:?}");
    // A valid key of another repository is a wrong key, not a typo.
    let other = MasterKey::generate()
        .unwrap()
        .recovery_key()
        .to_display_string();
    let e = b
        .unlock_with_recovery_key(repo.to_str().unwrap(), &other)
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::WrongRecoveryKey);
    let k = b
        .unlock_with_recovery_key(repo.to_str().unwrap(), &key.replace('-', " "))
        .unwrap();
    assert_eq!(k.snapshots, 1);
    // The set travelled in the file: the new computer can carry on.
    assert_eq!(k.sets_found.len(), 1, "{:?}", k.sets_found);
    assert_eq!(k.sets_found[0].name, "Documents");
    assert_eq!(k.sets_found[0].sources, [src.display().to_string()]);
    assert!(k.sets_found[0].missing.is_empty());
    assert!(!b.overview().onboarded);
    let carry = b.keep_backing_up().unwrap();
    assert_eq!(carry.adopted.len(), 1);
    let adopted = &carry.adopted[0].set;
    assert_eq!(
        (adopted.name.as_str(), &adopted.repository),
        ("Documents", &repo)
    );
    assert_eq!(adopted.excludes, ["*.tmp"], "the set came whole");
    assert!(b.overview().onboarded, "Set up no longer offers a new file");
    // Asked again: nothing twice.
    assert!(b.keep_backing_up().unwrap().adopted.is_empty());
    // A third computer without that folder: the set is named, not adopted
    // (a set whose folder is not there would only fail).
    let c = app(&tmp.path().join("data3"), Arc::new(Collect::default()));
    let moved = tmp.path().join("src-elsewhere");
    std::fs::rename(&src, &moved).unwrap();
    let k3 = c
        .unlock_with_recovery_key(repo.to_str().unwrap(), &key)
        .unwrap();
    assert_eq!(k3.sets_found[0].missing, [src.display().to_string()]);
    let carry = c.keep_backing_up().unwrap();
    assert!(carry.adopted.is_empty());
    assert_eq!(carry.not_adopted[0].name, "Documents");
    assert!(c.list_sets().is_empty());
    std::fs::rename(&moved, &src).unwrap();
    let out2 = tmp.path().join("restored2");
    let ev = wait(
        &b,
        b.run_restore("latest", vec![], out2.to_str().unwrap(), OnExisting::Refuse)
            .unwrap(),
    );
    assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    let restored = out2.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("notes.md")).unwrap(),
        b"# notes"
    );
    assert!(!restored.join("skip.tmp").exists());
    // The new computer recovered: kit, file, key and restore are done
    // (browsing too: the restore needed the snapshot list).
    let open: Vec<String> = b
        .recovery_guide()
        .into_iter()
        .filter(|s| !s.done)
        .map(|s| s.id)
        .collect();
    assert!(
        open.iter().all(|id| id == "device" || id == "browse"),
        "{open:?}"
    );
    assert!(!open.contains(&"restore".to_string()) && !open.contains(&"key".to_string()));
    assert_eq!(b.rehearse_recovery_key(&key).unwrap(), 1);

    // Nothing any app wrote holds the recovery key or K in any encoding.
    let rk = RecoveryKey::parse(&key).unwrap();
    let k_bytes = *rk.master_key().expose_bytes();
    let needles = secret_encodings(&key, &k_bytes);
    for root in [
        tmp.path().join("data"),
        tmp.path().join("data2"),
        repo.parent().unwrap().to_path_buf(),
    ] {
        scan_for_secrets(&root, &needles);
    }
    let diag = b.diagnostics(true).unwrap();
    for n in &needles {
        assert!(!contains(diag.text.as_bytes(), n));
    }
    // "Save as…": the chosen name, replaced whole, never half written.
    let chosen = tmp.path().join("desk/report.txt");
    std::fs::create_dir_all(chosen.parent().unwrap()).unwrap();
    std::fs::write(&chosen, b"an older report").unwrap();
    let saved = b.save_diagnostics_as(chosen.to_str().unwrap()).unwrap();
    assert_eq!(saved.saved_to.as_deref(), chosen.to_str());
    assert_eq!(std::fs::read_to_string(&chosen).unwrap(), saved.text);
    assert_eq!(
        std::fs::read_dir(chosen.parent().unwrap()).unwrap().count(),
        1
    );
    for n in &needles {
        assert!(!contains(&std::fs::read(&chosen).unwrap(), n));
    }
    assert_eq!(
        b.save_diagnostics_as("report.txt").unwrap_err().code,
        "CF-A056",
        "a relative path is refused"
    );
    let e = b
        .save_diagnostics_as(tmp.path().join("no/such/dir/r.txt").to_str().unwrap())
        .unwrap_err();
    assert_eq!(e.code, "CF-A040", "{e:?}");
}

fn secret_encodings(key: &str, k: &[u8; 32]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let b64 = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let mut v = vec![
        key.as_bytes().to_vec(),
        key.replace('-', "").into_bytes(),
        key.to_uppercase().into_bytes(),
        k.to_vec(),
        hex::encode(k).into_bytes(),
        hex::encode_upper(k).into_bytes(),
    ];
    v.extend(b64.iter().map(|e| e.encode(k).into_bytes()));
    v
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn scan_for_secrets(root: &Path, needles: &[Vec<u8>]) {
    let mut stack = vec![root.to_path_buf()];
    let mut files = 0;
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if p.is_file() {
            files += 1;
            let data = std::fs::read(&p).unwrap();
            for n in needles {
                assert!(!contains(&data, n), "{} holds a secret", p.display());
            }
        }
    }
    assert!(files > 0, "nothing was scanned under {}", root.display());
}

/// Errors in the app give the app's next step, never a command or flag of
/// the CLI, and a backup file that is not there is said as such (not as a
/// keyring problem).
#[test]
fn errors_in_the_app_say_what_to_do_in_the_app() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _key, repo, _src) = onboard(tmp.path(), Arc::new(Collect::default()));
    assert_eq!(
        wait(&a, a.run_backup("set-1").unwrap()).state,
        JobState::Done
    );
    let out = tmp.path().join("out");
    let target = out.to_str().unwrap();
    assert_eq!(
        wait(
            &a,
            a.run_restore("latest", vec![], target, OnExisting::Refuse)
                .unwrap()
        )
        .state,
        JobState::Done
    );
    // Restoring again onto the same files: refused, with advice for the app.
    let ev = wait(
        &a,
        a.run_restore("latest", vec![], target, OnExisting::Refuse)
            .unwrap(),
    );
    let e = ev
        .error
        .expect("a second restore onto the same files fails");
    assert_eq!(e.code, "CF-R011", "{e:?}");
    assert!(!e.next_step.contains("--"), "{}", e.next_step);
    assert!(e.next_step.contains("empty folder"), "{}", e.next_step);
    a.shutdown_vault();
    drop(a);

    // The backup file's disk is gone: a new start (the key was in memory
    // only) says the file is not there, and what to do, not CF-A010.
    std::fs::rename(repo.parent().unwrap(), tmp.path().join("unplugged")).unwrap();
    let b = app(&tmp.path().join("data"), Arc::new(Collect::default()));
    let e = b.run_backup("set-1").unwrap_err();
    assert_eq!(e.code, "CF-R004", "{e:?}");
    assert!(e.message.contains("no such file"), "{}", e.message);
    assert!(e.next_step.contains("connect the disk"), "{}", e.next_step);
    assert!(!e.next_step.contains("`coffer"), "{}", e.next_step);
}

/// A folder to back up that is not there is refused when the set is
/// saved (first run or later), and nothing is saved.
#[test]
fn a_missing_source_folder_is_refused_when_the_set_is_saved() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _key, repo, src) = onboard(tmp.path(), Arc::new(Collect::default()));
    let gone = tmp.path().join("usb-not-mounted/Photos");
    let mut input = set_input("Photos", &gone, &repo);
    let e = a.save_set(None, input.clone()).unwrap_err();
    assert_eq!(e.code, "CF-A096", "{e:?}");
    assert!(e.message.contains("usb-not-mounted/Photos"), "{e:?}");
    assert_eq!(a.list_sets().len(), 1, "nothing saved");
    // One missing among several is enough to refuse.
    input.sources.insert(0, src.clone());
    assert_eq!(
        a.save_set(Some("set-1"), input).unwrap_err().code,
        "CF-A096"
    );
    assert_eq!(a.list_sets()[0].set.sources, vec![src]);
}

#[test]
fn cancelling_a_backup_leaves_no_snapshot_and_records_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Arc::new(Collect::default());
    let (a, _key, _repo, src) = onboard(tmp.path(), sink.clone());
    // 48 MiB of incompressible-ish data so there is time to cancel.
    let mut big = vec![0u8; 48 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for c in big.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    std::fs::write(src.join("big.bin"), &big).unwrap();
    let job = a.run_backup("set-1").unwrap();
    assert_eq!(a.run_backup("set-1").unwrap_err().code, "CF-A055");
    a.cancel_job(job).unwrap();
    let ev = wait(&a, job);
    assert_eq!(ev.state, JobState::Cancelled, "{:?}", ev.error);
    assert!(a.list_snapshots().unwrap().is_empty());
    assert_eq!(
        a.list_sets()[0].last.as_ref().unwrap().outcome,
        RunOutcome::Cancelled
    );
    assert!(
        a.diagnostics(false).unwrap().text.contains("CF-R014")
            || ev.error.as_ref().unwrap().code == "CF-R014"
    );
}

#[test]
fn retention_keeps_the_newest_and_prunes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _key, _repo, src) = onboard(tmp.path(), Arc::new(Collect::default()));
    for i in 0..3 {
        std::fs::write(src.join("notes.md"), format!("version {i}")).unwrap();
        let ev = wait(&a, a.run_backup("set-1").unwrap());
        assert_eq!(ev.state, JobState::Done, "{:?}", ev.error);
    }
    let keep_one = Retention {
        keep_last: 1,
        keep_hourly: 0,
        keep_daily: 0,
        keep_weekly: 0,
        keep_monthly: 0,
        keep_yearly: 0,
    };
    let dry = a.apply_retention(keep_one, true).unwrap();
    assert_eq!((dry.plan.keep.len(), dry.plan.remove.len()), (1, 2));
    assert!(dry.prune.is_none());
    assert_eq!(a.list_snapshots().unwrap().len(), 3);
    let done = a.apply_retention(keep_one, false).unwrap();
    assert!(done.plan.applied && done.prune.is_some());
    assert_eq!(a.list_snapshots().unwrap().len(), 1);
}

#[test]
fn sets_are_saved_edited_deleted_and_due_ones_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _key, repo, src) = onboard(tmp.path(), Arc::new(Collect::default()));
    let mut input = set_input("Hourly", &src, &repo);
    input.schedule = Schedule::EveryHours { hours: 1 }.into();
    let v = a.save_set(None, input.clone()).unwrap();
    assert_eq!(v.schedule_text, "every hour");
    assert!(!v.stale);
    input.name = "Documents".into();
    assert_eq!(
        a.save_set(Some(&v.set.id), input.clone()).unwrap_err().kind,
        ErrorKind::AlreadyExists
    );
    input.name = "Every hour".into();
    assert_eq!(
        a.save_set(Some(&v.set.id), input).unwrap().set.name,
        "Every hour"
    );
    // Just saved: nothing starts unasked, not even a scheduled set.
    assert!(a.run_due_sets().is_empty());
    // Made two hours ago and never run: its first hour has come; the
    // manual set is never due.
    a.state()
        .settings
        .backup_sets
        .iter_mut()
        .find(|s| s.id == v.set.id)
        .unwrap()
        .created_at -= 7200;
    let jobs = a.run_due_sets();
    assert_eq!(jobs.len(), 1);
    assert_eq!(wait(&a, jobs[0]).state, JobState::Done);
    assert!(a.run_due_sets().is_empty(), "it ran; next due in an hour");
    a.delete_set(&v.set.id).unwrap();
    assert_eq!(a.list_sets().len(), 1);
    assert_eq!(
        a.delete_set(&v.set.id).unwrap_err().kind,
        ErrorKind::NotFound
    );
    // Settings survive a restart; K (in memory only) does not.
    let b = app(&tmp.path().join("data"), Arc::new(Collect::default()));
    let o = b.overview();
    assert!(o.onboarded);
    assert!(!o.unlocked);
    assert_eq!(
        b.run_backup("set-1").unwrap_err().kind,
        ErrorKind::KeyringUnavailable
    );
}

#[test]
fn the_device_copy_goes_to_the_kernel_keyring_when_it_works() {
    let ks = OsKeyring::with_backends(vec![KeyringBackend::Keyutils]);
    if let Err(e) = ks.probe() {
        // No session keyring here: the unavailable path is tested above.
        assert_eq!(e.kind(), ErrorKind::KeyringUnavailable);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let repo = tmp.path().join("r.db");
    let a = App::with_parts(data.clone(), Arc::new(ks), Arc::new(Collect::default())).unwrap();
    let new = a
        .create_key_repository(repo.to_str().unwrap(), true)
        .unwrap();
    let g = new.groups[new.confirm_group as usize - 1].clone();
    let k = a.confirm_recovery_key(new.confirm_group, &g).unwrap();
    assert!(k.keyring_saved, "{:?}", k.keyring_error);
    // A second app instance finds K in the keyring.
    let b = App::with_parts(
        data,
        Arc::new(OsKeyring::with_backends(vec![KeyringBackend::Keyutils])),
        Arc::new(Collect::default()),
    )
    .unwrap();
    assert!(b.key_for(&repo).is_ok());
    a.forget_device_key().unwrap();
    b.lock();
    assert_eq!(b.key_for(&repo).unwrap_err().code, "CF-A051");
}

#[test]
fn paths_must_be_absolute_and_data_dir_errors_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let a = app(tmp.path(), Arc::new(Collect::default()));
    assert_eq!(
        a.create_key_repository("relative/r.db", true)
            .unwrap_err()
            .code,
        "CF-A056"
    );
    // A folder that is not there (an unmounted USB disk's mount point) is
    // not made unasked: nothing is created until the user says so.
    let usb = tmp.path().join("media/usb");
    let on_usb = usb.join("coffer.db");
    let e = a
        .create_key_repository(on_usb.to_str().unwrap(), false)
        .unwrap_err();
    assert_eq!((e.code.as_str(), e.kind), ("CF-A097", ErrorKind::NotFound));
    assert!(e.message.contains("media/usb"), "{}", e.message);
    assert!(
        !tmp.path().join("media").exists(),
        "a folder was made unasked"
    );
    a.create_key_repository(on_usb.to_str().unwrap(), true)
        .unwrap();
    assert!(on_usb.is_file());
    assert_eq!(a.status().data_dir, tmp.path().display().to_string());
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = App::open(file.join("sub")).err().expect("must fail");
    let report = err.report();
    assert_eq!(report.code, "CF-A001");
    assert!(report.next_step.contains("--data-dir"), "{report:?}");
}

/// Set in the child process that runs a test against a private keyring.
const KEYRING_CHILD: &str = "COFFER_APP_UNIT_KEYRING_CHILD";

/// Runs `test` (this module's test of that name) again in a child process
/// whose session bus has its own unlocked gnome-keyring, as the local demo
/// fleet needs a keyring that outlives a restart. Returns true in the child.
fn in_private_keyring(test: &str) -> bool {
    if std::env::var_os(KEYRING_CHILD).is_some() {
        return true;
    }
    coffer_testenv::start_keyring()
        .run_test_in_child(&format!("app::tests::{test}"), &[(KEYRING_CHILD, "1")]);
    false
}

/// An app on `dir` with the OS keyring (in the private keyring's child).
fn keyring_app(dir: &Path) -> App {
    App::with_parts(
        dir.to_path_buf(),
        Arc::new(OsKeyring::with_backends(vec![
            KeyringBackend::SecretService,
        ])),
        Arc::new(Collect::default()),
    )
    .unwrap()
}

#[test]
fn vault_mode_first_run_recover_elsewhere_change_code_and_delete_record() {
    if !in_private_keyring("vault_mode_first_run_recover_elsewhere_change_code_and_delete_record") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fleet = tmp.path().join("fleet");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    let repo = tmp.path().join("usb/coffer.db");
    let r = repo.to_str().unwrap();
    let (acct, code, new_code) = (
        "ann@example.org",
        "correct horse battery staple",
        "violet tangerine orbit 42",
    );

    let a = keyring_app(&tmp.path().join("data1"));
    a.set_vault_dir(fleet.clone());
    assert_eq!(
        a.create_vault_repository(r, acct, code.into(), "other".into(), true)
            .unwrap_err()
            .code,
        "CF-A064"
    );
    assert_eq!(
        a.create_vault_repository(r, acct, "short".into(), "short".into(), true)
            .unwrap_err()
            .code,
        "CF-A065"
    );
    assert_eq!(
        a.create_vault_repository(r, " ", code.into(), code.into(), true)
            .unwrap_err()
            .code,
        "CF-A066"
    );
    assert!(!repo.exists(), "nothing is created before the checks pass");
    let info = a.vault_info().unwrap();
    assert!(info.validated && info.simulated_hsm, "{info:?}");
    assert_eq!((info.nodes, info.guess_limit), (5, 10));
    assert_eq!(info.checks[0].status, "passed");
    assert_eq!(info.key_fingerprint.len(), 32);
    let k = a
        .create_vault_repository(r, acct, code.into(), code.into(), true)
        .unwrap();
    assert!(k.keyring_saved);
    a.complete_onboarding(set_input("Docs", &src, &repo))
        .unwrap();
    assert_eq!(a.overview().key_mode, Some(KeyMode::RecoveryCode));
    assert_eq!(
        wait(&a, a.run_backup("set-1").unwrap()).state,
        JobState::Done
    );
    a.shutdown_vault();

    // A new installation: fresh data directory, same vault (on this
    // computer: the demo fleet's key is in this keyring).
    let b = keyring_app(&tmp.path().join("data2"));
    b.set_vault_dir(fleet.clone());
    let e = b
        .unlock_with_recovery_code(r, acct, "not my code at all".into())
        .unwrap_err();
    assert_eq!(e.code, "CF-V010", "{e:?}");
    assert_eq!(e.kind, ErrorKind::WrongRecoveryCode);
    assert!(e.message.contains("9 attempts remain"), "{e:?}");
    // The same wrong code again is refused here: no attempt is used.
    let again = b
        .unlock_with_recovery_code(r, acct, "not my code at all".into())
        .unwrap_err();
    assert_eq!(again.code, "CF-A095", "{again:?}");
    assert_eq!(again.kind, ErrorKind::WrongRecoveryCode);
    let ok = b.unlock_with_recovery_code(r, acct, code.into()).unwrap();
    assert_eq!(ok.snapshots, 1);
    assert_eq!(ok.wrong_guesses, 1, "the repeated code cost nothing");
    let out = tmp.path().join("out");
    assert_eq!(
        wait(
            &b,
            b.run_restore("latest", vec![], out.to_str().unwrap(), OnExisting::Refuse)
                .unwrap()
        )
        .state,
        JobState::Done
    );
    assert_eq!(
        std::fs::read(out.join(src.strip_prefix("/").unwrap()).join("a.txt")).unwrap(),
        b"alpha"
    );

    assert_eq!(
        b.change_recovery_code(acct, code.into(), new_code.into(), "x".into())
            .unwrap_err()
            .code,
        "CF-A064"
    );
    b.change_recovery_code(acct, code.into(), new_code.into(), new_code.into())
        .unwrap();
    assert_eq!(
        b.rehearse_recovery_code(acct, code.into())
            .unwrap_err()
            .code,
        "CF-V010"
    );
    // The rehearsal is a successful recovery: it reports the wrong code
    // tried just before (or the owner would never hear of it).
    let r = b.rehearse_recovery_code(acct, new_code.into()).unwrap();
    assert_eq!((r.snapshots, r.wrong_guesses), (1, 1));
    assert_eq!(r.wrong_guess_times.len(), 1);
    b.delete_vault_record(acct, new_code.into()).unwrap();
    assert!(b.rehearse_recovery_code(acct, new_code.into()).is_err());
    b.shutdown_vault();

    // Neither code nor K is in any file anyone wrote (the vault keeps only
    // the OPAQUE record and K wrapped under the export key).
    let rk = b.key_for(&repo).unwrap();
    let mut needles = secret_encodings(&rk.recovery_key().to_display_string(), rk.expose_bytes());
    needles.push(code.as_bytes().to_vec());
    needles.push(new_code.as_bytes().to_vec());
    // The demo fleet's keys are sealed in its folder under a root key that
    // is in the keyring, under the folder's id.
    let id = coffer_vault::demo_keys::folder_id(&fleet).unwrap().unwrap();
    let ks = OsKeyring::with_backends(vec![KeyringBackend::SecretService]);
    let root = ks
        .load(&crate::keyring::demo_fleet_account(&id))
        .unwrap()
        .expect("the root key is in the keyring");
    needles.push(root.to_vec());
    needles.push(hex::encode(*root).into_bytes());
    assert!(fleet.join(coffer_vault::demo_keys::KEYS_FILE).is_file());
    for root in [
        tmp.path().join("data1"),
        tmp.path().join("data2"),
        tmp.path().join("usb"),
        fleet,
    ] {
        scan_for_secrets(&root, &needles);
    }
    println!("{}", coffer_testenv::CHILD_PASSED);
}

#[test]
fn vault_mode_with_the_demo_fleet_needs_a_keyring_and_key_mode_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("usb/coffer.db");
    let r = repo.to_str().unwrap();
    let a = app(&tmp.path().join("data"), Arc::new(Collect::default()));
    let fleet = tmp.path().join("fleet");
    a.set_vault_dir(fleet.clone());
    for e in [
        a.vault_info().unwrap_err(),
        a.create_vault_repository(
            r,
            "ann",
            "correct horse battery".into(),
            "correct horse battery".into(),
            true,
        )
        .unwrap_err(),
    ] {
        assert_eq!(e.code, "CF-A014", "{e:?}");
        assert_eq!(e.kind, ErrorKind::KeyringUnavailable);
        assert!(
            e.next_step.contains("Unlock or start your desktop keyring"),
            "{e:?}"
        );
        assert!(e.next_step.contains("not wrong"), "{e:?}");
        assert!(e.next_step.contains("Key mode"), "{e:?}");
    }
    assert!(
        !fleet.exists(),
        "nothing written without a keyring, no file fallback"
    );
    assert!(!repo.exists());
    // Key mode needs no keyring (as before).
    let k = a.create_key_repository(r, true).unwrap();
    let g = k.confirm_group as usize;
    a.confirm_recovery_key(k.confirm_group, &k.groups[g - 1])
        .unwrap();
    assert!(repo.is_file());
    assert!(!fleet.exists());
}

/// A real fleet (the embedded one's public API) served over loopback HTTP,
/// as a remote vault would be.
struct LoopbackVault {
    rt: tokio::runtime::Runtime,
    vault: coffer_vault::embedded::EmbeddedVault,
    url: String,
}

impl LoopbackVault {
    fn start(dir: &Path) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let vault = rt
            .block_on(coffer_vault::embedded::start_with(
                dir,
                &coffer_vault::embedded::generate_root_key(),
                3,
                10,
            ))
            .unwrap();
        let (addr, _server) = rt.block_on(vault.serve("127.0.0.1:0")).unwrap();
        LoopbackVault {
            rt,
            vault,
            url: format!("http://{addr}"),
        }
    }

    fn choice(&self) -> VaultChoice {
        VaultChoice::Remote {
            url: self.url.clone(),
            witness_key: self.vault.witness_key().to_string(),
            operator_key: self.vault.operator_key().to_string(),
            witness_url: Some(self.vault.witness_url().to_string()),
            vendor_key: None,
            evidence_url: None,
            trust_policy: None,
        }
    }
}

impl LoopbackVault {
    /// The choice with the HSM vendor root pinned and the deployment
    /// evidence's URL (the demo witness publishes it).
    fn choice_with_evidence(&self) -> VaultChoice {
        let mut c = self.choice();
        if let VaultChoice::Remote {
            vendor_key,
            evidence_url,
            ..
        } = &mut c
        {
            *vendor_key = Some(self.vault.vendor_root().to_string());
            *evidence_url = Some(self.vault.evidence_url());
        }
        c
    }
}

impl LoopbackVault {
    /// What the UI does for a remote vault before the account's first
    /// request: "Send the code", then the code typed from the mail (here
    /// read from the loopback vault's outbox, as the user reads the mail).
    fn verify_mail(&self, app: &App, account: &str) {
        app.send_vault_mail_code(account).unwrap();
        let normalized = coffer_vault_client::normalize_account(account).unwrap();
        let code = coffer_vault::account::outbox_code(&self.vault.outbox(), &normalized).unwrap();
        app.verify_vault_mail_code(account, code.to_string())
            .unwrap();
    }
}

impl Drop for LoopbackVault {
    fn drop(&mut self) {
        self.rt.block_on(self.vault.shutdown());
    }
}

#[test]
fn remote_vault_by_url_registers_recovers_and_refuses_bad_keys_and_switches() {
    let tmp = tempfile::tempdir().unwrap();
    let lv = LoopbackVault::start(&tmp.path().join("remote-fleet"));
    let good = lv.choice();
    let VaultChoice::Remote {
        witness_key,
        operator_key,
        ..
    } = good.clone()
    else {
        unreachable!()
    };
    let other_witness =
        coffer_vault_client::coffer_transparency::NoteSigner::generate("coffer-demo-witness")
            .unwrap()
            .verifier()
            .to_string();
    let wrong = VaultChoice::Remote {
        url: lv.url.clone(),
        witness_key: other_witness,
        operator_key: operator_key.clone(),
        witness_url: None,
        vendor_key: None,
        evidence_url: None,
        trust_policy: None,
    };
    let repo = tmp.path().join("usb/coffer.db");
    let r = repo.to_str().unwrap();
    let (acct, code) = ("rita@example.org", "correct horse battery staple");

    let data1 = tmp.path().join("data1");
    let a = app(&data1, Arc::new(Collect::default()));
    let vs = a.vault_settings();
    assert_eq!(vs.choice, VaultChoice::EmbeddedDemo);
    assert!(vs.can_switch && vs.account.is_none());

    // Malformed choices are refused before any connection.
    let mut bad_url = good.clone();
    if let VaultChoice::Remote { url, .. } = &mut bad_url {
        *url = "http://vault.example.org".into();
    }
    assert_eq!(a.test_vault_choice(bad_url).unwrap_err().code, "CF-A029");
    let mut bad_key = good.clone();
    if let VaultChoice::Remote { witness_key, .. } = &mut bad_key {
        *witness_key = "not-a-key".into();
    }
    assert_eq!(a.test_vault_choice(bad_key).unwrap_err().code, "CF-A029");
    assert_eq!(
        a.test_vault_choice(VaultChoice::KeyOnly).unwrap_err().code,
        "CF-A029"
    );

    // Nothing listens there: "vault unreachable", not a crash.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = VaultChoice::Remote {
        url: format!("http://127.0.0.1:{closed}"),
        witness_key: witness_key.clone(),
        operator_key: operator_key.clone(),
        witness_url: None,
        vendor_key: None,
        evidence_url: None,
        trust_policy: None,
    };
    let e = a.test_vault_choice(unreachable.clone()).unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (ErrorKind::VaultUnreachable, "CF-V030"),
        "{e:?}"
    );
    assert_eq!(
        a.save_vault_choice(unreachable).unwrap_err().code,
        "CF-V030"
    );

    // Another witness key pinned: the report says which check failed, and
    // the choice cannot be saved.
    let t = a.test_vault_choice(wrong.clone()).unwrap();
    assert!(!t.validated, "{t:?}");
    assert!(t.checks.iter().any(|c| c.status == "failed"), "{t:?}");
    assert_eq!(
        a.save_vault_choice(wrong.clone()).unwrap_err().code,
        "CF-A063"
    );

    // The right keys: verified over the air, with audit links, not saved yet.
    let t = a.test_vault_choice(good.clone()).unwrap();
    assert!(t.validated, "{t:?}");
    assert!(
        t.validation_mode
            .contains(&format!("remote fleet at {}", lv.url)),
        "{t:?}"
    );
    assert!(t.checks.iter().all(|c| c.status != "failed"), "{t:?}");
    assert_eq!(t.checks[0].id, "pinned-key");
    assert!(
        t.checks
            .iter()
            .any(|c| c.detail.contains(lv.vault.witness_url())),
        "audit links: {t:?}"
    );
    let evidence_row = |t: &crate::vault::VaultInfo| {
        t.checks
            .iter()
            .find(|c| c.id == "deployment-evidence")
            .map(|c| c.status.clone())
    };
    assert_eq!(evidence_row(&t).as_deref(), Some("not_applicable"));
    assert!(
        t.validation_mode.contains("no HSM vendor key pinned"),
        "{t:?}"
    );

    // The HSM vendor root pinned: the deployment evidence is fetched and
    // verified, and says so.
    let with_evidence = lv.choice_with_evidence();
    let t = a.test_vault_choice(with_evidence.clone()).unwrap();
    assert!(t.validated, "{t:?}");
    assert_eq!(evidence_row(&t).as_deref(), Some("passed"), "{t:?}");
    assert!(
        t.validation_mode.contains(&lv.vault.evidence_url()),
        "{t:?}"
    );
    // Another vendor's root: the evidence does not verify, nor the fleet.
    let mut other_vendor = with_evidence.clone();
    if let VaultChoice::Remote { vendor_key, .. } = &mut other_vendor {
        *vendor_key = Some(
            coffer_vault_client::coffer_transparency::NoteSigner::generate(
                "coffer-demo-hsm-vendor",
            )
            .unwrap()
            .verifier()
            .to_string(),
        );
    }
    let t = a.test_vault_choice(other_vendor.clone()).unwrap();
    assert!(!t.validated, "{t:?}");
    assert_eq!(evidence_row(&t).as_deref(), Some("failed"), "{t:?}");
    assert_eq!(
        a.save_vault_choice(other_vendor).unwrap_err().code,
        "CF-A063"
    );
    // Half of the pair, or evidence that is not there: refused, not ignored.
    let mut half = with_evidence.clone();
    if let VaultChoice::Remote { evidence_url, .. } = &mut half {
        *evidence_url = None;
    }
    assert_eq!(a.test_vault_choice(half).unwrap_err().code, "CF-A029");
    let mut missing = with_evidence.clone();
    if let VaultChoice::Remote { evidence_url, .. } = &mut missing {
        *evidence_url = Some(format!("{}/no-such-document.json", lv.vault.witness_url()));
    }
    let e = a.test_vault_choice(missing).unwrap_err();
    assert_eq!(e.code, "CF-V030", "{e:?}");
    assert!(e.message.contains("deployment evidence"), "{e:?}");
    assert_eq!(a.vault_settings().choice, VaultChoice::EmbeddedDemo);
    assert!(
        !data1.join("settings.json").exists(),
        "a test saves nothing"
    );

    // Saved: the settings say so, and the trust state is remembered.
    assert!(a.save_vault_choice(good.clone()).unwrap().validated);
    assert_eq!(a.vault_settings().choice, good);
    assert_eq!(SettingsStore::new(&data1).load().unwrap().vault, good);
    assert_eq!(
        std::fs::read_dir(data1.join("vault-trust"))
            .unwrap()
            .count(),
        1
    );

    // First run in vault mode through the remote fleet: without the
    // code from the account's mail nothing is sent about the account.
    let e = a
        .create_vault_repository(r, acct, code.into(), code.into(), true)
        .unwrap_err();
    assert_eq!(e.code, "CF-V036", "{e:?}");
    lv.verify_mail(&a, acct);
    let k = a
        .create_vault_repository(r, acct, code.into(), code.into(), true)
        .unwrap();
    assert_eq!(k.snapshots, 0);
    assert_eq!(a.vault_settings().account.as_deref(), Some(acct));
    // Registered, first run not finished yet: already no switching.
    assert_eq!(
        a.save_vault_choice(VaultChoice::EmbeddedDemo)
            .unwrap_err()
            .code,
        "CF-A070"
    );
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    a.complete_onboarding(set_input("Docs", &src, &repo))
        .unwrap();
    let saved = SettingsStore::new(&data1).load().unwrap();
    assert_eq!(saved.vault, good, "first run keeps the chosen vault");
    assert_eq!(saved.vault_account.as_deref(), Some(acct));
    assert!(
        !data1.join("vault").exists(),
        "the embedded demo fleet was never started"
    );

    // The code is registered there: switching would orphan it.
    let vs = a.vault_settings();
    assert!(!vs.can_switch);
    assert_eq!(vs.switch_refused.unwrap().code, "CF-A070");
    assert_eq!(
        a.save_vault_choice(VaultChoice::EmbeddedDemo)
            .unwrap_err()
            .code,
        "CF-A070"
    );
    a.save_vault_choice(good.clone()).unwrap();
    a.shutdown_vault();

    // A new computer pinned to another witness key: the code is never used.
    let data2 = tmp.path().join("data2");
    let mut s = Settings {
        vault: wrong,
        ..Settings::default()
    };
    SettingsStore::new(&data2).save(&s).unwrap();
    let b = app(&data2, Arc::new(Collect::default()));
    let e = b
        .unlock_with_recovery_code(r, acct, code.into())
        .unwrap_err();
    assert_eq!(e.code, "CF-A063", "{e:?}");
    drop(b);

    // Pinned right (settings applied at start): recovered through the remote fleet.
    s.vault = good.clone();
    SettingsStore::new(&data2).save(&s).unwrap();
    let b = app(&data2, Arc::new(Collect::default()));
    assert!(b
        .vault_info()
        .unwrap()
        .validation_mode
        .contains("remote fleet"));
    lv.verify_mail(&b, acct);
    let e = b
        .unlock_with_recovery_code(r, acct, "not my code at all".into())
        .unwrap_err();
    assert!(
        e.message.contains("9 attempts remain"),
        "the wrong pin cost nothing: {e:?}"
    );
    let ok = b.unlock_with_recovery_code(r, acct, code.into()).unwrap();
    assert_eq!(ok.snapshots, 0);
    let saved = SettingsStore::new(&data2).load().unwrap();
    assert_eq!(
        (saved.key_mode, &saved.vault),
        (Some(KeyMode::RecoveryCode), &good)
    );
    assert_eq!(saved.vault_account.as_deref(), Some(acct));
    assert!(!data2.join("vault").exists());
    drop(b);

    // The vault goes away: the app still opens, and says "unreachable".
    let data3 = tmp.path().join("data3");
    let gone = VaultChoice::Remote {
        url: format!("http://127.0.0.1:{closed}"),
        witness_key,
        operator_key,
        witness_url: None,
        vendor_key: None,
        evidence_url: None,
        trust_policy: None,
    };
    SettingsStore::new(&data3)
        .save(&Settings {
            vault: gone,
            ..Settings::default()
        })
        .unwrap();
    let c = app(&data3, Arc::new(Collect::default()));
    assert!(c.overview().settings_error.is_none());
    for e in [
        c.vault_info().unwrap_err(),
        c.unlock_with_recovery_code(r, acct, code.into())
            .unwrap_err(),
    ] {
        assert_eq!(
            (e.kind, e.code.as_str()),
            (ErrorKind::VaultUnreachable, "CF-V030"),
            "{e:?}"
        );
    }

    // Key mode uses no vault: nothing to switch.
    let data4 = tmp.path().join("data4");
    SettingsStore::new(&data4)
        .save(&Settings {
            onboarding_completed: true,
            key_mode: Some(KeyMode::RecoveryKey),
            vault: VaultChoice::KeyOnly,
            ..Settings::default()
        })
        .unwrap();
    let d = app(&data4, Arc::new(Collect::default()));
    assert_eq!(d.vault_settings().switch_refused.unwrap().code, "CF-A071");
    assert_eq!(d.save_vault_choice(good).unwrap_err().code, "CF-A071");
}

/// Moving the recovery code from the embedded fleet to a remote one: the
/// code is checked in the old vault first (a wrong one costs an attempt and
/// changes nothing), registered in the new one, the choice switched, and the
/// old record deleted; afterwards only the new vault recovers the backups.
#[test]
fn the_recovery_code_moves_to_another_vault_and_only_then_the_old_record_goes() {
    if !in_private_keyring(
        "the_recovery_code_moves_to_another_vault_and_only_then_the_old_record_goes",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let lv = LoopbackVault::start(&tmp.path().join("remote-fleet"));
    let remote = lv.choice();
    let repo = tmp.path().join("usb/coffer.db");
    let r = repo.to_str().unwrap();
    let (acct, code) = ("mo@example.org", "correct horse battery staple");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();

    let data1 = tmp.path().join("data1");
    // The embedded demo fleet keeps its root key in the keyring.
    let a = keyring_app(&data1);
    // Nothing registered yet: nothing to move (Save chooses a vault then).
    assert_eq!(
        a.move_recovery_code(remote.clone(), acct, code.into())
            .unwrap_err()
            .code,
        "CF-A073"
    );
    a.create_vault_repository(r, acct, code.into(), code.into(), true)
        .unwrap();
    a.complete_onboarding(set_input("Docs", &src, &repo))
        .unwrap();
    assert_eq!(
        wait(&a, a.run_backup("set-1").unwrap()).state,
        JobState::Done
    );
    assert_eq!(a.vault_settings().switch_refused.unwrap().code, "CF-A070");

    // The vault in use is not another vault.
    assert_eq!(
        a.move_recovery_code(VaultChoice::EmbeddedDemo, acct, code.into())
            .unwrap_err()
            .code,
        "CF-A072"
    );
    // A wrong code: one attempt in the old vault, nothing else changes.
    let e = a
        .move_recovery_code(remote.clone(), acct, "not my code at all".into())
        .unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_str()),
        (ErrorKind::WrongRecoveryCode, "CF-V010")
    );
    assert!(e.message.contains("9 attempts remain"), "{e:?}");
    assert_eq!(a.vault_settings().choice, VaultChoice::EmbeddedDemo);
    // A new vault that does not verify: nothing registered, nothing changes.
    let mut unverified = remote.clone();
    if let VaultChoice::Remote { witness_key, .. } = &mut unverified {
        *witness_key =
            coffer_vault_client::coffer_transparency::NoteSigner::generate("coffer-demo-witness")
                .unwrap()
                .verifier()
                .to_string();
    }
    assert_eq!(
        a.move_recovery_code(unverified, acct, code.into())
            .unwrap_err()
            .code,
        "CF-A063"
    );
    assert_eq!(a.vault_settings().choice, VaultChoice::EmbeddedDemo);

    // The new vault is remote: its account service must know the address
    // first ("Send the code", then the code from the mail; here the
    // loopback vault's outbox), or the move registers nothing.
    let e = a
        .move_recovery_code(remote.clone(), acct, code.into())
        .unwrap_err();
    assert_eq!(e.code, "CF-V036", "{e:?}");
    assert_eq!(a.vault_settings().choice, VaultChoice::EmbeddedDemo);
    a.send_vault_mail_code_at(remote.clone(), acct).unwrap();
    let mail = coffer_vault::account::outbox_code(&lv.vault.outbox(), acct).unwrap();
    a.verify_vault_mail_code_at(remote.clone(), acct, mail.to_string())
        .unwrap();

    // The move.
    let m = a
        .move_recovery_code(remote.clone(), acct, code.into())
        .unwrap();
    assert!(m.info.validated, "{m:?}");
    assert!(m.old_record_deleted, "{m:?}");
    assert!(m.old_record_error.is_none());
    assert_eq!(a.vault_settings().choice, remote);
    assert_eq!(SettingsStore::new(&data1).load().unwrap().vault, remote);
    assert_eq!(a.vault_settings().switch_refused.unwrap().code, "CF-A070");
    assert!(a
        .vault_info()
        .unwrap()
        .validation_mode
        .contains("remote fleet"));
    // The moved code works in the new vault, with a full attempt budget.
    assert_eq!(
        a.rehearse_recovery_code(acct, code.into())
            .unwrap()
            .snapshots,
        1
    );
    a.shutdown_vault();

    // The old vault's record is gone for good.
    let data2 = tmp.path().join("data2");
    let b = keyring_app(&data2);
    b.set_vault_dir(data1.join("vault"));
    let e = b
        .unlock_with_recovery_code(r, acct, code.into())
        .unwrap_err();
    // A deleted record answers as an unknown account does (no
    // enumeration): the code no longer opens anything there.
    assert_eq!(
        (e.kind, e.code.as_str()),
        (ErrorKind::WrongRecoveryCode, "CF-V010"),
        "{e:?}"
    );
    b.shutdown_vault();
    drop(b);

    // A new computer pinned to the new vault recovers and restores.
    let data3 = tmp.path().join("data3");
    SettingsStore::new(&data3)
        .save(&Settings {
            vault: remote,
            ..Settings::default()
        })
        .unwrap();
    let c = app(&data3, Arc::new(Collect::default()));
    lv.verify_mail(&c, acct);
    assert_eq!(
        c.unlock_with_recovery_code(r, acct, code.into())
            .unwrap()
            .snapshots,
        1
    );
    println!("{}", coffer_testenv::CHILD_PASSED);
}

/// After "Move the data folder" (until the restart) nothing may change the
/// vault either: moving the recovery code would save the new vault choice
/// into the abandoned folder and then delete the record that the moved
/// folder's settings still use, leaving the next start without a working
/// code. It is refused before any vault is asked, and nothing is written.
#[test]
fn after_the_data_folder_moved_the_recovery_code_stays_where_the_moved_settings_point() {
    if !in_private_keyring(
        "after_the_data_folder_moved_the_recovery_code_stays_where_the_moved_settings_point",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let lv = LoopbackVault::start(&tmp.path().join("remote-fleet"));
    let remote = lv.choice();
    let repo = tmp.path().join("usb/coffer.db");
    let r = repo.to_str().unwrap();
    let (acct, code) = ("mv@example.org", "correct horse battery staple");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();

    let data1 = tmp.path().join("data1");
    // The embedded demo fleet keeps its root key in the keyring.
    let a = keyring_app(&data1);
    a.create_vault_repository(r, acct, code.into(), code.into(), true)
        .unwrap();
    a.complete_onboarding(set_input("Docs", &src, &repo))
        .unwrap();
    let moved = tmp.path().join("moved-data");
    a.set_data_dir_origin(Some(tmp.path().join("config/coffer/data-dir")), false);
    a.move_data_dir(moved.to_str().unwrap()).unwrap();
    let old_settings = std::fs::read(data1.join("settings.json")).unwrap();
    let new_settings = std::fs::read(moved.join("settings.json")).unwrap();

    for e in [
        a.move_recovery_code(remote.clone(), acct, code.into())
            .unwrap_err(),
        a.save_vault_choice(remote.clone()).unwrap_err(),
    ] {
        assert_eq!(e.code, "CF-A085", "{e:?}");
    }
    assert_eq!(
        std::fs::read(data1.join("settings.json")).unwrap(),
        old_settings
    );
    assert_eq!(
        std::fs::read(moved.join("settings.json")).unwrap(),
        new_settings
    );
    a.shutdown_vault();
    drop(a);

    // The restart on the moved folder recovers with the code, from the
    // record the moved settings point at (and K opens the backups).
    let b = keyring_app(&moved);
    assert_eq!(b.vault_settings().choice, VaultChoice::EmbeddedDemo);
    assert_eq!(
        b.rehearse_recovery_code(acct, code.into())
            .unwrap()
            .snapshots,
        0
    );
    b.shutdown_vault();
    println!("{}", coffer_testenv::CHILD_PASSED);
}

/// The same remote fleet with other verification settings (here: no
/// witness URL for the audit links) is the same vault: its record lives at
/// that URL. "Move my recovery code" to it must be refused (it would
/// register the code there again and then delete "the old record", the only
/// one), and "Save" must not be refused as a switch.
#[test]
fn the_same_fleet_checked_differently_is_the_same_vault() {
    let tmp = tempfile::tempdir().unwrap();
    let lv = LoopbackVault::start(&tmp.path().join("remote-fleet"));
    let remote = lv.choice();
    let repo = tmp.path().join("usb/coffer.db");
    let r = repo.to_str().unwrap();
    let (acct, code) = ("sam@example.org", "correct horse battery staple");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let a = app(&tmp.path().join("data1"), Arc::new(Collect::default()));
    a.save_vault_choice(remote.clone()).unwrap();
    lv.verify_mail(&a, acct);
    a.create_vault_repository(r, acct, code.into(), code.into(), true)
        .unwrap();
    a.complete_onboarding(set_input("Docs", &src, &repo))
        .unwrap();
    let mut same = remote.clone();
    if let VaultChoice::Remote { witness_url, .. } = &mut same {
        *witness_url = None;
    }
    let moved = a.move_recovery_code(same.clone(), acct, code.into());
    let still = a.rehearse_recovery_code(acct, code.into());
    assert!(
        still.is_ok(),
        "the record is gone: move {moved:?}, then {still:?}"
    );
    let saved = a.save_vault_choice(same.clone());
    assert!(saved.is_ok(), "{saved:?}");
    assert_eq!(moved.unwrap_err().code, "CF-A072");
    assert_eq!(a.vault_settings().choice, same);
    assert_eq!(
        a.rehearse_recovery_code(acct, code.into())
            .unwrap()
            .snapshots,
        0
    );
}

/// `text` with its `max-age` line replaced by `max-age secs`.
fn with_max_age(text: &str, secs: u64) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("max-age") {
                format!("max-age {secs}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn with_policy(mut c: VaultChoice, text: &str) -> VaultChoice {
    if let VaultChoice::Remote { trust_policy, .. } = &mut c {
        *trust_policy = Some(text.to_string());
    }
    c
}

/// A remote vault checked under the trust policy its operator publishes:
/// what the verification panel gets holds the checkpoint's freshness (age
/// against the policy's max age), the quorum, and each cosigner with its
/// key id and cosigning time. A policy for another log is refused
/// (`CF-A034`); a max age shorter than the cosignatures' age fails the
/// verification, and the panel says stale; the policy is saved with the
/// vault and read back by the next start.
#[test]
fn a_remote_vault_under_its_trust_policy_shows_freshness_and_cosigners() {
    let tmp = tempfile::tempdir().unwrap();
    let lv = LoopbackVault::start(&tmp.path().join("remote-fleet"));
    let policy = lv.vault.policy().clone();
    assert!(policy.witnesses.len() >= 2, "the demo fleet has cosigners");
    let data = tmp.path().join("data1");
    let a = app(&data, Arc::new(Collect::default()));

    // No policy: verified, but nothing is said about freshness.
    let info = a.test_vault_choice(lv.choice()).unwrap();
    assert!(info.validated, "{:?}", info.checks);
    assert!(
        info.freshness.is_none() && info.policy.is_none(),
        "{info:?}"
    );
    assert!(info.cosigners.is_empty());
    let skipped = info.checks.iter().find(|c| c.id == "cosignatures");
    assert_ne!(skipped.map(|c| c.status.as_str()), Some("passed"));

    let with = with_policy(lv.choice(), policy.text());
    let info = a.test_vault_choice(with.clone()).unwrap();
    assert!(info.validated, "{:?}", info.checks);
    let f = info.freshness.clone().expect("the freshness is shown");
    assert_eq!(f.max_age_secs, policy.max_age_secs);
    assert!(f.age_secs <= f.max_age_secs, "{f:?}");
    assert_eq!(f.quorum, policy.describe_quorum());
    let p = info.policy.clone().expect("the policy is shown");
    assert_eq!(p.quorum, policy.describe_quorum());
    assert_eq!(p.max_age_secs, policy.max_age_secs);
    assert_eq!(info.cosigners.len(), policy.witnesses.len());
    for (c, w) in info.cosigners.iter().zip(&policy.witnesses) {
        assert_eq!(c.name, w.name);
        assert_eq!(c.key, w.key.to_string());
        assert_eq!(c.key_id.len(), 8, "{c:?}");
        assert!(c.key.contains(&format!("+{}+", c.key_id)), "{c:?}");
        assert_eq!(c.status, "fresh", "{c:?}");
        assert!(c.cosigned_at.is_some());
    }
    assert!(info.fork_evidence.is_none());
    assert_eq!(
        info.checks
            .iter()
            .find(|c| c.id == "cosignatures")
            .map(|c| c.status.as_str()),
        Some("passed")
    );

    // A policy for another log (its `log` line names the operator key).
    let VaultChoice::Remote {
        witness_key,
        operator_key,
        ..
    } = lv.choice()
    else {
        unreachable!()
    };
    let other = policy.text().replace(
        &format!("log {witness_key}"),
        &format!("log {operator_key}"),
    );
    assert_ne!(other, policy.text());
    let e = a
        .test_vault_choice(with_policy(lv.choice(), &other))
        .unwrap_err();
    assert_eq!(e.code, "CF-A034", "{e:?}");
    let e = a
        .save_vault_choice(with_policy(lv.choice(), &other))
        .unwrap_err();
    assert_eq!(e.code, "CF-A034", "{e:?}");
    let e = a
        .test_vault_choice(with_policy(lv.choice(), "quorum nobody\n"))
        .unwrap_err();
    assert_eq!(e.code, "CF-A034", "{e:?}");

    // The max age is the policy's: one second, two seconds later, is stale.
    std::thread::sleep(Duration::from_millis(2100));
    let info = a
        .test_vault_choice(with_policy(lv.choice(), &with_max_age(policy.text(), 1)))
        .unwrap();
    assert!(!info.validated, "a stale checkpoint must not verify");
    let f = info
        .freshness
        .expect("a stale checkpoint still shows its age");
    assert_eq!(f.max_age_secs, 1);
    assert!(f.age_secs > 1, "{f:?}");
    assert!(info.cosigners.iter().all(|c| c.status == "stale"));
    assert!(a
        .save_vault_choice(with_policy(lv.choice(), &with_max_age(policy.text(), 1)))
        .is_err());

    // Saved with the vault, and read back by the next start.
    a.save_vault_choice(with.clone()).unwrap();
    assert_eq!(a.vault_settings().choice, with);
    let saved = std::fs::read_to_string(data.join("settings.json")).unwrap();
    assert!(saved.contains(&policy.witnesses[0].name), "{saved}");
    a.shutdown_vault();
    drop(a);
    let b = app(&data, Arc::new(Collect::default()));
    assert_eq!(b.vault_settings().choice, with);
    let info = b.vault_info().unwrap();
    assert!(info.validated && info.freshness.is_some() && info.policy.is_some());
    b.shutdown_vault();
}

/// A witness rolled back (restored from a copy of its log, with its own key)
/// behind a host that relays from it: the app that verified the newer log
/// refuses the fleet, and what the verification panel gets holds the fork
/// evidence, kind `rolled_back`, with both signed checkpoints.
#[test]
fn a_rolled_back_witness_is_shown_with_both_checkpoints_as_evidence() {
    use coffer_vault::relay::{BundleSource, WitnessSource};
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fleet = tmp.path().join("remote-fleet");
    let root = coffer_vault::embedded::generate_root_key();
    let v = rt
        .block_on(coffer_vault::embedded::start_with(&fleet, &root, 3, 10))
        .unwrap();
    let (addr, _server) = rt.block_on(v.serve("127.0.0.1:0")).unwrap();
    // The witness's log as it is at epoch 1.
    let backup = tmp.path().join("backup.db");
    rusqlite::Connection::open(fleet.join("witness/log.db"))
        .unwrap()
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    let remote = |url: String| VaultChoice::Remote {
        url,
        witness_key: v.witness_key().to_string(),
        operator_key: v.operator_key().to_string(),
        witness_url: None,
        vendor_key: None,
        evidence_url: None,
        trust_policy: None,
    };
    let a = app(&tmp.path().join("data1"), Arc::new(Collect::default()));
    a.save_vault_choice(remote(format!("http://{addr}")))
        .unwrap();
    // Epoch 2 is published and seen by the app.
    let mut keys2 = v.evidence().fleet_keys().unwrap();
    for k in &mut keys2.keys {
        k.not_after += 86_400;
    }
    rt.block_on(v.publish_epoch(2, &keys2)).unwrap();
    let seen = a.vault_info().unwrap();
    assert!(seen.validated, "{:?}", seen.checks);
    assert!(seen.fork_evidence.is_none());

    // The witness restored from the copy, and a host relaying from it.
    let folder = coffer_vault::demo_keys::folder_id(&fleet).unwrap().unwrap();
    let wkey = coffer_vault::demo_keys::DemoKeys::open(&fleet, &folder, &root)
        .unwrap()
        .witness;
    let store = coffer_witness::store::Store::open(
        &backup,
        wkey,
        v.operator_key(),
        "http://rolled-back.invalid",
    )
    .unwrap();
    let serve = |app| {
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let at = format!("http://{}", l.local_addr().unwrap());
            coffer_vault::limits::serve(l, app, coffer_vault::limits::Limits::default());
            at
        })
    };
    let old_witness = serve(coffer_witness::server::router(store));
    let source: Arc<dyn BundleSource> = Arc::new(WitnessSource::new(&old_witness).unwrap());
    let host = serve(coffer_vault::api::router_with(
        Arc::new(tokio::sync::RwLock::new(Some(v.hsm()))),
        Some(source),
    ));
    let info = a.test_vault_choice(remote(host)).unwrap();
    assert!(!info.validated, "a rolled-back log must not verify");
    let fork = info.fork_evidence.expect("the rollback is reported");
    assert_eq!(fork.kind, "rolled_back");
    assert_ne!(fork.remembered, fork.presented);
    for note in [&fork.remembered, &fork.presented] {
        assert!(
            note.contains(&format!("\u{2014} {} ", v.witness_key().name())),
            "{note}"
        );
    }
    a.shutdown_vault();
    rt.block_on(v.shutdown());
}
