//! What every thread of the server shares: the [`Server`] handle itself, the registry of clients,
//! the settings and the log, and the two bells that wake the helper threads. Also the few things
//! every file above does with a client: find it, forget it when it leaves, settle its upcalls.
//!
//! The public methods of [`Server`] are in `mod.rs`, which is built on this file; the connection
//! threads, the sweeper and the flusher use what is here.
//!
//! An idle server sleeps: the sweeper waits for its [`Alarm`] and the flusher for a client in
//! [`Waiting`], so a server with nothing to do wakes up for nothing.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use super::config::ServerConfig;
use super::peer::{Owner, Peer};
use super::pending::{Outcome, PendingUpcall};
use super::registry::Registry;
use crate::lock;
use crate::log::Log;

/// The server. Cheap to clone: every clone is a handle to the same clients.
#[derive(Clone)]
pub struct Server {
    pub(super) shared: Arc<Shared>,
}

/// What every thread of the server shares.
pub(super) struct Shared {
    pub(super) config: ServerConfig,
    /// Lock: guards which clients exist. Held only to insert, remove or copy out a few `Arc`s;
    /// never while writing to a socket or waiting for an upcall, so one slow client cannot hold
    /// up a connection or a disconnection elsewhere.
    pub(super) registry: Mutex<Registry>,
    /// The clients whose outbox holds lines, for the flusher.
    pub(super) waiting: Waiting,
    /// Wakes the sweeper, which sleeps while no upcall is pending.
    pub(super) sweeper: Alarm,
    /// Set by [`Server::shutdown`]: the accept loop, the sweeper and the flusher stop when they
    /// see it.
    pub(super) stopping: AtomicBool,
    /// Connection threads that have not yet logged their farewell. A thread leaves the registry
    /// first and logs `client-1 disconnected` after, so `quit` waits for this count too: else
    /// "Server stopped." may come first (seen under Wine, where a thread wakes up later).
    pub(super) serving: AtomicUsize,
    /// Where the listener is, once `serve` has started; `shutdown` connects to it to wake `accept`.
    pub(super) local_addr: OnceLock<SocketAddr>,
    pub(super) log: Log,
}

impl Server {
    pub(super) fn is_stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }

    /// Copies the registry's `Arc`s out, so the registry lock is released before anyone writes to
    /// a socket. The copy may include a client that is leaving: writing to it fails harmlessly.
    pub(super) fn snapshot(&self) -> Vec<Arc<Peer>> {
        lock(&self.shared.registry)
            .peers
            .values()
            .cloned()
            .collect()
    }

    /// The client called `client-7`, if it is connected.
    pub(super) fn find(&self, name: &str) -> Option<Arc<Peer>> {
        self.find_number(name.strip_prefix("client-")?.parse::<u64>().ok()?)
    }

    pub(super) fn find_number(&self, number: u64) -> Option<Arc<Peer>> {
        lock(&self.shared.registry).peers.get(&number).cloned()
    }

    /// Takes a peer out of the registry (once; a second call does nothing).
    pub(super) fn leave(&self, peer: &Peer) {
        lock(&self.shared.registry).leave(peer);
    }

    /// Takes a client out of the registry and fails every upcall still waiting on it, at once: a
    /// console `call` to a client that just disconnected must not sit out the whole timeout.
    /// Called by the client's own thread when it ends, and by whoever drops the client before
    /// that (a second call does nothing more).
    pub(super) fn forget(&self, peer: &Peer) {
        self.leave(peer);
        peer.hang_up();
        for (id, pending) in peer.close() {
            self.settle(peer, id, pending, Outcome::Disconnected);
        }
        for summary in peer.repeats_due(Instant::now(), true) {
            log!(self, "{summary}");
        }
    }

    /// Ends a pending upcall: its answer came, its time ran out, or its client left. Whoever
    /// waits for it is told; when nobody waits (an upcall a `MSG` caused), the log says how it
    /// ended.
    pub(super) fn settle(&self, peer: &Peer, id: u64, pending: PendingUpcall, outcome: Outcome) {
        if let Some(ended) = pending.settle(&peer.name, id, outcome) {
            note!(self, peer, Outcome, "{ended}"); // formatted only if the log is on
        }
    }

    /// One line in the log (see `log!`).
    pub(super) fn log(&self, line: fmt::Arguments<'_>) {
        self.shared.log.line(line);
    }
}

