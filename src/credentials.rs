//! The access key and secret of the plain-HTTP S3 endpoint.
//!
//! Created on first start and kept in `<data-dir>/credentials.json` (mode 0600); flags or
//! `HAVEN_RELAY_ACCESS_KEY` / `HAVEN_RELAY_SECRET_KEY` override them without touching the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("credentials.json")
}

/// Random keys in the shape AWS uses (20-char id, 40-char secret). Both alphabets have a
/// power-of-two size, so mapping random bytes onto them is unbiased.
fn generate() -> anyhow::Result<Credentials> {
    const ID: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const SECRET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut random = [0u8; 56];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let access_key = format!(
        "HAVN{}",
        random[..16]
            .iter()
            .map(|b| ID[(*b % 32) as usize] as char)
            .collect::<String>()
    );
    let secret_key = random[16..]
        .iter()
        .map(|b| SECRET[(*b % 64) as usize] as char)
        .collect();
    Ok(Credentials { access_key, secret_key })
}

/// Loads the stored credentials, creating them on first use.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Credentials> {
    let file = path(data_dir);
    match std::fs::read(&file) {
        Ok(bytes) => {
            return serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", file.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let creds = generate()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options
        .open(&file)
        .with_context(|| format!("creating {}", file.display()))?;
    out.write_all(&serde_json::to_vec_pretty(&creds)?)?;
    out.sync_all()?;
    Ok(creds)
}

/// Resolves the credentials: both overrides given, or the stored pair.
pub fn resolve(data_dir: &Path, access_key: Option<String>, secret_key: Option<String>) -> anyhow::Result<Credentials> {
    match (access_key, secret_key) {
        (Some(access_key), Some(secret_key)) => Ok(Credentials { access_key, secret_key }),
        (None, None) => load_or_create(data_dir),
        _ => anyhow::bail!("set both the access key and the secret key, or neither"),
    }
}
