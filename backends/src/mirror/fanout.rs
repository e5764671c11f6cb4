//! One body, streamed to several blob sinks at once.
//!
//! Each sink gets its own task and a small bounded channel, so the sinks write in parallel,
//! memory per transfer is a few chunks per mirror whatever the size, and the body advances at
//! the pace of the slowest healthy mirror. A sink that fails drops out; the others go on.
//! Nothing becomes visible on any mirror until [`Fanout::finish`] is told to commit, and a
//! dropped `Fanout` (a client that hung up) aborts every sink.

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::blobs::BlobSink;
use crate::error::{Result, Unavailable};

/// Chunks queued per mirror.
const CHANNEL_DEPTH: usize = 4;

struct Lane {
    mirror: usize,
    chunks: Option<mpsc::Sender<Bytes>>,
    decision: Option<oneshot::Sender<bool>>,
    task: JoinHandle<Result<()>>,
}

pub(crate) struct Fanout {
    lanes: Vec<Lane>,
}

impl Fanout {
    pub fn new(sinks: Vec<(usize, Box<dyn BlobSink>)>) -> Self {
        let lanes = sinks
            .into_iter()
            .map(|(mirror, mut sink)| {
                let (tx, mut rx) = mpsc::channel::<Bytes>(CHANNEL_DEPTH);
                let (decide, decided) = oneshot::channel::<bool>();
                let task = tokio::spawn(async move {
                    while let Some(chunk) = rx.recv().await {
                        if let Err(e) = sink.write(chunk).await {
                            sink.abort().await;
                            return Err(e);
                        }
                    }
                    match decided.await {
                        Ok(true) => sink.commit().await,
                        _ => {
                            sink.abort().await;
                            Err(Unavailable::WriteAbandoned.into())
                        }
                    }
                });
                Lane {
                    mirror,
                    chunks: Some(tx),
                    decision: Some(decide),
                    task,
                }
            })
            .collect();
        Self { lanes }
    }

    /// Mirrors still taking the body.
    pub fn live(&self) -> usize {
        self.lanes.iter().filter(|l| l.chunks.is_some()).count()
    }

    /// Hands `chunk` to every live sink; waits while any of them is a full channel behind.
    pub async fn send(&mut self, chunk: Bytes) {
        let sends = self.lanes.iter_mut().filter_map(|lane| {
            let tx = lane.chunks.clone()?;
            let chunk = chunk.clone();
            Some(async move {
                if tx.send(chunk).await.is_err() {
                    lane.chunks = None; // its sink failed; the reason comes out of `finish`
                }
            })
        });
        futures::future::join_all(sends).await;
    }

    /// Ends every body with the object's trailer and commits (or aborts) on every mirror.
    /// Returns each mirror's outcome.
    pub async fn finish(mut self, commit: bool, trailer: Option<Bytes>) -> Vec<(usize, Result<()>)> {
        if let Some(trailer) = trailer.filter(|_| commit) {
            self.send(trailer).await;
        }
        let mut outcomes = Vec::with_capacity(self.lanes.len());
        for lane in &mut self.lanes {
            lane.chunks = None;
            if let Some(decide) = lane.decision.take() {
                let _ = decide.send(commit);
            }
        }
        for lane in std::mem::take(&mut self.lanes) {
            let outcome = lane.task.await.unwrap_or_else(|e| Err(std::io::Error::other(e).into()));
            outcomes.push((lane.mirror, outcome));
        }
        outcomes
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        // Unfinished: every sink's task sees its decision dropped and aborts.
        for lane in &mut self.lanes {
            lane.chunks = None;
            lane.decision = None;
        }
    }
}
