//! Who may hold the HTTP port: a cap on open connections that idle ones can never fill.
//!
//! The relay often sits behind a port-forward where anyone can open TCP connections. Each
//! one costs a file descriptor, and the usual limit is 1024: a thousand idle strangers used to
//! stop all service. So the number of connections is capped below the descriptor limit, and a
//! connection over the cap takes the place of the connection that has been idle longest (no
//! request in flight, including one still sending its headers), once that one has been idle
//! for [`MIN_IDLE_TO_EVICT`]: a connection just opened is about to send its request, and
//! cutting it would turn a client's burst of parallel requests into connection resets. While
//! no connection can give up its place, new ones wait (in the kernel's queue, and one of them
//! up to [`WAIT_FOR_PLACE`] in ours); one that still finds every place busy with a request is
//! refused with `503 SlowDown`. Slow or silent headers are cut by hyper's header timeout,
//! which also bounds how long an idle keep-alive connection stays open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::metrics::S3Metrics;

/// How long a connection must have been idle before a newcomer may take its place.
pub(crate) const MIN_IDLE_TO_EVICT: Duration = Duration::from_secs(1);

/// How long a newcomer waits for a place before it is refused.
pub(crate) const WAIT_FOR_PLACE: Duration = Duration::from_secs(2);

/// The HTTP listener's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; keep it below the process's file-descriptor limit.
    pub max_connections: usize,
    /// Time a client has to send a request's headers, counted from the connection's start or
    /// the end of the previous response: so also how long an idle keep-alive connection lives.
    pub header_timeout: Duration,
}

impl ConnectionLimits {
    /// High, as the cap is there for the file-descriptor limit (which lowers it further, see
    /// `src/fd_limit.rs`): a lower one turned a client's burst of 1,500 parallel requests into
    /// connect timeouts, as the kernel's queue of connections not yet accepted overflowed.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(20);
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
        }
    }
}

/// The open connections and which of them are busy.
pub(crate) struct Connections {
    max: usize,
    table: Mutex<Table>,
    metrics: Option<Arc<S3Metrics>>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Entry>,
}

struct Entry {
    /// Requests in flight, from the handler's call until the response body's end.
    busy: usize,
    /// When the last request ended (or the connection opened).
    idle_since: Instant,
    /// Tells the connection to close once its current exchange ends.
    evict: Option<oneshot::Sender<()>>,
}

/// What a newly accepted connection gets.
pub(crate) enum Admission {
    /// Serve it; the receiver fires when a newer connection takes its place.
    Admitted(Ticket, oneshot::Receiver<()>),
    /// No connection can give up its place now.
    Full,
}

impl Connections {
    pub(crate) fn new(max: usize, metrics: Option<Arc<S3Metrics>>) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            table: Mutex::new(Table::default()),
            metrics,
        })
    }

    /// Admits a connection, evicting the one idle longest (for at least `min_idle`) if the
    /// cap is reached.
    pub(crate) fn admit(self: &Arc<Self>, min_idle: Duration) -> Admission {
        let mut table = self.table.lock().expect("connection table poisoned");
        if table.open.len() >= self.max {
            let now = Instant::now();
            let idlest = table
                .open
                .iter()
                .filter(|(_, e)| e.busy == 0 && now.duration_since(e.idle_since) >= min_idle)
                .min_by_key(|(_, e)| e.idle_since)
                .map(|(id, _)| *id);
            let Some(idlest) = idlest else {
                return Admission::Full;
            };
            // Gone from the table at once, so the count stays at the cap; its socket closes
            // as soon as its task sees the signal.
            if let Some(evict) = table.open.remove(&idlest).and_then(|mut e| e.evict.take()) {
                let _ = evict.send(());
            }
            if let Some(m) = &self.metrics {
                m.connections_evicted.inc();
                m.connections_open.dec();
            }
            tracing::debug!("connection cap reached; closed the connection idle longest");
        }
        let id = table.next_id;
        table.next_id += 1;
        if let Some(m) = &self.metrics {
            m.connections_open.inc();
        }
        let (evict, evicted) = oneshot::channel();
        table.open.insert(
            id,
            Entry {
                busy: 0,
                idle_since: Instant::now(),
                evict: Some(evict),
            },
        );
        Admission::Admitted(
            Ticket {
                connections: self.clone(),
                id,
            },
            evicted,
        )
    }

    /// How many connections are open (evicted ones no longer count).
    /// Counts a connection refused for want of a place.
    pub(crate) fn refused(&self) {
        if let Some(m) = &self.metrics {
            m.connections_refused.inc();
        }
    }

    #[cfg(test)]
    fn open(&self) -> usize {
        self.table.lock().expect("connection table poisoned").open.len()
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.table.lock().expect("connection table poisoned").open.get_mut(&id) {
            f(entry);
        }
    }
}

