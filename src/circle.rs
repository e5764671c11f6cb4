//! The circle this relay serves: the link the app gave it, remembered in the data dir so that
//! a later `haven-relay run` resumes with no arguments, and the relay link it hands back.

use std::path::Path;

use anyhow::Context;
use tunnel::link::{CircleLink, RelayLink};
use tunnel::members;

const CIRCLE_FILE: &str = "circle-link";
const RELAY_LINK_FILE: &str = "relay-link";

/// A new circle for members without the app: a random id and `members`.
pub fn new_link(members: Vec<tunnel::EndpointId>) -> anyhow::Result<CircleLink> {
    anyhow::ensure!(
        members.len() <= tunnel::link::MAX_MEMBERS,
        "a circle link holds at most {} members; add the others with `members add`",
        tunnel::link::MAX_MEMBERS
    );
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("no randomness for a circle id: {e}"))?;
    Ok(CircleLink {
        circle: tunnel::link::CircleId(id),
        members,
    })
}

/// The remembered circle link, if this relay has joined one.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<CircleLink>> {
    let file = data_dir.join(CIRCLE_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            Ok(Some(text.parse().with_context(|| {
                format!("the remembered link in {}", file.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

/// Remembers `link` and admits its members (members added by hand stay). The returned
/// [`Joined`] takes it back if the relay then fails to start, so that a `run --link` that
/// failed has not joined anything.
pub fn join(data_dir: &Path, link: &CircleLink) -> anyhow::Result<Joined> {
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let circle_file = data_dir.join(CIRCLE_FILE);
    let members_file = members::path(data_dir);
    let before = Joined {
        circle: (circle_file.clone(), std::fs::read(&circle_file).ok()),
        members: (members_file.clone(), std::fs::read(&members_file).ok()),
    };
    write(&circle_file, &link.to_string())?;
    let mut all = members::load(data_dir)?;
    all.extend(link.members.iter().copied());
    members::save(data_dir, &all)?;
    Ok(before)
}

/// What the circle and members files held before a [`join`].
pub struct Joined {
    circle: (std::path::PathBuf, Option<Vec<u8>>),
    members: (std::path::PathBuf, Option<Vec<u8>>),
}

impl Joined {
    /// Puts both files back as they were (absent if they were).
    pub fn undo(self) {
        for (file, before) in [self.circle, self.members] {
            let _ = match before {
                Some(bytes) => std::fs::write(&file, bytes),
                None => std::fs::remove_file(&file),
            };
        }
    }
}

/// Remembers the link printed at the last start, for `haven-relay link`.
pub fn save_relay_link(data_dir: &Path, link: &RelayLink) -> anyhow::Result<()> {
    write(&data_dir.join(RELAY_LINK_FILE), &link.to_string())
}

pub fn load_relay_link(data_dir: &Path) -> anyhow::Result<Option<RelayLink>> {
    let file = data_dir.join(RELAY_LINK_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => Ok(Some(text.parse()?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
    }
}

fn write(file: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(file, format!("{text}\n")).with_context(|| format!("writing {}", file.display()))
}
