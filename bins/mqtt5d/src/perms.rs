//! Private files: the data directory is created with mode 0700 whatever the umask (the
//! database inside it gets 0600 from `mqtt5_store::SqliteStore::open`), and at start the
//! broker warns, as Mosquitto does, about a data directory, database or TLS private key that
//! other users can read or write. Modes of files and directories the operator created are
//! never changed.

use std::io;
use std::path::Path;

use tracing::warn;

use crate::settings::Settings;

/// The mode of the directories mqtt5d creates.
const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` and its missing parents with mode 0700 (on Unix), whatever the umask. An
/// existing directory is left as it is.
///
/// # Errors
///
/// When a directory cannot be created or its mode set.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    // The missing ancestors, outermost first: those are the ones created here.
    let mut missing = Vec::new();
    let mut next = Some(dir);
    while let Some(d) = next {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d);
        next = d.parent();
    }
    for d in missing.into_iter().rev() {
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, PRIVATE_DIR_MODE);
        match builder.create(d) {
            Ok(()) => set_private_dir_mode(d)?,
            // Made by someone else in the meantime: theirs, left as it is.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sets mode 0700 on a directory just created: the umask may have removed bits from it.
fn set_private_dir_mode(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The permission bits of `path` that let group or others read or write it, if any (and the
/// whole mode), on Unix; `None` when there are none or the file cannot be examined.
fn exposed_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
        (mode & 0o066 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Logs a WARN line when `path` can be read or written by group or others.
fn warn_if_exposed(path: &Path, what: &str) {
    if let Some(mode) = exposed_mode(path) {
        warn!(
            path = %path.display(),
            mode = %format_args!("{mode:04o}"),
            "the {what} {} can be read or written by other users: restrict it (chmod go-rwx)",
            path.display()
        );
    }
}

/// Warns about every file of `settings` that should be private and is not: each listener's
/// TLS private key, the data directory and the database, when they exist.
pub(crate) fn warn_exposed_files(settings: &Settings) {
    for listener in &settings.listeners {
        if let Some(tls) = &listener.tls {
            warn_if_exposed(&tls.key, "TLS private key");
        }
    }
    warn_if_exposed(&settings.storage.data_dir, "data directory");
    warn_if_exposed(&settings.storage.database_path(), "database");
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_are_private_and_existing_ones_keep_their_mode() {
        let root = tempfile::tempdir().unwrap();
        let existing = root.path().join("existing");
        std::fs::create_dir(&existing).unwrap();
        std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = existing.join("a").join("b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&existing), 0o755);
        assert_eq!(mode(&existing.join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        // Again: nothing to do.
        create_private_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o750);
    }

    #[test]
    fn group_or_other_read_or_write_is_exposed() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("key.pem");
        std::fs::write(&file, "x").unwrap();
        for (bits, exposed) in [
            (0o600, false),
            (0o400, false),
            (0o700, false),
            (0o640, true),
            (0o604, true),
            (0o620, true),
            (0o602, true),
            (0o610, false),
            (0o601, false),
        ] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(bits)).unwrap();
            assert_eq!(exposed_mode(&file).is_some(), exposed, "{bits:o}");
        }
        assert_eq!(exposed_mode(&root.path().join("missing")), None);
    }
}
