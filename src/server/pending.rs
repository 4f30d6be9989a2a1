//! Step 3 of the upcall: upcalls that were sent and wait for their answer, and how each one ends.
//!
//! An upcall ends in exactly one of five ways ([`Outcome`]): it returned, it failed, it timed out,
//! its client left, or it was never sent. Whoever takes a pending upcall out of its client's
//! table *settles* it: the connection thread when the answer comes, the sweeper when its time is
//! up, the disconnection when the client leaves. Taking it out is what makes each upcall end once:
//! whoever comes second finds nothing to take.
//!
//! The console's `call` and `broadcast` live here too: they are the code that waits for answers,
//! on the operator's thread, never on a connection thread.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use super::limits::Noise;
use super::peer::Peer;
use super::Server;
use crate::log::seconds;
use crate::protocol::{self, ON_EVENT};

/// How often the sweeper looks for upcalls past their deadline, while there are any. An upcall is
/// given up at most this long after its timeout: a tenth of a second is invisible to a person.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

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
            *crate::lock(&self.rung) = true;
            self.bell.notify_one();
        }
    }
}

/// How an upcall ended, as seen by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `RETURN <id> <value>`.
    Returned(String),
    /// `FAIL <id> <reason>`.
    Failed(String),
    /// No answer within the upcall timeout.
    TimedOut(Duration),
    /// The client went away before answering.
    Disconnected,
    /// The upcall was never sent (no such client, callback not registered, line too long, ...).
    NotSent(String),
    /// Sent, but not waited for: the client let its last upcall time out and has said nothing
    /// since (a laptop asleep, most likely), so waiting again would only hold up the console.
    Unanswered,
}

/// A client's name and an upcall's outcome, printed the way the console shows it:
/// `client-1 returned: HAII`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    pub client: String,
    pub outcome: Outcome,
}

impl fmt::Display for CallResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let client = &self.client;
        match &self.outcome {
            Outcome::Returned(value) => write!(f, "{client} returned: {value}"),
            Outcome::Failed(reason) => write!(f, "{client} failed: {reason}"),
            Outcome::TimedOut(timeout) => {
                write!(f, "{client} did not answer within {}", seconds(*timeout))
            }
            Outcome::Disconnected => write!(f, "{client} disconnected before answering"),
            Outcome::NotSent(reason) => write!(f, "{client} was not called: {reason}"),
            Outcome::Unanswered => write!(
                f,
                "{client} has not answered since an earlier upcall timed out: sent, not waited for"
            ),
        }
    }
}

/// An upcall that was sent and waits for its `RETURN` or `FAIL`.
pub(super) struct PendingUpcall {
    callback: String,
    deadline: Instant,
    /// Who waits for the outcome: the console's `call` or `broadcast`. `None` for the upcalls a
    /// `MSG` causes: nobody waits for those, their outcome is only logged.
    reply_to: Option<Sender<CallResult>>,
}

impl PendingUpcall {
    pub(super) fn new(
        callback: &str,
        timeout: Duration,
        reply_to: Option<Sender<CallResult>>,
    ) -> PendingUpcall {
        PendingUpcall {
            callback: callback.to_string(),
            deadline: Instant::now() + timeout,
            reply_to,
        }
    }

    pub(super) fn is_due(&self, now: Instant) -> bool {
        self.deadline <= now
    }
}

impl Server {
    /// Ends a pending upcall: its answer came, its time ran out, or its client left. Whoever
    /// waits for it is told; when nobody waits (an upcall a `MSG` caused), the log says how it
    /// ended.
    pub(super) fn settle(&self, peer: &Peer, id: u64, pending: PendingUpcall, outcome: Outcome) {
        let result = CallResult {
            client: peer.name.clone(),
            outcome,
        };
        let callback = pending.callback;
        let line = match pending.reply_to {
            Some(waiter) => {
                // The waiter may have stopped waiting (a console that quit); nothing is lost then.
                let _ = waiter.send(result);
                return;
            }
            // With the log off (`--quiet`) there is nothing to format: every `MSG` round trip
            // settles an upcall here, and its line would cost about a thousand instructions to
            // format for nobody.
            None if !self.shared.log.is_on() => return,
            None => match &result.outcome {
                Outcome::Returned(value) => {
                    format!("{} returned for upcall {id}: {value}", peer.name)
                }
                Outcome::Failed(_) => format!("Upcall {id} ({callback}): {result}"),
                _ => format!("Upcall {id} ({callback}) given up: {result}"),
            },
        };
        peer.note(self, Noise::Outcome, format_args!("{line}"));
    }

