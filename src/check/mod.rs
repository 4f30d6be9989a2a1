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
//! # The files, in layers
//!
//! Each file uses only files below it: on its own side, and under both sides. No server file
//! uses a client file or the other way round, so no two files use each other, not even through a
//! third (`tests/layers.rs` checks it):
//!
//! ```text
//! mod.rs               the top: declares the files, re-exports what programs and tests use
//!  ├ server side:
//!  │  server_cases.rs  what a server must do (rules 1-8), and `run`, which plays them all
//!  │  server_run.rs    the runner: a few cases at a time, the slow ones first
//!  │  timing_cases.rs  what a server must do over time (rules 6.5 and 9)
//!  │  server_ctx.rs    what a server case works with: ServerCtx, and Peer, one connection
//!  ├ client side:
//!  │  client_cases.rs  what a client must do, and `run`: listen, accept, play them in order
//!  │  client_ctx.rs    what a client case works with: ClientCtx, the checker as a server
//!  └ under both sides:
//!     report.rs        the screen and JUnit
//!     options.rs       the command line
//!     rules.rs         the numbered rules, as the spec has them
//!     case.rs          Case, Outcome, Side; which rules a selection picks; how long to wait
//!     wire.rs          one connection and its transcript
//! ```
//!
//! A file never names one above it. `server_run.rs` plays the cases it is given, so
//! `server_cases.rs`, which has them, hands them over: the runner never asks for them. And a file
//! names the file an item is in (`super::case::Outcome`), never `super::Outcome`: that is this
//! file, the top, which re-exports such items for the programs and tests that use the checker.

pub mod case;
pub mod client_cases;
pub mod client_ctx;
pub mod options;
pub mod report;
pub mod rules;
pub mod server_cases;
pub mod server_ctx;
pub mod server_run;
pub mod timing_cases;
pub mod wire;

pub use case::{after, selected, Case, Outcome, Side, ANSWER_WAIT};
pub use options::{Command, Options};
pub use report::Report;