/// A connection's place in the table; dropping it frees the place.
pub(crate) struct Ticket {
    connections: Arc<Connections>,
    id: u64,
}

impl Ticket {
    /// Marks a request in flight until the returned guard is dropped.
    pub(crate) fn busy(&self) -> Busy {
        self.connections.update(self.id, |e| e.busy += 1);
        Busy {
            connections: self.connections.clone(),
            id: self.id,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let removed = self
            .connections
            .table
            .lock()
            .expect("connection table poisoned")
            .open
            .remove(&self.id);
        // An evicted connection was counted out when it was evicted.
        if let (Some(_), Some(m)) = (removed, &self.connections.metrics) {
            m.connections_open.dec();
        }
    }
}

/// A request in flight on a connection.
pub(crate) struct Busy {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.connections.update(self.id, |e| {
            e.busy -= 1;
            e.idle_since = Instant::now();
        });
    }
}

/// The S3 answer to a connection refused because every place is busy; written straight to
/// the socket, as no request has been read.
pub(crate) const FULL_RESPONSE: &str = "HTTP/1.1 503 Service Unavailable\r\n\
Content-Type: application/xml\r\n\
Retry-After: 1\r\n\
Connection: close\r\n\
Content-Length: 126\r\n\
\r\n\
<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(connections: &Arc<Connections>) -> (Ticket, oneshot::Receiver<()>) {
        match connections.admit(Duration::ZERO) {
            Admission::Admitted(ticket, evicted) => (ticket, evicted),
            Admission::Full => panic!("refused"),
        }
    }

    #[test]
    fn a_new_connection_takes_the_place_of_the_one_idle_longest() {
        let connections = Connections::new(2, None);
        let (first, mut first_evicted) = admitted(&connections);
        std::thread::sleep(Duration::from_millis(5));
        let (_second, mut second_evicted) = admitted(&connections);
        let (_third, _) = admitted(&connections);
        assert!(first_evicted.try_recv().is_ok(), "the oldest idle one goes");
        assert!(second_evicted.try_recv().is_err());
        assert_eq!(connections.open(), 2);
        drop(first); // its task ends later; the count is not lowered twice
        assert_eq!(connections.open(), 2);
    }

    #[test]
    fn busy_connections_are_never_evicted_and_a_full_table_refuses() {
        let connections = Connections::new(2, None);
        let (first, mut first_evicted) = admitted(&connections);
        let (second, _) = admitted(&connections);
        let busy_first = first.busy();
        let _busy_second = second.busy();
        assert!(matches!(connections.admit(Duration::ZERO), Admission::Full));
        assert!(first_evicted.try_recv().is_err());
        // A request that ended makes its connection the idlest again.
        drop(busy_first);
        let (_third, _) = admitted(&connections);
        assert!(first_evicted.try_recv().is_ok());
    }

    #[test]
    fn a_connection_just_opened_keeps_its_place() {
        let connections = Connections::new(1, None);
        let (_first, mut first_evicted) = admitted(&connections);
        assert!(matches!(connections.admit(Duration::from_secs(60)), Admission::Full));
        assert!(first_evicted.try_recv().is_err());
    }

    #[test]
    fn the_refusal_says_slow_down_with_the_right_length() {
        let (head, body) = FULL_RESPONSE.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{}",
            body.len()
        );
        assert!(body.contains("<Code>SlowDown</Code>"));
    }
}
