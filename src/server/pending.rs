//! Step 3 of the upcall: upcalls that were sent and wait for their answer, and how each one ends.
//!
//! An upcall ends in exactly one of five ways ([`Outcome`]): it returned, it failed, it timed out,
//! its client left, or it was never sent. Whoever takes a pending upcall out of its client's
//! table *settles* it: the connection thread when the answer comes, the sweeper when its time is
//! up, the disconnection when the client leaves. Taking it out is what makes each upcall end once:
//! whoever comes second finds nothing to take.
//!
//! An upcall that cannot even be filed (no such callback, too many unanswered, a line too long)
//! says why as a `NotFiled`, which becomes its outcome for whoever asked.

use std::fmt;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::log::seconds;
use crate::protocol::{ProtocolError, ON_EVENT};

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

/// Why an upcall was not filed (and so not sent): a small enum, because each reason is told
/// differently (to the console, to the sender of a `MSG`, to the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NotFiled {
    /// The client is leaving.
    Gone,
    /// It did not register this callback.
    NotRegistered {
        callback: String,
        registered: String,
    },
    /// It has too many upcalls unanswered (and is dropped for it).
    TooManyPending,
    /// The line would be invalid (too long, a character the protocol refuses).
    BadLine(ProtocolError, usize),
}

impl fmt::Display for NotFiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotFiled::Gone => write!(f, "disconnected"),
            NotFiled::NotRegistered {
                callback,
                registered,
            } if callback == ON_EVENT && registered.is_empty() => write!(
                f,
                "no on_event registered: send REGISTER on_event to get upcalls"
            ),
            NotFiled::NotRegistered {
                callback,
                registered,
            } => {
                let registered = if registered.is_empty() {
                    "none"
                } else {
                    registered
                };
                write!(f, "{callback} is not registered (registered: {registered})")
            }
            NotFiled::TooManyPending => write!(f, "too many upcalls to it are still unanswered"),
            NotFiled::BadLine(ProtocolError::LineTooLong, max_line) => write!(
                f,
                "line too long: the upcall line would be over the {max_line}-byte limit"
            ),
            NotFiled::BadLine(error, _) => write!(f, "{error}"),
        }
    }
}

impl From<NotFiled> for Outcome {
    fn from(reason: NotFiled) -> Outcome {
        match reason {
            NotFiled::Gone => Outcome::Disconnected,
            other => Outcome::NotSent(other.to_string()),
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
