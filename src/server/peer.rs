//! The server's record of one client (a *peer*), and step 2 of the upcall: filing an upcall and
//! sending it.
//!
//! Every thread of the server sees a client through its [`Peer`]: the client's own connection
//! thread (answering `REGISTER`), another client's thread (passing on a `MSG`), the console
//! (`call`, `broadcast`), the sweeper and the flusher.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc::Sender, Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::ServerConfig;
use super::limits::{self, Noise, Repeats, Verdict, MAX_CALLBACKS};
use super::outbox::{self, Outbox, Sent, Stuck};
use super::pending::{CallResult, NotFiled, Outcome, PendingUpcall};
use crate::error::Error;
use crate::framing::LineReader;
use crate::lock;
use crate::os;
use crate::protocol::{Message, ProtocolError};

/// What a peer needs of the server it belongs to: its settings, its log, the helper threads'
/// bells, and a way to drop this client.
///
/// The server is made of peers (its registry holds them), so this file cannot name the server
/// without the two files naming each other. It names what it needs instead, and the server
/// provides it (`impl Owner for Server`, in shared.rs). The server is the only owner there is:
/// the trait is the shape of the dependency, not a choice of implementations.
pub(super) trait Owner {
    fn config(&self) -> &ServerConfig;
    /// One line in the server's log (`log!`).
    fn log(&self, line: fmt::Arguments<'_>);
    /// Whether the log is on at all: a line nobody prints is not worth judging.
    fn log_is_on(&self) -> bool;
    /// Wakes the sweeper: an upcall waits for its answer, or a log summary is owed.
    fn ring_sweeper(&self);
    /// Tells the flusher that client `number` has lines waiting in its outbox.
    fn note_waiting(&self, number: u64);
    /// Drops `peer` at once: out of the registry, its pending upcalls settled, its socket hung up.
    fn forget(&self, peer: &Peer);
}

/// One connected client, as every thread of the server sees it.
pub(super) struct Peer {
    pub(super) number: u64,
    /// `client-7`: what `WELCOME` told the client, what `list` and the log say.
    pub(super) name: String,
    pub(super) address: SocketAddr,
    /// Lock: guards the lines waiting for this client, in order. Several threads write to one
    /// client, and each line must leave whole and in order. Held to queue a line or take the
    /// queue out; never during a write, never while waiting for an answer (see outbox.rs).
    pub(super) outbox: Mutex<Outbox>,
    /// The socket, shared by the connection thread (reading), the outbox (writing) and
    /// [`Peer::hang_up`]. One file descriptor for all three: each `try_clone` would be one more,
    /// and a process may open only so many.
    socket: Arc<TcpStream>,
    /// Lock: guards the client's callbacks, its pending upcalls and its log repeats. Held for a
    /// few map operations, never across I/O.
    state: Mutex<PeerState>,
    /// An upcall to this client timed out, and it has said nothing since: a laptop that went to
    /// sleep, most likely. Calls to it are still sent, but nobody waits for them again.
    unanswered: AtomicBool,
    max_line: usize,
}

/// What the server remembers about a client between its lines.
#[derive(Default)]
struct PeerState {
    /// The functions this client said the server may call (at most [`MAX_CALLBACKS`]).
    callbacks: BTreeSet<String>,
    /// The id of the last upcall to this client. Ids start at 1 on every connection.
    last_upcall_id: u64,
    /// Upcalls sent and not answered yet, in id order (at most `max_pending`). A `BTreeMap`: a
    /// client has only a few, and finding one among a few costs less than hashing its id.
    pending: BTreeMap<u64, PendingUpcall>,
    /// The connection has ended: no new upcall is filed, so nobody waits for an answer that
    /// cannot come.
    gone: bool,
    repeats: Repeats,
}

impl Peer {
    /// A peer for a freshly accepted connection, with its socket set up for the server's rules.
    pub(super) fn new(
        number: u64,
        address: SocketAddr,
        stream: TcpStream,
        config: &ServerConfig,
    ) -> io::Result<Peer> {
        // TCP_NODELAY: an upcall is one short line, and the client is waiting for it. With Nagle's
        // algorithm on, a small write can sit in the kernel until the previous one is
        // acknowledged, and the other side delays its acknowledgements: tens of milliseconds for
        // a 40-byte line. We write whole lines only, so sending each at once costs nothing.
        stream.set_nodelay(true)?;
        // No write to this socket ever waits: each takes what fits (the rest waits in the
        // outbox), with `os::send_now`. Only the connection thread may wait, for input, and only
        // while it has no deadline to keep (see `SharedSocket`). Where a single write cannot be
        // told not to wait (Windows), the whole socket is non-blocking instead.
        stream.set_nonblocking(!os::BLOCKING_READS)?;
        // A fixed send buffer: writes to a client that stops reading report "would block" after
        // 256 KiB, not after the 4 MiB the kernel would otherwise grow the buffer to.
        os::set_send_buffer(&stream, limits::SEND_BUFFER);
        // A laptop whose lid closed sends nothing more, not even a FIN: the kernel's keepalive
        // probes find out, and the read fails (see limits.rs for the times).
        os::keep_alive(
            &stream,
            limits::KEEPALIVE_IDLE,
            limits::KEEPALIVE_INTERVAL,
            limits::KEEPALIVE_GIVE_UP,
        );
        Ok(Peer {
            number,
            name: format!("client-{number}"),
            address,
            outbox: Mutex::new(Outbox::new(limits::outbox_limit(config.max_line))),
            socket: Arc::new(stream),
            state: Mutex::new(PeerState::default()),
            unanswered: AtomicBool::new(false),
            max_line: config.max_line,
        })
    }