    /// The sweeper thread: every [`SWEEP_INTERVAL`], gives up on upcalls past their deadline, and
    /// prints the log's summaries of repeats that are due.
    ///
    /// Why a thread of its own? The upcalls a `MSG` causes have nobody waiting for them, so nobody
    /// would notice that their time is up. One thread for the whole server, waking ten times a
    /// second, is cheaper and simpler than a timer per upcall.
    pub(super) fn sweep_expired_upcalls(&self) {
        let timeout = self.shared.config.upcall_timeout;
        while !self.is_stopping() {
            self.sleep_until_there_is_work();
            thread::sleep(SWEEP_INTERVAL);
            let now = Instant::now();
            for peer in self.snapshot() {
                for (id, pending) in peer.take_expired(now) {
                    peer.timed_out();
                    self.settle(&peer, id, pending, Outcome::TimedOut(timeout));
                }
                for summary in peer.repeats_due(now, false) {
                    log!(self, "{summary}");
                }
            }
            let refusals = crate::lock(&self.shared.registry).refusal_summaries_due();
            for summary in refusals {
                log!(self, "{summary}");
            }
        }
    }

    /// Returns at once while an upcall is pending or a log summary is owed; otherwise sleeps until
    /// someone rings the alarm (an upcall filed, a log line skipped, the server stopping).
    fn sleep_until_there_is_work(&self) {
        let alarm = &self.shared.sweeper;
        // Say "asleep" before looking, so that work filed after the look rings the alarm.
        alarm.asleep.store(true, Ordering::SeqCst);
        let busy = self.snapshot().iter().any(|peer| peer.has_work())
            || crate::lock(&self.shared.registry).refusals_owed();
        if !busy {
            let mut rung = crate::lock(&alarm.rung);
            while !*rung && !self.is_stopping() {
                rung = alarm
                    .bell
                    .wait(rung)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            *rung = false;
        }
        alarm.asleep.store(false, Ordering::SeqCst);
    }

    /// The console's `call`: upcalls `callback(argument)` on one client and waits for the outcome.
    ///
    /// This runs on the caller's thread (the console's), never on a connection thread: the answer
    /// is read by the client's own thread, which hands it over through a channel.
    pub fn call(&self, client_name: &str, callback: &str, argument: &str) -> CallResult {
        let Some(peer) = self.find(client_name) else {
            return CallResult {
                client: client_name.to_string(),
                outcome: Outcome::NotSent("no such client (try `list`)".into()),
            };
        };
        let (waiter, answers) = mpsc::channel();
        if let Err(reason) = peer.upcall(self, callback, argument, Some(waiter)) {
            return CallResult {
                client: peer.name.clone(),
                outcome: reason.into(),
            };
        }
        // Every pending upcall ends in exactly one message: its answer, the sweeper's timeout or
        // the disconnection. `recv` fails only if all of them were lost, which would be a bug.
        answers.recv().unwrap_or(CallResult {
            client: peer.name.clone(),
            outcome: Outcome::Disconnected,
        })
    }

    /// The console's `broadcast`: upcalls `on_event` on every client that registered it, all at
    /// once, then collects the outcomes as they come. Every called client appears exactly once in
    /// the result, in client order.
    ///
    /// The upcalls are all sent before any answer is awaited, so a broadcast to a thousand clients
    /// takes one round trip plus the time to write a thousand lines, not a thousand round trips.
    pub fn broadcast(&self, text: &str) -> Vec<CallResult> {
        let argument = protocol::server_says(text);
        let (waiter, answers) = mpsc::channel();
        let mut called = Vec::new();
        let mut results = Vec::new();
        for peer in self.snapshot() {
            if !peer.has_callback(ON_EVENT) {
                continue;
            }
            called.push(peer.name.clone());
            if let Err(reason) = peer.upcall(self, ON_EVENT, &argument, Some(waiter.clone())) {
                results.push(CallResult {
                    client: peer.name.clone(),
                    outcome: reason.into(),
                });
            }
        }
        drop(waiter);
        // Each filed upcall sends exactly one result, and the channel closes when the last
        // pending entry holding a sender is settled.
        results.extend(answers.iter());
        // Answers come in the order clients answered; show them in the order of `list`. A map
        // from name to place keeps the sort O(N log N) for ten thousand clients.
        let place: HashMap<&str, usize> = called
            .iter()
            .enumerate()
            .map(|(place, name)| (name.as_str(), place))
            .collect();
        results.sort_by_key(|result| place.get(result.client.as_str()).copied());
        results
    }
}
