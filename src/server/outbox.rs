//! A client's outbox: the lines on their way to one client, so that no thread ever waits for a
//! client that stopped reading.
//!
//! # The problem
//!
//! Writing to a TCP socket puts bytes in the kernel's send buffer, and returns at once while there
//! is room. A client that stops reading (a `clientcall` suspended with Ctrl-Z, a script that only
//! writes) lets its buffers fill, and from then on a write to it *blocks*. The thread that writes
//! is rarely that client's own: it is another client's thread passing on a `MSG`, or the console
//! broadcasting. One stuck student would stall everyone who talks to them.
//!
//! # The answer
//!
//! Every line for a client goes through its outbox:
//!
//! 1. If nothing is waiting, the line is written at once, with one `write` that the socket's send
//!    timeout ([`SEND_TRY`](super::limits::SEND_TRY), a few milliseconds) bounds. Almost always
//!    the whole line fits and this is all that happens.
//! 2. Whatever did not fit waits here, and so does every later line, in order. The writer goes on
//!    with its own work.
//! 3. The server's `flusher` thread comes back every few milliseconds and sends what waits, as the
//!    client makes room by reading.
//! 4. A client that falls too far behind (more than [`outbox_limit`](super::limits::outbox_limit)
//!    bytes waiting here), or that leaves a line unsent for the write timeout, is dropped: the
//!    same rule as Redis's `client-output-buffer-limit`. The deadline is per line, so a client
//!    that reads one byte now and then cannot hold a line for ever.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::Server;
use crate::lock;
use crate::log::seconds;

/// How often the flusher sends what waits in outboxes. A client that had fallen behind gets its
/// lines at most this much later than it makes room for them.
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);

/// The lines waiting for one client. Empty (and allocating nothing) for a client that keeps up.
pub(super) struct Outbox {
    socket: Arc<TcpStream>,
    queue: VecDeque<Waiting>,
    /// Bytes in `queue` not yet written.
    waiting_bytes: usize,
    limit: usize,
    /// The client was dropped: nothing more is written or queued.
    closed: bool,
}

/// One line, partly written perhaps.
struct Waiting {
    line: Vec<u8>,
    written: usize,
    since: Instant,
}

/// Why a client cannot be written to any more: it is dropped.
#[derive(Debug)]
pub(super) enum Stuck {
    /// More than the outbox limit is waiting.
    Behind { bytes: usize, limit: usize },
    /// A line waited for longer than the write timeout.
    TooSlow { timeout: Duration },
    /// Too many upcalls are unanswered: the client is not reading, or not answering.
    Unanswered { count: usize },
    /// The socket failed (the client is already gone).
    Broken(io::Error),
    /// The client was dropped already, for one of the reasons above.
    Closed,
}

impl fmt::Display for Stuck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stuck::Behind { bytes, limit } => write!(
                f,
                "stopped reading: dropped with {bytes} bytes waiting for it (the limit is {limit})"
            ),
            Stuck::TooSlow { timeout } => write!(
                f,
                "stopped reading: dropped after the {} write timeout",
                seconds(*timeout)
            ),
            Stuck::Unanswered { count } => write!(
                f,
                "left {count} upcalls unanswered: dropped (is it reading its socket?)"
            ),
            Stuck::Broken(error) => write!(f, "cannot be written to: {error}"),
            Stuck::Closed => write!(f, "was dropped"),
        }
    }
}

/// What became of a line handed to the outbox.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pushed {
    /// On the wire (in the kernel's buffer).
    Sent,
    /// Waiting here; the outbox was empty before, so the flusher must be told about this client.
    NowWaiting,
    /// Waiting here, behind other lines the flusher already knows about.
    Queued,
}

/// What a flush achieved.
#[derive(Debug, PartialEq, Eq)]
enum Flushed {
    /// Nothing waits any more.
    AllSent,
    /// The socket filled up again: the rest waits for the next visit.
    StillWaiting,
}

impl Outbox {
    pub(super) fn new(socket: Arc<TcpStream>, limit: usize) -> Outbox {
        Outbox {
            socket,
            queue: VecDeque::new(),
            waiting_bytes: 0,
            limit,
            closed: false,
        }
    }

    /// Sends `line` now if nothing waits before it and the socket has room; otherwise queues it.
    /// An error means the client must be dropped; the outbox is closed from then on.
    pub(super) fn push(&mut self, line: Vec<u8>) -> Result<Pushed, Stuck> {
        let pushed = self.try_push(line);
        self.close_on_error(pushed)
    }

    /// Writes what waits, as far as the socket takes it.
    fn flush(&mut self, write_timeout: Duration) -> Result<Flushed, Stuck> {
        let flushed = self.try_flush(write_timeout);
        self.close_on_error(flushed)
    }

    fn close_on_error<T>(&mut self, result: Result<T, Stuck>) -> Result<T, Stuck> {
        if result.is_err() {
            self.closed = true;
            self.queue = VecDeque::new();
            self.waiting_bytes = 0;
        }
        result
    }