    /// The client closed the connection before it was served: nothing to read but its end.
    pub(super) fn closed_already(&self) -> bool {
        // Look without waiting: a client that connected and says nothing yet is not closed.
        let readable = os::wait_for(&self.socket, os::Interest::Read, Some(Duration::ZERO));
        matches!(readable, Ok(true)) && matches!(self.socket.peek(&mut [0]), Ok(0))
    }

    /// The socket, for `os::wait` (the connection thread and the flusher).
    pub(super) fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// The reading side of the socket, for the connection thread.
    pub(super) fn reader(&self) -> LineReader<SharedSocket> {
        let socket = SharedSocket {
            socket: self.socket.clone(),
            may_wait: false,
            at_line_start: true,
        };
        LineReader::new(socket, self.max_line)
    }

    /// Sends one line. When the client cannot take it (too far behind, or gone), it is dropped at
    /// once: out of the registry, its pending upcalls failed, its socket hung up.
    pub(super) fn send(&self, server: &impl Owner, message: &Message) -> Result<(), Error> {
        let line = self.encode(message)?;
        let sent = outbox::send(&self.outbox, &self.socket, line);
        self.after_send(server, sent)
    }

    /// `ERR <reason>`: the last line was refused, the connection stays.
    pub(super) fn refuse(&self, server: &impl Owner, reason: String) {
        let _ = self.send(server, &Message::Err { reason });
    }

    /// Step 2 of the upcall: files `UPCALL <id> <callback> <argument>` as pending, and sends it.
    /// Does not wait for the answer.
    ///
    /// On success returns the id; the outcome will reach `reply_to` (or the log) exactly once,
    /// from whoever takes the pending entry out: the answer, the sweeper or the disconnection.
    pub(super) fn upcall(
        &self,
        server: &impl Owner,
        callback: &str,
        argument: &str,
        reply_to: Option<Sender<CallResult>>,
    ) -> Result<u64, NotFiled> {
        let reply_to = self.waiter_unless_unanswered(reply_to);
        // Lock order: `outbox` first, then `state`. Holding `outbox` while the id is chosen means
        // ids are queued in the order they were given out: 1, 2, 3 on the wire, never 2 before 1.
        let mut outbox = lock(&self.outbox);
        let (id, line) = match self.file(server, callback, argument, reply_to) {
            Ok(filed) => filed,
            Err(reason) => {
                drop(outbox);
                return Err(self.not_filed(server, reason));
            }
        };
        // Logged before the line leaves, so the log can never show the answer before the call.
        let call = ShownCall(callback, argument);
        note!(server, self, Upcall, "Upcall {id} to {}: {call}", self.name);
        let turn = outbox.take(line);
        drop(outbox);
        // The write itself happens without the lock. A client that cannot take the line is
        // dropped; its pending upcalls, this one included, are then settled as "disconnected".
        let sent = turn.and_then(|turn| outbox::write_turn(&self.outbox, &self.socket, turn));
        let _ = self.after_send(server, sent);
        Ok(id)
    }