/// What a peer needs of the server (see [`Owner`]): the server provides it from what it shares.
impl Owner for Server {
    fn config(&self) -> &ServerConfig {
        &self.shared.config
    }

    fn log(&self, line: fmt::Arguments<'_>) {
        self.shared.log.line(line);
    }

    fn log_is_on(&self) -> bool {
        self.shared.log.is_on()
    }

    fn ring_sweeper(&self) {
        self.shared.sweeper.ring();
    }

    fn note_waiting(&self, number: u64) {
        self.shared.waiting.add(number);
    }

    fn forget(&self, peer: &Peer) {
        Server::forget(self, peer);
    }
}

/// How the sweeper sleeps while there is nothing to sweep, and is woken when there is: an idle
/// server does not wake up ten times a second for nothing.
#[derive(Default)]
pub(super) struct Alarm {
    asleep: AtomicBool,
    /// Lock: guards "something happened while the sweeper slept". Held for a moment by whoever
    /// rings, and by the sweeper to wait.
    rung: Mutex<bool>,
    bell: Condvar,
}

impl Alarm {
    /// Wakes the sweeper if it sleeps. Cheap when it does not: one atomic load.
    pub(super) fn ring(&self) {
        if self.asleep.load(Ordering::SeqCst) {
            *lock(&self.rung) = true;
            self.bell.notify_one();
        }
    }

    /// Returns at once if `busy` says there is work; otherwise sleeps until someone rings (an
    /// upcall filed, a log line skipped) or `stopping` says the server stops.
    pub(super) fn sleep_unless(&self, busy: impl FnOnce() -> bool, stopping: impl Fn() -> bool) {
        // Say "asleep" before looking, so that work filed after the look rings the alarm.
        self.asleep.store(true, Ordering::SeqCst);
        if !busy() {
            let mut rung = lock(&self.rung);
            while !*rung && !stopping() {
                rung = self.bell.wait(rung).unwrap_or_else(PoisonError::into_inner);
            }
            *rung = false;
        }
        self.asleep.store(false, Ordering::SeqCst);
    }
}

/// The clients whose outbox holds lines, for the flusher.
#[derive(Default)]
pub(super) struct Waiting {
    /// Lock: guards the set of client numbers. Held for one insert, or to copy the set out;
    /// never together with another lock but an outbox's (taken first, see flusher.rs).
    numbers: Mutex<BTreeSet<u64>>,
    /// Wakes the flusher when the set stops being empty (or the server stops).
    not_empty: Condvar,
}

impl Waiting {
    /// Client `number` has lines waiting: the flusher visits it.
    pub(super) fn add(&self, number: u64) {
        let was_empty = {
            let mut numbers = lock(&self.numbers);
            let was_empty = numbers.is_empty();
            numbers.insert(number);
            was_empty
        };
        if was_empty {
            self.not_empty.notify_one();
        }
    }

    /// Client `number` needs no visit any more (it left, or nothing waits for it).
    pub(super) fn remove(&self, number: u64) {
        lock(&self.numbers).remove(&number);
    }

    /// The clients with lines waiting; sleeps while there are none, until `stopping` says the
    /// server stops.
    pub(super) fn wait_for_any(&self, stopping: impl Fn() -> bool) -> Vec<u64> {
        let mut numbers = lock(&self.numbers);
        while numbers.is_empty() && !stopping() {
            numbers = self
                .not_empty
                .wait(numbers)
                .unwrap_or_else(PoisonError::into_inner);
        }
        numbers.iter().copied().collect()
    }

    /// Wakes the flusher so that it sees the server stopping.
    pub(super) fn wake(&self) {
        self.not_empty.notify_all();
    }
}