    fn try_push(&mut self, line: Vec<u8>) -> Result<Pushed, Stuck> {
        if self.closed {
            return Err(Stuck::Closed);
        }
        let written = if self.queue.is_empty() {
            write_once(&self.socket, &line)?
        } else {
            0
        };
        if written == line.len() {
            return Ok(Pushed::Sent);
        }
        let bytes = self.waiting_bytes + line.len() - written;
        if bytes > self.limit {
            return Err(Stuck::Behind {
                bytes,
                limit: self.limit,
            });
        }
        let pushed = if self.queue.is_empty() {
            Pushed::NowWaiting
        } else {
            Pushed::Queued
        };
        self.waiting_bytes = bytes;
        self.queue.push_back(Waiting {
            line,
            written,
            since: Instant::now(),
        });
        Ok(pushed)
    }

    fn try_flush(&mut self, write_timeout: Duration) -> Result<Flushed, Stuck> {
        if self.closed {
            return Err(Stuck::Closed);
        }
        while let Some(oldest) = self.queue.front_mut() {
            if oldest.since.elapsed() > write_timeout {
                return Err(Stuck::TooSlow {
                    timeout: write_timeout,
                });
            }
            let written = write_once(&self.socket, &oldest.line[oldest.written..])?;
            oldest.written += written;
            self.waiting_bytes -= written;
            if oldest.written < oldest.line.len() {
                return Ok(Flushed::StillWaiting); // the socket is full again
            }
            self.queue.pop_front();
        }
        // A client that caught up gives its queue's memory back.
        self.queue = VecDeque::new();
        Ok(Flushed::AllSent)
    }
}

/// One `write`, bounded by the socket's send timeout: the number of bytes the kernel took.
fn write_once(socket: &TcpStream, bytes: &[u8]) -> Result<usize, Stuck> {
    loop {
        match (&*socket).write(bytes) {
            Ok(written) => return Ok(written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            // The send timeout passed with the socket full: nothing was written.
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(0)
            }
            Err(error) => return Err(Stuck::Broken(error)),
        }
    }
}

impl Server {
    /// Tells the flusher that client `number` has lines waiting.
    pub(super) fn note_waiting(&self, number: u64) {
        lock(&self.shared.waiting).insert(number);
    }

    /// The flusher thread: every [`FLUSH_INTERVAL`], sends what waits in the outboxes of the
    /// clients that fell behind, and drops those that fell too far behind.
    ///
    /// One thread for the whole server, and it visits only the clients that have something
    /// waiting; each visit is one write bounded by the send timeout. It is the only thread that
    /// ever waits on a slow client's socket.
    pub(super) fn flush_outboxes(&self) {
        let write_timeout = self.shared.config.write_timeout;
        while !self.is_stopping() {
            thread::sleep(FLUSH_INTERVAL);
            let numbers: BTreeSet<u64> = std::mem::take(&mut *lock(&self.shared.waiting));
            for number in numbers {
                let Some(peer) = lock(&self.shared.registry).peers.get(&number).cloned() else {
                    continue; // it left
                };
                let flushed = lock(&peer.outbox).flush(write_timeout);
                match flushed {
                    Ok(Flushed::AllSent) => {}
                    Ok(Flushed::StillWaiting) => self.note_waiting(number),
                    Err(stuck) => peer.drop_stuck(self, stuck),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair on loopback: the outbox writes to `ours`, the test reads (or not) `theirs`.
    fn pair() -> (Arc<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let theirs = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_write_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        (Arc::new(ours), theirs)
    }

    #[test]
    fn a_reader_that_keeps_up_never_queues_anything() {
        let (ours, mut theirs) = pair();
        let mut outbox = Outbox::new(ours, 1000);
        assert_eq!(outbox.push(b"BYE\n".to_vec()).unwrap(), Pushed::Sent);
        let mut got = [0; 4];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"BYE\n");
        assert!(outbox.queue.is_empty());
    }

    #[test]
    fn a_reader_that_stops_is_queued_for_then_dropped_and_nobody_waits_long() {
        let (ours, theirs) = pair();
        let mut outbox = Outbox::new(ours, 64 * 1024);
        let line = vec![b'x'; 16 * 1024];
        let started = Instant::now();
        let mut results = Vec::new();
        // Nobody reads `theirs`: the kernel's buffers fill, then the outbox, then it gives up.
        let stuck = loop {
            match outbox.push(line.clone()) {
                Ok(pushed) => results.push(pushed),
                Err(stuck) => break stuck,
            }
            assert!(results.len() < 100_000, "never gave up");
        };
        assert!(matches!(stuck, Stuck::Behind { .. }), "{stuck}");
        assert!(results.contains(&Pushed::NowWaiting));
        // Each push waited at most one send timeout, and only until the first one queued.
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(theirs);
    }

    #[test]
    fn a_line_that_waits_too_long_drops_the_client() {
        let (ours, _theirs) = pair();
        let mut outbox = Outbox::new(ours, usize::MAX);
        while outbox.push(vec![b'y'; 64 * 1024]).unwrap() == Pushed::Sent {}
        thread::sleep(Duration::from_millis(30));
        let stuck = outbox.flush(Duration::from_millis(20)).unwrap_err();
        assert_eq!(
            stuck.to_string(),
            "stopped reading: dropped after the 20 ms write timeout"
        );
    }
}