    /// Files the upcall as pending under the next id, and encodes its line. The caller holds
    /// `outbox`: if the line cannot be sent, the id goes back before any other upcall can take
    /// the next one, so ids on the wire have no gaps.
    fn file(
        &self,
        server: &impl Owner,
        callback: &str,
        argument: &str,
        reply_to: Option<Sender<CallResult>>,
    ) -> Result<(u64, Vec<u8>), NotFiled> {
        let pending = PendingUpcall::new(callback, server.config().upcall_timeout, reply_to);
        let id = lock(&self.state).file(callback, pending, server.config().max_pending)?;
        server.ring_sweeper(); // it must give up on this one if no answer comes
        let message = Message::Upcall {
            id,
            callback: callback.to_string(),
            argument: argument.to_string(),
        };
        match self.encode(&message) {
            Ok(line) => Ok((id, line)),
            Err(error) => {
                lock(&self.state).unfile(id);
                Err(NotFiled::BadLine(error, self.max_line))
            }
        }
    }

    /// An upcall was not filed: says why, after dropping a client that leaves too many upcalls
    /// unanswered. Such a client is not reading its socket (or not answering at all): it is
    /// behind, and dropped like one.
    fn not_filed(&self, server: &impl Owner, reason: NotFiled) -> NotFiled {
        if reason == NotFiled::TooManyPending {
            let count = server.config().max_pending;
            self.drop_stuck(server, Stuck::Unanswered { count });
        }
        reason
    }

    /// Who waits for an upcall's outcome. A client that let its last upcall time out and has
    /// said nothing since is not waited for again: the waiter is told at once, so that a
    /// broadcast waits for a sleeping laptop once, not every time.
    fn waiter_unless_unanswered(
        &self,
        reply_to: Option<Sender<CallResult>>,
    ) -> Option<Sender<CallResult>> {
        if !self.unanswered.load(Ordering::Relaxed) {
            return reply_to;
        }
        if let Some(waiter) = reply_to {
            let _ = waiter.send(CallResult {
                client: self.name.clone(),
                outcome: Outcome::Unanswered,
            });
        }
        None
    }

    /// An upcall to this client timed out.
    pub(super) fn timed_out(&self) {
        self.unanswered.store(true, Ordering::Relaxed);
    }

    /// The client sent a line: it is awake.
    pub(super) fn heard_from(&self) {
        if self.unanswered.load(Ordering::Relaxed) {
            self.unanswered.store(false, Ordering::Relaxed);
        }
    }

    fn encode(&self, message: &Message) -> Result<Vec<u8>, ProtocolError> {
        let line = message.encode()?;
        if line.len() > self.max_line {
            return Err(ProtocolError::LineTooLong);
        }
        Ok(line.into_bytes())
    }

    fn after_send(&self, server: &impl Owner, sent: Result<Sent, Stuck>) -> Result<(), Error> {
        match sent {
            Ok(Sent::All | Sent::ByAnother) => Ok(()),
            Ok(Sent::SomeWait) => {
                server.note_waiting(self.number);
                Ok(())
            }
            Err(stuck) => {
                self.drop_stuck(server, stuck);
                // To the caller this connection is simply broken, whatever the reason was (the
                // log has it): the same error a failed write would give.
                Err(Error::Io(io::ErrorKind::BrokenPipe.into()))
            }
        }
    }

