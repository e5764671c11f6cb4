//! `haven-relay send` and `haven-relay inbox`: the mailbox from a shell, as the same member
//! node the data dir's identity is (the one `connect` uses), and the `run` flags that set the
//! mailbox's limits.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use mailbox::{Delivery, Limits, MessageId, Post, PostStatus};
use tunnel::link::RelayLink;
use tunnel::{EndpointId, EndpointOptions, MailboxClient};

use crate::config::MailboxFile;

/// `run`'s mailbox limits. Flags (and their variables) win over relay.json's `mailbox`.
#[derive(Args, Debug, Default)]
pub struct MailboxArgs {
    /// Largest message in bytes (default 1 MiB; bigger media go to S3).
    #[arg(long, env = "HAVEN_RELAY_MAILBOX_MAX_MESSAGE")]
    pub mailbox_max_message: Option<u64>,
    /// Messages waiting for one member (default 1000).
    #[arg(long, env = "HAVEN_RELAY_MAILBOX_QUEUE_MESSAGES")]
    pub mailbox_queue_messages: Option<usize>,
    /// Bytes waiting for one member (default 50 MB).
    #[arg(long, env = "HAVEN_RELAY_MAILBOX_QUEUE_BYTES")]
    pub mailbox_queue_bytes: Option<u64>,
    /// Posts one member may make per minute (default 600).
    #[arg(long, env = "HAVEN_RELAY_MAILBOX_POSTS_PER_MINUTE")]
    pub mailbox_posts_per_minute: Option<u32>,
    /// Bytes the mailbox holds for everyone (default 1 GiB).
    #[arg(long, env = "HAVEN_RELAY_MAILBOX_TOTAL_BYTES")]
    pub mailbox_total_bytes: Option<u64>,
    /// Days a message is kept when its sender asks for no lifetime (default 30).
    #[arg(long, env = "HAVEN_RELAY_MAILBOX_LIFETIME_DAYS", value_parser = clap::value_parser!(u16).range(1..))]
    pub mailbox_lifetime_days: Option<u16>,
    /// The longest lifetime granted, in days (default 120).
    #[arg(long, env = "HAVEN_RELAY_MAILBOX_MAX_LIFETIME_DAYS", value_parser = clap::value_parser!(u16).range(1..))]
    pub mailbox_max_lifetime_days: Option<u16>,
}

impl MailboxArgs {
    pub fn resolve(&self, file: Option<&MailboxFile>) -> anyhow::Result<Limits> {
        let empty = MailboxFile::default();
        let file = file.unwrap_or(&empty);
        let defaults = Limits::default();
        let limits = Limits {
            max_message_bytes: self
                .mailbox_max_message
                .or(file.max_message_bytes)
                .unwrap_or(defaults.max_message_bytes),
            max_queued_messages: self
                .mailbox_queue_messages
                .or(file.max_queued_messages)
                .unwrap_or(defaults.max_queued_messages),
            max_queued_bytes: self
                .mailbox_queue_bytes
                .or(file.max_queued_bytes)
                .unwrap_or(defaults.max_queued_bytes),
            posts_per_minute: self
                .mailbox_posts_per_minute
                .or(file.posts_per_minute)
                .unwrap_or(defaults.posts_per_minute),
            max_total_bytes: self
                .mailbox_total_bytes
                .or(file.max_total_bytes)
                .unwrap_or(defaults.max_total_bytes),
            default_lifetime_days: self
                .mailbox_lifetime_days
                .or(file.default_lifetime_days)
                .unwrap_or(defaults.default_lifetime_days),
            max_lifetime_days: self
                .mailbox_max_lifetime_days
                .or(file.max_lifetime_days)
                .unwrap_or(defaults.max_lifetime_days),
            max_hops: file.max_hops.unwrap_or(defaults.max_hops),
            memory_cache_bytes: file.memory_cache_bytes.unwrap_or(defaults.memory_cache_bytes),
        };
        anyhow::ensure!(
            limits.default_lifetime_days >= 1 && limits.max_lifetime_days >= 1,
            "mailbox lifetimes must be at least one day"
        );
        anyhow::ensure!(
            limits.default_lifetime_days <= limits.max_lifetime_days,
            "mailbox.default_lifetime_days ({}) is longer than mailbox.max_lifetime_days ({})",
            limits.default_lifetime_days,
            limits.max_lifetime_days
        );
        for (key, value) in [
            ("mailbox.max_message_bytes", limits.max_message_bytes),
            ("mailbox.max_queued_messages", limits.max_queued_messages as u64),
            ("mailbox.posts_per_minute", u64::from(limits.posts_per_minute)),
        ] {
            anyhow::ensure!(value >= 1, "{key} must be at least 1 (0 would refuse every message)");
        }
        anyhow::ensure!(
            limits.max_message_bytes <= limits.max_queued_bytes && limits.max_message_bytes <= limits.max_total_bytes,
            "mailbox.max_message_bytes ({}) is more than a recipient's queue (max_queued_bytes {}) \
             or the whole mailbox (max_total_bytes {}) may hold",
            limits.max_message_bytes,
            limits.max_queued_bytes,
            limits.max_total_bytes
        );
        anyhow::ensure!(
            limits.max_message_bytes <= mailbox::frame::MAX_PAYLOAD,
            "the largest mailbox message is at most {} bytes (bigger ones go to S3)",
            mailbox::frame::MAX_PAYLOAD
        );
        Ok(limits)
    }
}

