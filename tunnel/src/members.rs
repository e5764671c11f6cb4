//! The circle's allow-list: which node ids may open a tunnel to this relay.
//!
//! Kept in `<data-dir>/members.json` so that `haven-relay members add|remove` (another
//! process) can change it; a running relay re-reads the file when it changes and drops the
//! connections of anyone removed.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use iroh::EndpointId;
use serde::{Deserialize, Serialize};

const FILE: &str = "members.json";

#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    #[error("reading or writing {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a valid members file: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MembersFile {
    members: Vec<String>,
}

pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Reads the allow-list; a missing file is an empty circle.
pub fn load(data_dir: &Path) -> Result<BTreeSet<EndpointId>, MembersError> {
    let file = path(data_dir);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(source) => return Err(MembersError::Io { path: file, source }),
    };
    let invalid = |reason: String| MembersError::Invalid {
        path: file.clone(),
        reason,
    };
    let parsed: MembersFile = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    parsed
        .members
        .iter()
        .map(|id| id.parse::<EndpointId>().map_err(|e| invalid(format!("{id}: {e}"))))
        .collect()
}

/// Replaces the allow-list on disk atomically.
pub fn save(data_dir: &Path, members: &BTreeSet<EndpointId>) -> Result<(), MembersError> {
    let file = path(data_dir);
    let body = MembersFile {
        members: members.iter().map(|m| m.to_string()).collect(),
    };
    let json = serde_json::to_vec_pretty(&body).expect("plain strings serialize");
    crate::identity::write_private(&file, &json).map_err(|source| MembersError::Io { path: file, source })
}

/// The allow-list a running relay checks, shared between the accept loop and the watcher.
#[derive(Clone, Debug, Default)]
pub struct Members(Arc<RwLock<BTreeSet<EndpointId>>>);

impl Members {
    pub fn new(initial: BTreeSet<EndpointId>) -> Self {
        Self(Arc::new(RwLock::new(initial)))
    }

    pub fn contains(&self, id: &EndpointId) -> bool {
        self.0.read().expect("members lock").contains(id)
    }

    /// Replaces the set; returns the ids that are no longer members.
    pub fn replace(&self, new: BTreeSet<EndpointId>) -> Vec<EndpointId> {
        let mut current = self.0.write().expect("members lock");
        let removed = current.difference(&new).copied().collect();
        *current = new;
        removed
    }
}
