//! A client's outbox: the lines on their way to one client, so that no thread ever waits for a
//! client that stopped reading.
//!
//! # The problem
//!
//! Writing to a TCP socket puts bytes in the kernel's send buffer, and returns at once while there
//! is room. A client that stops reading (a `clientcall` suspended with Ctrl-Z, a laptop whose lid
//! closed, a script that only writes) lets its buffers fill, and from then on a blocking write to
//! it *waits*. The thread that writes is rarely that client's own: it is another client's thread
//! passing on a `MSG`, or the console broadcasting. One stuck student would stall everyone who
//! talks to them; three hundred would stall the class.
//!
//! # The answer
//!
//! The server's writes are *non-blocking* ([`os::send_now`](crate::os::send_now)): a write takes
//! what fits in the kernel's buffer and returns at once, never waiting for room. Every line for a client goes through its outbox:
//!
//! 1. If nothing is waiting, the line is written at once. Almost always the whole line fits and
//!    this is all that happens.
//! 2. Whatever did not fit waits here, and so does every later line, in order. The writer goes on
//!    with its own work at once.
//! 3. The server's flusher thread (`flusher.rs`) waits until the socket has room again and sends
//!    what waits.
//! 4. A client that falls too far behind (more than [`outbox_limit`](super::limits::outbox_limit)
//!    bytes waiting here), or that leaves a line unsent for the write timeout, is dropped: the
//!    same rule as Redis's `client-output-buffer-limit`. The deadline is per line, so a client
//!    that reads one byte now and then cannot hold a line for ever.
//!
//! The outbox's lock is never held during a write, not even a non-blocking one: a writer takes the
//! waiting lines out, writes them without the lock, and puts back what the socket did not take.
//! While one thread writes, others only add to the queue, so nobody ever waits for a socket, nor
//! for a lock that someone holds across a socket call.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lock;
use crate::log::seconds;
use crate::os;

/// The lines waiting for one client. Empty (and allocating nothing) for a client that keeps up.
#[derive(Default)]
pub(super) struct Outbox {
    queue: VecDeque<Waiting>,
    /// Bytes not yet written: those in `queue` and those a writer has taken out.
    waiting_bytes: usize,
    limit: usize,
    /// A thread is writing this client's lines (without the lock): others only queue.
    writing: bool,
    /// The client was dropped: nothing more is written or queued.
    closed: bool,
    /// The client is being dropped while a thread writes to it: that writer finishes sending
    /// what was queued before (the `ERR` that says why, say), then hangs up.
    closing: bool,
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
    /// The client was dropped already, for one of the reasons above or by the operator.
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

/// Who writes a line handed to the outbox ([`Outbox::take`]).
pub(super) enum Turn {
    /// The caller, at once: nothing waits before it.
    WriteNow(Vec<u8>),
    /// The caller, after the lines that wait before it.
    WriteWaiting,
    /// Another thread, which is writing to this client right now.
    ByAnother,
}

/// What became of the lines a writer tried to send.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sent {
    /// Everything is on the wire (in the kernel's buffer).
    All,
    /// Lines wait: the socket is full. The flusher must know about this client.
    SomeWait,
    /// Another thread is writing to this client right now; it sends this line too.
    ByAnother,
}

impl Outbox {
    pub(super) fn new(limit: usize) -> Outbox {
        Outbox {
            limit,
            ..Outbox::default()
        }
    }

    /// Adds a line at the end of the queue, unless the client has fallen too far behind.
    fn add(&mut self, line: Vec<u8>) -> Result<(), Stuck> {
        if self.closed || self.closing {
            return Err(Stuck::Closed);
        }
        let bytes = self.waiting_bytes + line.len();
        // A client that keeps up has nothing waiting: any one line is always accepted.
        if bytes > self.limit && self.waiting_bytes > 0 {
            return Err(Stuck::Behind {
                bytes,
                limit: self.limit,
            });
        }
        self.waiting_bytes = bytes;
        self.queue.push_back(Waiting {
            line,
            written: 0,
            since: Instant::now(),
        });
        Ok(())
    }

    /// Takes `line` for sending: when nothing waits and nobody writes (almost always), the caller
    /// becomes the writer and gets the line back to write at once ([`write_now`]), with no queue
    /// at all; otherwise the line is queued, and the caller writes what waits
    /// ([`write_waiting`]) unless another thread is at it. Closes the outbox on an error.
    pub(super) fn take(&mut self, line: Vec<u8>) -> Result<Turn, Stuck> {
        if self.closed || self.closing {
            return Err(Stuck::Closed);
        }
        if !self.writing && self.queue.is_empty() {
            self.writing = true;
            return Ok(Turn::WriteNow(line));
        }
        if let Err(stuck) = self.add(line) {
            self.close();
            return Err(stuck);
        }
        if self.writing {
            return Ok(Turn::ByAnother);
        }
        self.writing = true;
        Ok(Turn::WriteWaiting)
    }

