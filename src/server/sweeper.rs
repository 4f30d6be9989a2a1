//! The sweeper: the one thread that gives up on upcalls past their deadline, and prints the log's
//! summaries of repeats once they are due.
//!
//! Why a thread of its own? The upcalls a `MSG` causes have nobody waiting for them, so nobody
//! would notice that their time is up. One thread for the whole server, waking ten times a second
//! while an upcall is pending and sleeping while none is, is cheaper and simpler than a timer per
//! upcall.

use std::thread;
use std::time::{Duration, Instant};

use super::pending::Outcome;
use super::shared::Server;
use crate::lock;

/// How often the sweeper looks for upcalls past their deadline, while there are any. An upcall is
/// given up at most this long after its timeout: a tenth of a second is invisible to a person.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// The sweeper thread: every [`SWEEP_INTERVAL`], gives up on upcalls past their deadline, and
/// prints the log's summaries of repeats that are due; until the server stops.
pub(super) fn sweep_expired_upcalls(server: &Server) {
    let timeout = server.shared.config.upcall_timeout;
    while !server.is_stopping() {
        sleep_until_there_is_work(server);
        thread::sleep(SWEEP_INTERVAL);
        let now = Instant::now();
        for peer in server.snapshot() {
            for (id, pending) in peer.take_expired(now) {
                peer.timed_out();
                server.settle(&peer, id, pending, Outcome::TimedOut(timeout));
            }
            for summary in peer.repeats_due(now, false) {
                log!(server, "{summary}");
            }
        }
        let refusals = lock(&server.shared.registry).refusal_summaries_due();
        for summary in refusals {
            log!(server, "{summary}");
        }
    }
}

/// Returns at once while an upcall is pending or a log summary is owed; otherwise sleeps until
/// someone rings the alarm (an upcall filed, a log line skipped, the server stopping).
fn sleep_until_there_is_work(server: &Server) {
    let busy = || {
        server.snapshot().iter().any(|peer| peer.has_work())
            || lock(&server.shared.registry).refusals_owed()
    };
    server
        .shared
        .sweeper
        .sleep_unless(busy, || server.is_stopping());
}
