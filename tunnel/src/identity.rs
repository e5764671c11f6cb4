//! The relay's (or a `connect` client's) iroh identity: one secret key in the data dir.
//!
//! The node id derived from it is what members are allowed by and what links carry, so it
//! must be stable across restarts. The secret stays in `<data-dir>/iroh-secret.key` (mode
//! 0600, written atomically) and is never logged or printed.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use iroh::SecretKey;

const FILE: &str = "iroh-secret.key";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("reading or writing the identity at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the identity file {0} is corrupt (expected 64 hex characters)")]
    Corrupt(PathBuf),
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Loads this data dir's secret key, creating it on first use.
pub fn load_or_create(data_dir: &Path) -> Result<SecretKey, IdentityError> {
    let file = path(data_dir);
    let io_err = |source| IdentityError::Io {
        path: file.clone(),
        source,
    };
    match std::fs::read_to_string(&file) {
        Ok(text) => parse(text.trim()).ok_or_else(|| IdentityError::Corrupt(file.clone())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            write_private(
                &file,
                hex_simd::encode_to_string(key.to_bytes(), hex_simd::AsciiCase::Lower).as_bytes(),
            )
            .map_err(io_err)?;
            // Another process may have raced us; whichever file won is the identity.
            load_existing(&file)
        }
        Err(e) => Err(io_err(e)),
    }
}

/// Loads the secret key if this data dir has one, without creating it.
pub fn load_existing(file: &Path) -> Result<SecretKey, IdentityError> {
    let text = std::fs::read_to_string(file).map_err(|source| IdentityError::Io {
        path: file.to_owned(),
        source,
    })?;
    parse(text.trim()).ok_or_else(|| IdentityError::Corrupt(file.to_owned()))
}

fn parse(hex: &str) -> Option<SecretKey> {
    let bytes: [u8; 32] = hex_simd::decode_to_vec(hex).ok()?.try_into().ok()?;
    Some(SecretKey::from_bytes(&bytes))
}

/// Writes `bytes` to `file` with mode 0600 from the start, via a temp file and a rename.
pub(crate) fn write_private(file: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = file.parent().expect("file in a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(&tmp)?;
    out.write_all(bytes)?;
    out.sync_all()?;
    std::fs::rename(&tmp, file)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.public(), again.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path(dir.path())).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(path(dir.path()), "not hex").unwrap();
        assert!(matches!(load_or_create(dir.path()), Err(IdentityError::Corrupt(_))));
    }
}
