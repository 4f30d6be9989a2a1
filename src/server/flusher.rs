//! The flusher: the one thread that sends what waits in the outboxes of clients that fell behind.
//!
//! It sleeps while no outbox has anything waiting (an idle server does not wake up for it). When
//! some do, it waits for any of their sockets to have room (one `poll` over all of them), writes
//! what fits to those that do, and drops a client whose oldest line has waited longer than the
//! write timeout. It never waits for one particular client: three hundred stuck clients cost it
//! one `poll` over three hundred sockets.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::outbox::{self, Sent, Stuck};
use super::peer::Peer;
use super::Server;
use crate::lock;
use crate::os::{self, Interest};

/// How long one `poll` waits before the flusher looks again at which clients wait and whose
/// lines are overdue. A client that joins the waiting ones is seen at most this much later.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The clients whose outbox holds lines, for the flusher.
#[derive(Default)]
pub(super) struct Waiting {
    /// Lock: guards the set of client numbers. Held for one insert, or to copy the set out;
    /// never together with another lock.
    numbers: Mutex<BTreeSet<u64>>,
    /// Wakes the flusher when the set stops being empty (or the server stops).
    not_empty: Condvar,
}

impl Server {
    /// Tells the flusher that client `number` has lines waiting.
    pub(super) fn note_waiting(&self, number: u64) {
        let waiting = &self.shared.waiting;
        let was_empty = {
            let mut numbers = lock(&waiting.numbers);
            let was_empty = numbers.is_empty();
            numbers.insert(number);
            was_empty
        };
        if was_empty {
            waiting.not_empty.notify_one();
        }
    }

    /// Wakes the flusher so that it sees the server stopping.
    pub(super) fn wake_flusher(&self) {
        self.shared.waiting.not_empty.notify_all();
    }

    /// The flusher thread's loop, until the server stops.
    pub(super) fn flush_outboxes(&self) {
        let write_timeout = self.shared.config.write_timeout;
        while !self.is_stopping() {
            let numbers = self.clients_waiting();
            let now = Instant::now();
            let mut peers = Vec::new();
            for number in numbers {
                let Some(peer) = self.find_number(number) else {
                    self.done_waiting(number); // it left
                    continue;
                };
                if lock(&peer.outbox).overdue(write_timeout, now) {
                    self.done_waiting(number);
                    peer.drop_stuck(
                        self,
                        Stuck::TooSlow {
                            timeout: write_timeout,
                        },
                    );
                    continue;
                }
                peers.push(peer);
            }
            if peers.is_empty() {
                continue;
            }
            let sockets: Vec<_> = peers
                .iter()
                .map(|peer| (peer.socket(), Interest::Write))
                .collect();
            let Ok(ready) = os::wait(&sockets, Some(POLL_INTERVAL)) else {
                std::thread::sleep(POLL_INTERVAL);
                continue;
            };
            for (peer, ready) in peers.iter().zip(ready) {
                if !ready {
                    continue; // still full
                }
                if !outbox::claim(&peer.outbox) {
                    // Nothing left, or another thread is writing to it right now (and tells us
                    // again if lines still wait after that).
                    self.done_waiting_if_idle(peer);
                    continue;
                }
                match outbox::write_waiting(&peer.outbox, peer.socket()) {
                    Ok(Sent::All) => self.done_waiting_if_idle(peer),
                    Ok(Sent::SomeWait | Sent::ByAnother) => {}
                    Err(stuck) => {
                        self.done_waiting(peer.number);
                        peer.drop_stuck(self, stuck);
                    }
                }
            }
        }
    }

    /// The clients with lines waiting; sleeps while there are none.
    fn clients_waiting(&self) -> Vec<u64> {
        let waiting = &self.shared.waiting;
        let mut numbers = lock(&waiting.numbers);
        while numbers.is_empty() && !self.is_stopping() {
            numbers = waiting
                .not_empty
                .wait(numbers)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        numbers.iter().copied().collect()
    }

    /// Client `number` is gone: the flusher forgets it.
    fn done_waiting(&self, number: u64) {
        lock(&self.shared.waiting.numbers).remove(&number);
    }

    /// The flusher forgets `peer` if nothing waits in its outbox. The outbox stays locked while
    /// the number is removed, so a line queued right now cannot be forgotten: its writer notes
    /// the client again only after this (lock order: `outbox`, then the waiting set).
    fn done_waiting_if_idle(&self, peer: &Peer) {
        let outbox = lock(&peer.outbox);
        if outbox.is_idle() {
            self.done_waiting(peer.number);
        }
    }
}
