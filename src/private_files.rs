//! The data dir is the relay's alone: other local users must not read key names, metadata or
//! the sealed bodies, nor the relay's keys.
//!
//! Everything the process creates gets mode 0600 (directories 0700) through its umask. A data
//! dir from an older version, or one a user made by hand, is closed at start: the directory
//! itself goes to 0700 (which alone keeps other users out of everything below it), and once,
//! every file and directory below it loses its group and other bits.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::Mode;

/// Written when every file below the data dir has been made private.
const DONE_MARKER: &str = ".private";

/// New files and directories: owner only, whatever umask the process was started with.
pub fn restrict_new_files() {
    rustix::process::umask(Mode::from_raw_mode(0o077));
}

/// Closes `data_dir` to other users at once, and its contents in the background the first
/// time (a large store takes a while to walk).
pub fn close_data_dir(data_dir: &Path) -> std::io::Result<()> {
    if !data_dir.exists() {
        return Ok(());
    }
    if make_private(data_dir)? {
        tracing::info!("closed the data dir to other local users (mode 0700)");
    }
    if !data_dir.join(DONE_MARKER).exists() {
        let dir = data_dir.to_path_buf();
        std::thread::spawn(move || match close_contents(&dir) {
            Ok(0) => {}
            Ok(n) => tracing::info!(entries = n, "made the data dir's files private to the relay's user"),
            Err(e) => tracing::warn!(error = %e, "could not make every file in the data dir private"),
        });
    }
    Ok(())
}

/// Clears the group and other bits below `dir` (not following symlinks); how many entries
/// changed. Leaves the marker when done.
fn close_contents(dir: &Path) -> std::io::Result<u64> {
    let mut changed = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let entries = match std::fs::read_dir(&next) {
            Ok(entries) => entries,
            // Removed meanwhile (a temporary directory): nothing to close.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                continue;
            }
            let path = entry.path();
            match make_private(&path) {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
            if kind.is_dir() {
                pending.push(path);
            }
        }
    }
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(dir.join(DONE_MARKER))?;
    Ok(changed)
}

/// Drops the group and other bits of one file or directory; whether it had any.
fn make_private(path: &Path) -> std::io::Result<bool> {
    let mode = std::fs::symlink_metadata(path)?.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(false);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_open_data_dir_is_closed_with_everything_below() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("store/bucket")).unwrap();
        std::fs::write(data.join("store/bucket/object"), b"sealed").unwrap();
        for (path, m) in [
            ("", 0o755),
            ("store", 0o775),
            ("store/bucket", 0o755),
            ("store/bucket/object", 0o644),
        ] {
            std::fs::set_permissions(data.join(path), std::fs::Permissions::from_mode(m)).unwrap();
        }
        assert_eq!(close_contents(&data).unwrap(), 3);
        assert!(make_private(&data).unwrap());
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("store")), 0o700);
        assert_eq!(mode(&data.join("store/bucket/object")), 0o600);
        assert!(data.join(DONE_MARKER).exists());
        assert_eq!(close_contents(&data).unwrap(), 0, "nothing left to change");
    }
}