    /// Drops a client that cannot be written to, at once: out of the registry, its pending
    /// upcalls failed, its socket hung up (its own thread then finds the connection closed).
    /// Only the first reason is logged: after it, every write finds the outbox closed.
    pub(super) fn drop_stuck(&self, server: &impl Owner, stuck: Stuck) {
        if !matches!(stuck, Stuck::Broken(_) | Stuck::Closed) {
            log!(server, "{} {stuck}", self.name);
        }
        server.forget(self);
    }

    /// `REGISTER <callback>`: remembers it, up to [`MAX_CALLBACKS`]. Registering a name twice is
    /// harmless.
    pub(super) fn register(&self, callback: &str) -> Result<(), String> {
        let mut state = lock(&self.state);
        if state.callbacks.len() >= MAX_CALLBACKS && !state.callbacks.contains(callback) {
            return Err(format!(
                "too many callbacks: at most {MAX_CALLBACKS} per client"
            ));
        }
        state.callbacks.insert(callback.to_string());
        Ok(())
    }

    pub(super) fn has_callback(&self, callback: &str) -> bool {
        lock(&self.state).callbacks.contains(callback)
    }

    pub(super) fn callbacks(&self) -> Vec<String> {
        lock(&self.state).callbacks.iter().cloned().collect()
    }

    /// Takes upcall `id` out of the pending ones: whoever does so settles it.
    pub(super) fn take_pending(&self, id: u64) -> Option<PendingUpcall> {
        lock(&self.state).pending.remove(&id)
    }

    /// Takes out every pending upcall past its deadline.
    pub(super) fn take_expired(&self, now: Instant) -> Vec<(u64, PendingUpcall)> {
        let mut state = lock(&self.state);
        let due: Vec<u64> = state
            .pending
            .iter()
            .filter(|(_, pending)| pending.is_due(now))
            .map(|(&id, _)| id)
            .collect();
        due.into_iter()
            .filter_map(|id| Some((id, state.pending.remove(&id)?)))
            .collect()
    }

    /// The connection has ended: no more upcalls are filed, and every pending one is taken out.
    pub(super) fn close(&self) -> Vec<(u64, PendingUpcall)> {
        let mut state = lock(&self.state);
        state.gone = true;
        std::mem::take(&mut state.pending).into_iter().collect()
    }

    /// One log line about this client, of a kind it could cause many of: at most a few a second
    /// are printed, the rest are summarised.
    pub(super) fn note(&self, server: &impl Owner, kind: Noise, line: fmt::Arguments<'_>) {
        if !server.log_is_on() {
            return;
        }
        let verdict = lock(&self.state)
            .repeats
            .judge(&self.name, kind, Instant::now());
        if verdict == Verdict::Skip {
            server.ring_sweeper(); // a summary will be owed
        }
        if let Verdict::Print { summary } = verdict {
            if let Some(summary) = summary {
                log!(server, "{summary}");
            }
            server.log(line);
        }
    }

    /// An upcall waits for its answer, or a log summary is owed: the sweeper has work here.
    pub(super) fn has_work(&self) -> bool {
        let state = lock(&self.state);
        !state.pending.is_empty() || state.repeats.owed()
    }

    /// Summaries of repeats that are due (`all`: the client is leaving, print every count).
    pub(super) fn repeats_due(&self, now: Instant, all: bool) -> Vec<String> {
        lock(&self.state).repeats.due(&self.name, now, all)
    }

    /// "Server full" and the like: says so in the protocol's own words, then closes.
    pub(super) fn turn_away(&self, reason: &str) {
        let refusal = Message::Err {
            reason: reason.to_string(),
        };
        // Best effort: the client may already be gone, and the connection closes either way.
        // A new socket's buffer is empty, so both lines fit.
        for message in [&refusal, &Message::Bye] {
            if let Ok(line) = self.encode(message) {
                let _ = outbox::send(&self.outbox, &self.socket, line);
            }
        }
        self.hang_up();
    }

