//! The flusher: the one thread that sends what waits in the outboxes of clients that fell behind.
//!
//! It sleeps while no outbox has anything waiting (an idle server does not wake up for it). When
//! some do, it waits for any of their sockets to have room (one `poll` over all of them), writes
//! what fits to those that do, and drops a client whose oldest line has waited longer than the
//! write timeout. It never waits for one particular client: three hundred stuck clients cost it
//! one `poll` over three hundred sockets.

use std::time::{Duration, Instant};

use super::outbox::{self, Sent, Stuck};
use super::peer::Peer;
use super::shared::Server;
use crate::lock;
use crate::os::{self, Interest};

/// How long one `poll` waits before the flusher looks again at which clients wait and whose
/// lines are overdue. A client that joins the waiting ones is seen at most this much later.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// The flusher thread's loop, until the server stops.
pub(super) fn flush_outboxes(server: &Server) {
    let write_timeout = server.shared.config.write_timeout;
    while !server.is_stopping() {
        let numbers = server.shared.waiting.wait_for_any(|| server.is_stopping());
        let now = Instant::now();
        let mut peers = Vec::new();
        for number in numbers {
            let Some(peer) = server.find_number(number) else {
                server.shared.waiting.remove(number); // it left
                continue;
            };
            if lock(&peer.outbox).overdue(write_timeout, now) {
                server.shared.waiting.remove(number);
                peer.drop_stuck(
                    server,
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
                done_waiting_if_idle(server, peer);
                continue;
            }
            match outbox::write_waiting(&peer.outbox, peer.socket()) {
                Ok(Sent::All) => done_waiting_if_idle(server, peer),
                Ok(Sent::SomeWait | Sent::ByAnother) => {}
                Err(stuck) => {
                    server.shared.waiting.remove(peer.number);
                    peer.drop_stuck(server, stuck);
                }
            }
        }
    }
}

/// The flusher forgets `peer` if nothing waits in its outbox. The outbox stays locked while
/// the number is removed, so a line queued right now cannot be forgotten: its writer notes
/// the client again only after this (lock order: `outbox`, then the waiting set).
fn done_waiting_if_idle(server: &Server, peer: &Peer) {
    let outbox = lock(&peer.outbox);
    if outbox.is_idle() {
        server.shared.waiting.remove(peer.number);
    }
}
