//! Step 3 of the upcall: upcalls that were sent and wait for their answer, and how each one ends.
//!
//! An upcall ends in exactly one of five ways ([`Outcome`]): it returned, it failed, it timed out,
//! its client left, or it was never sent. Whoever takes a pending upcall out of its client's
//! table *settles* it: the connection thread when the answer comes, the sweeper when its time is
//! up, the disconnection when the client leaves. Taking it out is what makes each upcall end once:
//! whoever comes second finds nothing to take.

use std::fmt;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::log::seconds;

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

    /// Ends this upcall with `outcome`, as `client`'s upcall `id`: whoever waits for it is told.
    /// When nobody waits (an upcall a `MSG` caused), returns how it ended, for the log.
    pub(super) fn settle(self, client: &str, id: u64, outcome: Outcome) -> Option<Ended> {
        let result = CallResult {
            client: client.to_string(),
            outcome,
        };
        match self.reply_to {
            Some(waiter) => {
                // The waiter may have stopped waiting (a console that quit); nothing is lost then.
                let _ = waiter.send(result);
                None
            }
            None => Some(Ended {
                id,
                callback: self.callback,
                result,
            }),
        }
    }
}

/// How an upcall that nobody waited for ended, as the log says it. A value rather than a
/// `String`, so that it is only written out when the log prints it: with the log off
/// (`--quiet`) every `MSG` round trip settles one, and formatting its line for nobody cost about
/// 800 of the server's 9,000 instructions per round trip (callgrind).
pub(super) struct Ended {
    id: u64,
    callback: String,
    result: CallResult,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ended {
            id,
            callback,
            result,
        } = self;
        match &result.outcome {
            Outcome::Returned(value) => {
                write!(f, "{} returned for upcall {id}: {value}", result.client)
            }
            Outcome::Failed(_) => write!(f, "Upcall {id} ({callback}): {result}"),
            _ => write!(f, "Upcall {id} ({callback}) given up: {result}"),
        }
    }
}