    /// Closes the connection in both directions and drops whatever still waits for it. The
    /// client's thread, waiting for input, finds the connection closed and ends; nothing else
    /// depends on it waking up (on Windows a `shutdown` does not wake a waiting thread).
    pub(super) fn hang_up(&self) {
        // A thread busy writing to this client sends what was queued first (the `ERR` that says
        // why), then hangs up itself.
        if lock(&self.outbox).hang_up() {
            let _ = self.socket.shutdown(Shutdown::Both);
        }
    }

    /// The connection was hung up (by the server: dropped, kicked, or stopping).
    pub(super) fn is_hung_up(&self) -> bool {
        lock(&self.outbox).is_closed()
    }
}

impl PeerState {
    /// Files an upcall under the next id, if the client can take one.
    fn file(
        &mut self,
        callback: &str,
        pending: PendingUpcall,
        max_pending: usize,
    ) -> Result<u64, NotFiled> {
        if self.gone {
            return Err(NotFiled::Gone);
        }
        if !self.callbacks.contains(callback) {
            return Err(NotFiled::NotRegistered {
                callback: callback.to_string(),
                registered: few_names(&self.callbacks),
            });
        }
        if self.pending.len() >= max_pending {
            return Err(NotFiled::TooManyPending);
        }
        self.last_upcall_id += 1;
        self.pending.insert(self.last_upcall_id, pending);
        Ok(self.last_upcall_id)
    }

    /// Takes back the id just filed: the upcall could not be sent.
    fn unfile(&mut self, id: u64) {
        self.pending.remove(&id);
        self.last_upcall_id = id - 1;
    }
}

/// An upcall as the log shows it: `uppercase("haii")`, or `hostname()` without an argument.
struct ShownCall<'a>(&'a str, &'a str);

impl fmt::Display for ShownCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ShownCall(callback, argument) = self;
        if argument.is_empty() {
            write!(f, "{callback}()")
        } else {
            write!(f, "{callback}({argument:?})")
        }
    }
}

/// `a, b, c` or `a, b, c, d, e and 59 more`: an error line never grows with the number of
/// callbacks a client registered.
fn few_names(names: &BTreeSet<String>) -> String {
    const SHOWN: usize = 5;
    let shown: Vec<&str> = names.iter().take(SHOWN).map(String::as_str).collect();
    match names.len().saturating_sub(SHOWN) {
        0 => shown.join(", "),
        more => format!("{} and {more} more", shown.join(", ")),
    }
}

/// A client's socket as the connection thread reads it: `&TcpStream` reads and writes too (the
/// socket's state is in the kernel), so one descriptor behind an `Arc` serves everyone.
///
/// A read waits inside the kernel for the next line, as a plain blocking server's does, only when
/// nothing has a deadline: the connection says so in `may_wait` (a registered client, between
/// lines), and no line is half-read. Otherwise it returns "would block" at once, and the
/// connection waits with `os::wait_for` up to its deadline. The reader only reads once it has
/// used every byte read before, so a line is half-read exactly when the last byte read was not a
/// newline: a client that sends a line a byte at a time never gets a read that waits unbounded.
pub(super) struct SharedSocket {
    socket: Arc<TcpStream>,
    /// Set by the connection before each line: it has no deadline to keep.
    pub(super) may_wait: bool,
    /// The last byte read was a newline (or nothing was read yet).
    at_line_start: bool,
}

impl Read for SharedSocket {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let wait = self.may_wait && self.at_line_start;
        let read = os::receive(&self.socket, buffer, wait)?;
        if read > 0 {
            self.at_line_start = buffer[read - 1] == b'\n';
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_a_few_callbacks_and_counts_the_rest() {
        let mut names = BTreeSet::new();
        assert_eq!(few_names(&names), "");
        names.extend(["a", "b", "c"].map(String::from));
        assert_eq!(few_names(&names), "a, b, c");
        names.extend((0..61).map(|n| format!("n{n:02}")));
        assert_eq!(few_names(&names), "a, b, c, n00, n01 and 59 more");
    }
}