    /// Drops everything: the client is being dropped.
    pub(super) fn close(&mut self) {
        self.closed = true;
        self.queue = VecDeque::new();
        self.waiting_bytes = 0;
    }

    /// The connection is hung up, or will be as soon as the current writer is done.
    pub(super) fn is_closed(&self) -> bool {
        self.closed || self.closing
    }

    /// Asks for the connection to be hung up: true if the caller should shut the socket down
    /// now; false if a writer is busy and will do it once its lines are out.
    pub(super) fn hang_up(&mut self) -> bool {
        if self.writing && !self.closed {
            self.closing = true;
            return false;
        }
        self.close();
        true
    }

    /// Nothing waits and nobody is writing (or the client was dropped).
    pub(super) fn is_idle(&self) -> bool {
        self.closed || (!self.writing && self.queue.is_empty())
    }

    /// The oldest line has waited longer than `timeout`.
    pub(super) fn overdue(&self, timeout: Duration, now: Instant) -> bool {
        self.queue
            .front()
            .is_some_and(|oldest| now.saturating_duration_since(oldest.since) > timeout)
    }
}

/// Sends `line` to the client behind `socket`: now if it can, otherwise it waits in the outbox.
/// Never waits. An error means the client must be dropped; the outbox is closed from then on.
pub(super) fn send(
    outbox: &Mutex<Outbox>,
    socket: &TcpStream,
    line: Vec<u8>,
) -> Result<Sent, Stuck> {
    let turn = lock(outbox).take(line)?;
    write_turn(outbox, socket, turn)
}

/// Does what [`Outbox::take`] said; the lock is not held.
pub(super) fn write_turn(
    outbox: &Mutex<Outbox>,
    socket: &TcpStream,
    turn: Turn,
) -> Result<Sent, Stuck> {
    match turn {
        Turn::WriteNow(line) => write_now(outbox, socket, line),
        Turn::WriteWaiting => write_waiting(outbox, socket),
        Turn::ByAnother => Ok(Sent::ByAnother),
    }
}

/// The fast path: writes one line that nothing waits before, without queueing it. What the
/// socket does not take becomes the head of the queue.
fn write_now(outbox: &Mutex<Outbox>, socket: &TcpStream, line: Vec<u8>) -> Result<Sent, Stuck> {
    let written = write_bytes(socket, &line);
    let mut guard = lock(outbox);
    if let Err(error) = written.result {
        guard.close();
        return Err(Stuck::Broken(error));
    }
    if written.full {
        guard.waiting_bytes += line.len() - written.bytes;
        guard.queue.push_front(Waiting {
            line,
            written: written.bytes,
            since: Instant::now(),
        });
    }
    if !written.full && !guard.queue.is_empty() {
        // Lines were queued while we wrote: send them too, in this same turn.
        drop(guard);
        return write_waiting(outbox, socket);
    }
    finish_turn(
        guard,
        socket,
        if written.full {
            Sent::SomeWait
        } else {
            Sent::All
        },
    )
}

/// Ends a writer's turn (the lock is held): clears `writing`, and hangs up if the client was
/// dropped meanwhile.
fn finish_turn(
    mut outbox: std::sync::MutexGuard<'_, Outbox>,
    socket: &TcpStream,
    done: Sent,
) -> Result<Sent, Stuck> {
    outbox.writing = false;
    if outbox.closing {
        // The client was dropped while we wrote: what could be sent is sent; hang up.
        outbox.close();
        drop(outbox);
        let _ = socket.shutdown(std::net::Shutdown::Both);
        return Err(Stuck::Closed);
    }
    Ok(done)
}

/// Writes what waits in the outbox as far as the socket takes it, without holding the outbox's
/// lock while writing. The caller has set `writing`; this clears it.
pub(super) fn write_waiting(outbox: &Mutex<Outbox>, socket: &TcpStream) -> Result<Sent, Stuck> {
    loop {
        // Lock: take the waiting lines out; other threads may queue more meanwhile.
        let mut taken = std::mem::take(&mut lock(outbox).queue);
        let written = write_lines(socket, &mut taken);
        let mut outbox = lock(outbox);
        outbox.waiting_bytes = outbox.waiting_bytes.saturating_sub(written.bytes);
        // What the socket did not take goes back in front of what was queued meanwhile.
        let queued_meanwhile = std::mem::replace(&mut outbox.queue, taken);
        outbox.queue.extend(queued_meanwhile);
        if let Err(error) = written.result {
            outbox.close();
            return Err(Stuck::Broken(error));
        }
        let done = if written.full {
            Sent::SomeWait
        } else if outbox.queue.is_empty() {
            // A client that caught up gives its queue's memory back.
            outbox.queue = VecDeque::new();
            Sent::All
        } else {
            continue; // lines were queued while we wrote: send them too, in this same turn
        };
        return finish_turn(outbox, socket, done);
    }
}

