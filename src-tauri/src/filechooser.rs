//! The native file dialog of the "Browse…" buttons: GTK's file chooser,
//! built, shown and answered on the app's main thread, the one that runs
//! GTK's main loop for the window.
//!
//! The `rfd` crate did this before. Its GTK backend starts a second thread
//! that iterates GTK's default main context too, so GTK (which is not
//! thread-safe) dispatched the dialog's events on whichever of the two
//! threads won the context: a chosen file sometimes never reached the app
//! (the dialog closed, the window stayed under its "a file dialog is open"
//! veil) and Return in the Open dialog's location field was ignored every
//! time on a quiet machine (issue 11). Here nothing of GTK leaves the main
//! thread.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use coffer_app::dialog::{DialogSpec, PathKind};
use gtk::prelude::*;
use tokio::sync::oneshot;

/// Shows the dialog `spec` describes, transient for `parent`, and sends
/// what was chosen to `done` (`None` when cancelled or closed). Call it on
/// the main thread; it returns at once.
pub fn show(
    spec: &DialogSpec,
    parent: Option<&gtk::ApplicationWindow>,
    done: oneshot::Sender<Option<PathBuf>>,
) {
    let action = match spec.kind {
        PathKind::Folder => gtk::FileChooserAction::SelectFolder,
        PathKind::OpenRepository | PathKind::OpenPolicy | PathKind::OpenKeyFile => {
            gtk::FileChooserAction::Open
        }
        PathKind::SaveRepository | PathKind::SaveDiagnostics => gtk::FileChooserAction::Save,
    };
    // GTK's own button labels (translated); a portal is used where GTK
    // is told to.
    let dialog = gtk::FileChooserNative::new(Some(spec.title), parent, action, None, None);
    dialog.set_modal(true);
    dialog.set_create_folders(true);
    for f in &spec.filters {
        let filter = gtk::FileFilter::new();
        filter.set_name(Some(f.name));
        for ext in f.extensions {
            // `*` (every file) becomes GTK's `*.*`, as the filter's name says.
            filter.add_pattern(&format!("*.{ext}"));
        }
        dialog.add_filter(filter);
    }
    if let Some(dir) = &spec.directory {
        dialog.set_current_folder(dir);
    }
    let suggested = spec.file_name.as_deref();
    match (action, suggested) {
        (gtk::FileChooserAction::Save, Some(name)) => {
            dialog.set_do_overwrite_confirmation(true);
            let existing = spec
                .directory
                .as_ref()
                .map(|d| d.join(name))
                .filter(|p| p.exists());
            match existing {
                Some(p) => {
                    dialog.set_filename(p);
                }
                None => dialog.set_current_name(name),
            }
        }
        (gtk::FileChooserAction::Save, None) => dialog.set_do_overwrite_confirmation(true),
        (_, Some(name)) => {
            let p = spec
                .directory
                .as_ref()
                .map(|d| d.join(name))
                .unwrap_or_else(|| name.into());
            dialog.set_filename(p);
        }
        (_, None) => {}
    }
    // GTK does not keep a native dialog alive: it is held here until it has
    // answered (a cycle through the closure, broken by the answer).
    let held = Rc::new(RefCell::new(Some(dialog.clone())));
    let done = RefCell::new(Some(done));
    let keep = held.clone();
    dialog.connect_response(move |d, response| {
        let chosen = (response == gtk::ResponseType::Accept)
            .then(|| d.filename())
            .flatten();
        if let Some(tx) = done.borrow_mut().take() {
            let _ = tx.send(chosen);
        }
        keep.borrow_mut().take();
    });
    dialog.show();
    drop(held);
}
