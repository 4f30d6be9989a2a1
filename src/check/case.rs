//! What every case is and how it ends, shared by both sides of the checker: a [`Case`] (a rule,
//! checked one way), the [`Outcome`] it gives, the [`Side`] it checks, which rules a selection
//! picks, and how long a case waits for a line.

use std::time::{Duration, Instant};

use super::wire;

/// Which side a case checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Server => "server",
            Side::Client => "client",
        }
    }
}

/// One case: a rule of the spec, checked one way.
pub struct Case<C> {
    /// The rule's number in the spec, `4.2`.
    pub rule: &'static str,
    /// What the case checks, in one line.
    pub title: &'static str,
    /// Runs the case; `Err` says what was expected instead, in words a student follows.
    pub run: fn(&mut C) -> Result<(), String>,
}

/// How one case ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub side: Side,
    pub rule: &'static str,
    pub title: &'static str,
    /// `None`: passed. `Some(expected)`: failed, and what was expected.
    pub failure: Option<String>,
    /// Every line the case sent and received, on each of its connections.
    pub transcript: Vec<wire::Entry>,
    pub took: Duration,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// `server 4.2`: how tests and reports name a case.
    pub fn name(&self) -> String {
        format!("{} {}", self.side.name(), self.rule)
    }
}

/// True if `rule` is picked by `selection` (empty: everything; `4` picks 4.1, 4.2, ...).
pub fn selected(rule: &str, selection: &[String]) -> bool {
    selection.is_empty()
        || selection
            .iter()
            .any(|pick| rule == pick || rule.starts_with(&format!("{pick}.")))
}

/// How long the checker waits for a line it expects, unless told otherwise: generous, so that
/// a slow laptop or a loaded CI machine is not taken for a broken program.
pub const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// A deadline `wait` from now.
pub fn after(wait: Duration) -> Instant {
    Instant::now() + wait
}
