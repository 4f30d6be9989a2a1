//! `checkcall`: a conformance checker for `upcall/1`, the protocol of the lab, as its numbered
//! rules state it in `src/upcall-1.md` (in Indonesian `src/upcall-1.id.md`).
//!
//! A student who writes their own client or server runs it against this checker:
//!
//! - `checkcall server ADDR` connects to a running server and runs every rule a server must keep,
//!   one case per rule, each on connections of its own;
//! - `checkcall client` listens, waits for a client to connect, plays a server and runs every rule
//!   a client must keep, one case after another on that one connection.
//!
//! Each case says PASS or FAIL, and on a failure what it sent, what it received and what it
//! expected instead. Cases are picked by rule number (`4` or `4.2`); the exit status says whether
//! all passed, and `--junit FILE` writes a report that graders and CI read.
//!
//! The files: [`rules`] (the numbered rules, as the spec has them), [`wire`] (one connection and
//! its transcript), [`server_cases`] and [`timing_cases`] (what a server must do), [`server_run`] (playing them),
//! [`client_cases`] (what a client must do), [`report`] (the screen and JUnit), [`options`]
//! (the command line).

pub mod client_cases;
pub mod options;
pub mod report;
pub mod rules;
pub mod server_cases;
pub mod server_run;
pub mod timing_cases;
pub mod wire;

use std::time::{Duration, Instant};

pub use options::{Command, Options};
pub use report::Report;

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