/// Dials the relay's mailbox as this data dir's node.
async fn client(data_dir: &Path, link: &RelayLink, options: &EndpointOptions) -> anyhow::Result<MailboxClient> {
    let secret = tunnel::identity::load_or_create(data_dir)?;
    let endpoint = tunnel::endpoint::bind(secret, options, Vec::new()).await?;
    match MailboxClient::connect(endpoint.clone(), link.endpoint_addr()).await {
        Ok(client) => Ok(client),
        Err(e) => {
            // Closed, not dropped: iroh logs an ERROR for an endpoint simply dropped.
            endpoint.close().await;
            Err(e.into())
        }
    }
}

/// Posts `payload` to `to` as message `id`; the relay's answer.
pub async fn send(
    data_dir: &Path,
    link: &RelayLink,
    options: &EndpointOptions,
    to: &[EndpointId],
    payload: Bytes,
    id: MessageId,
    lifetime_days: u16,
) -> anyhow::Result<PostStatus> {
    anyhow::ensure!(!to.is_empty(), "name at least one recipient with --to NODE_ID");
    anyhow::ensure!(
        to.len() <= mailbox::frame::MAX_RECIPIENTS,
        "at most {} recipients per message",
        mailbox::frame::MAX_RECIPIENTS
    );
    anyhow::ensure!(payload.len() <= u32::MAX as usize, "the message is larger than 4 GiB");
    let client = client(data_dir, link, options).await?;
    let post = Post {
        id,
        hops: 0,
        lifetime_days,
        recipients: to.iter().map(|r| *r.as_bytes()).collect(),
        payload,
    };
    let status = client.post(&post).await;
    client.endpoint().close().await;
    Ok(status?)
}

/// Receives this node's messages: each is written (to `out/<message id>`, or to stdout) and
/// only then acknowledged. Returns how many were received; without `follow`, once the relay
/// says the queue is empty.
pub async fn inbox(
    data_dir: &Path,
    link: &RelayLink,
    options: &EndpointOptions,
    out: Option<&Path>,
    follow: bool,
) -> anyhow::Result<u64> {
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let client = client(data_dir, link, options).await?;
    let received = receive(&client, out, follow).await;
    client.endpoint().close().await;
    received
}

async fn receive(client: &MailboxClient, out: Option<&Path>, follow: bool) -> anyhow::Result<u64> {
    let mut inbox = client.inbox().await?;
    let mut received = 0;
    loop {
        match inbox.next().await? {
            Some(Delivery::Message { id, payload }) => {
                match out {
                    Some(dir) => write_durably(&dir.join(id.to_hex()), &payload)?,
                    None => {
                        let mut stdout = std::io::stdout().lock();
                        stdout.write_all(&payload).context("writing to stdout")?;
                        stdout.flush().context("writing to stdout")?;
                    }
                }
                inbox.ack(id).await?;
                received += 1;
            }
            Some(Delivery::Empty) if !follow => {
                inbox.close().await?;
                return Ok(received);
            }
            Some(Delivery::Empty) => {}
            Some(Delivery::Superseded) => {
                anyhow::bail!("another connection of this node opened the inbox; stopping here")
            }
            Some(Delivery::Refused(status)) => anyhow::bail!("the relay refused the inbox: {status}"),
            None => anyhow::bail!("the relay closed the inbox"),
        }
    }
}

/// Writes `path` so that it is complete and on disk before the message is acknowledged: a
/// crash leaves either nothing (the relay delivers it again) or the whole message.
fn write_durably(path: &PathBuf, payload: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("part");
    let mut file = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(payload)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
