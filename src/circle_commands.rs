//! The subcommands about the circle: `link` (this relay's link and QR code), `members` (who
//! may reach it through the tunnel) and `circle new` (a circle link without the app).

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use haven_relay::circle;
use tunnel::EndpointId;
use tunnel::link::RelayLink;

#[derive(Subcommand)]
pub(crate) enum CircleAction {
    /// Print a new circle's link (a random circle id and the members given), to start the
    /// relay with: `run --link LINK`.
    New {
        /// A member's node id, as `haven-relay id` prints it on that machine (repeatable;
        /// more can join later with `members add`).
        #[arg(long = "member", value_name = "NODE_ID")]
        members: Vec<EndpointId>,
    },
}

#[derive(Subcommand)]
pub(crate) enum MembersAction {
    /// Print every member's node id, one per line.
    List,
    /// Let a node in (a running relay admits it within a second).
    Add {
        /// The node id to admit, as `haven-relay id` prints it on that machine.
        node_id: EndpointId,
    },
    /// Shut a node out; its open connections are cut within a second.
    Remove {
        /// The node id to remove.
        node_id: EndpointId,
    },
}

pub(crate) fn circle(action: CircleAction) -> anyhow::Result<()> {
    match action {
        CircleAction::New { members } => say!("{}", circle::new_link(members)?),
    }
    Ok(())
}

pub(crate) fn print_link(data_dir: &Path) -> anyhow::Result<()> {
    let link = match circle::load_relay_link(data_dir)? {
        Some(link) => link,
        None => {
            let circle = circle::load(data_dir)?.context(
                "this relay has not joined a circle yet: run `haven-relay run --link \"haven-relay://circle#…\"` first",
            )?;
            RelayLink {
                circle: circle.circle,
                relay: tunnel::identity::load_or_create(data_dir)?.public(),
                relay_url: None,
                direct_addrs: Vec::new(),
            }
        }
    };
    say!("node id:    {}", link.relay);
    say!("relay link: {link}");
    say!("{}", qr(&link.to_string()));
    Ok(())
}

pub(crate) fn members(data_dir: &Path, action: MembersAction) -> anyhow::Result<()> {
    let mut all = tunnel::members::load(data_dir)?;
    match action {
        MembersAction::List => {
            if all.is_empty() {
                // On stderr, so that `members list | wc -l` still counts members.
                eprintln!("no members yet: `haven-relay run --link …` joins the app's circle");
            }
            for member in &all {
                say!("{member}");
            }
            return Ok(());
        }
        MembersAction::Add { node_id } => {
            if !all.insert(node_id) {
                say!("{node_id} is already a member");
                return Ok(());
            }
        }
        MembersAction::Remove { node_id } => {
            anyhow::ensure!(all.remove(&node_id), "{node_id} is not a member");
        }
    }
    tunnel::members::save(data_dir, &all)?;
    say!(
        "{}; a running relay picks the change up within a second",
        members_count(all.len())
    );
    Ok(())
}

pub(crate) fn qr(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
        Err(_) => String::from("(the link is too long for a QR code)"),
    }
}

pub(crate) fn members_count(n: usize) -> String {
    if n == 1 {
        "1 member".into()
    } else {
        format!("{n} members")
    }
}
