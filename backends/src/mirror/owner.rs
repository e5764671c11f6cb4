//! Ownership marks: each backend names the catalog it belongs to. The repair loop deletes
//! blobs its catalog does not know, so two relays sharing a backend would delete each
//! other's objects; the mark stops the second one at start.

use std::io;
use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;

use super::Mirror;
use crate::error::{Result, StoreError};

/// Where each backend records which relay's catalog it belongs to.
const OWNER_PATH: &str = "haven-relay-owner";
const OWNER_LEN: u64 = 32;

/// Makes sure no backend belongs to another relay's catalog, and marks the ones that belong to
/// none. The repair loop deletes blobs its catalog does not know, so two relays sharing a
/// backend would delete each other's objects. With `take_over` (a relay replacing one whose
/// data dir is gone) the backends' owner id is adopted instead, and a relay without a
/// catalog then rebuilds it from them.
pub(super) async fn claim(catalog_dir: &Path, mirrors: &[Mirror], take_over: bool) -> Result<String> {
    let owner_file = catalog_dir.join("owner");
    let mut owner = tokio::fs::read_to_string(&owner_file)
        .await
        .ok()
        .map(|s| s.trim().to_owned());
    let mut marks = Vec::with_capacity(mirrors.len());
    for m in mirrors {
        marks.push(read_owner(m).await);
    }
    if take_over && let Some(theirs) = marks.iter().find_map(|m| m.as_ref().ok().cloned().flatten()) {
        tracing::warn!("taking over backends that belonged to another relay's catalog");
        owner = Some(theirs);
    }
    let owner = owner.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    for (m, mark) in mirrors.iter().zip(marks) {
        match mark {
            Ok(Some(id)) if id == owner => {}
            Ok(Some(_)) if take_over => {
                let mut sink = m.blobs.create(OWNER_PATH).await?;
                sink.write(Bytes::from(owner.clone())).await?;
                sink.commit().await?;
            }
            Ok(Some(_)) => return Err(StoreError::OwnedByAnother(m.label.clone())),
            Ok(None) => {
                owned_by(m, &owner).await?;
            }
            // Down now: the repair loop checks (or writes) the mark before its first sweep.
            Err(e) => tracing::warn!(mirror = %m.label, error = %e, "cannot check who owns a mirror that is down"),
        }
    }
    tokio::fs::create_dir_all(catalog_dir).await?;
    tokio::fs::write(&owner_file, format!("{owner}\n")).await?;
    Ok(owner)
}

/// Whether mirror `m` is ours to sweep: marked with `owner`, or unmarked (then marked now).
pub(super) async fn owned_by(m: &Mirror, owner: &str) -> Result<bool> {
    match read_owner(m).await? {
        Some(id) => Ok(id == owner),
        None => {
            let mut sink = m.blobs.create(OWNER_PATH).await?;
            sink.write(Bytes::from(owner.to_owned())).await?;
            sink.commit().await?;
            Ok(true)
        }
    }
}

/// The owner mark of mirror `m`, `None` if it has none.
async fn read_owner(m: &Mirror) -> Result<Option<String>> {
    let missing = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    let mut body = match m.blobs.read(OWNER_PATH, 0..OWNER_LEN).await {
        Ok(body) => body,
        Err(StoreError::NoSuchKey) => return Ok(None),
        Err(StoreError::Io(e)) if missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = Vec::new();
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => text.extend_from_slice(&chunk),
            Err(e) if missing(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(String::from_utf8_lossy(&text).trim().to_owned()))
}