/// What one pass of writes did.
struct Written {
    bytes: usize,
    /// The socket took less than offered: it is full for now.
    full: bool,
    result: io::Result<()>,
}

/// Writes lines from the front of `lines` until they are all written or the socket is full;
/// fully written lines are removed.
fn write_lines(socket: &TcpStream, lines: &mut VecDeque<Waiting>) -> Written {
    let mut total = Written {
        bytes: 0,
        full: false,
        result: Ok(()),
    };
    while let Some(oldest) = lines.front_mut() {
        let written = write_bytes(socket, &oldest.line[oldest.written..]);
        total.bytes += written.bytes;
        oldest.written += written.bytes;
        if written.result.is_err() || written.full {
            total.full = written.full;
            total.result = written.result;
            break;
        }
        lines.pop_front();
    }
    total
}

/// Writes `bytes` until they are all written or the socket is full (`os::send_now`: never waits).
fn write_bytes(socket: &TcpStream, bytes: &[u8]) -> Written {
    let mut written = Written {
        bytes: 0,
        full: false,
        result: Ok(()),
    };
    while written.bytes < bytes.len() {
        match os::send_now(socket, &bytes[written.bytes..]) {
            Ok(0) => {
                written.result = Err(io::ErrorKind::WriteZero.into());
                break;
            }
            Ok(count) => written.bytes += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                written.full = true;
                break;
            }
            Err(error) => {
                written.result = Err(error);
                break;
            }
        }
    }
    written
}

/// Marks the outbox as being written by the caller, unless another thread is at it (or it is
/// closed): true if the caller may now call [`write_waiting`].
pub(super) fn claim(outbox: &Mutex<Outbox>) -> bool {
    let mut outbox = lock(outbox);
    if outbox.writing || outbox.closed || outbox.queue.is_empty() {
        return false;
    }
    outbox.writing = true;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair on loopback: the outbox writes to `ours`, the test reads (or not) `theirs`.
    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let theirs = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (ours, theirs)
    }

    #[test]
    fn a_reader_that_keeps_up_never_queues_anything() {
        let (ours, mut theirs) = pair();
        let outbox = Mutex::new(Outbox::new(1000));
        assert_eq!(send(&outbox, &ours, b"BYE\n".to_vec()).unwrap(), Sent::All);
        let mut got = [0; 4];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"BYE\n");
        assert!(lock(&outbox).queue.is_empty());
    }

    #[test]
    fn a_reader_that_stops_is_queued_for_then_dropped_and_nobody_waits() {
        let (ours, theirs) = pair();
        let outbox = Mutex::new(Outbox::new(64 * 1024));
        let line = vec![b'x'; 16 * 1024];
        let mut results = Vec::new();
        // Nobody reads `theirs`: the kernel's buffers fill, then the outbox, then it gives up.
        let stuck = loop {
            let started = Instant::now();
            match send(&outbox, &ours, line.clone()) {
                Ok(sent) => results.push(sent),
                Err(stuck) => break stuck,
            }
            // Not one send waited for the socket.
            assert!(started.elapsed() < Duration::from_millis(500));
            assert!(results.len() < 100_000, "never gave up");
        };
        assert!(matches!(stuck, Stuck::Behind { .. }), "{stuck}");
        assert!(results.contains(&Sent::SomeWait));
        assert!(matches!(
            send(&outbox, &ours, b"x\n".to_vec()),
            Err(Stuck::Closed)
        ));
        drop(theirs);
    }

    #[test]
    fn lines_queued_while_another_thread_writes_leave_in_order() {
        let (ours, mut theirs) = pair();
        let outbox = Mutex::new(Outbox::new(1 << 20));
        // Another thread "is writing": this line only queues.
        lock(&outbox).writing = true;
        assert_eq!(
            send(&outbox, &ours, b"MSG 1\n".to_vec()).unwrap(),
            Sent::ByAnother
        );
        lock(&outbox).writing = false;
        assert!(claim(&outbox));
        assert_eq!(write_waiting(&outbox, &ours).unwrap(), Sent::All);
        assert_eq!(
            send(&outbox, &ours, b"MSG 2\n".to_vec()).unwrap(),
            Sent::All
        );
        let mut got = [0; 12];
        theirs.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"MSG 1\nMSG 2\n");
    }

    #[test]
    fn a_line_that_waits_too_long_is_overdue() {
        let (ours, _theirs) = pair();
        let outbox = Mutex::new(Outbox::new(usize::MAX));
        while send(&outbox, &ours, vec![b'y'; 64 * 1024]).unwrap() == Sent::All {}
        let now = Instant::now();
        assert!(!lock(&outbox).overdue(Duration::from_secs(5), now));
        assert!(lock(&outbox).overdue(Duration::from_millis(20), now + Duration::from_millis(30)));
        assert_eq!(
            Stuck::TooSlow {
                timeout: Duration::from_millis(20)
            }
            .to_string(),
            "stopped reading: dropped after the 20 ms write timeout"
        );
    }
}
