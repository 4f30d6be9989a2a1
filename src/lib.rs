//! # upcall: a server that calls its clients back
//!
//! An *upcall* turns the usual direction of a call around. A client connects and **registers**
//! functions ("you may call me on `on_event`, `uppercase`, `hostname`"). From then on the server,
//! which normally only answers, can **call those functions on the client**: to notify it
//! (`on_event`), or to have it compute something and send the result back (`uppercase`,
//! `hostname`). The call goes down the same TCP connection the client opened, so the client needs
//! no open port of its own.
//!
//! ```text
//! client                                   server
//!   │ ── connect ───────────────────────────▶ │
//!   │ ◀──────────── WELCOME client-1 upcall/1 │
//!   │ ── REGISTER on_event ─────────────────▶ │  "you may call me back on on_event"
//!   │ ◀────────────────── REGISTERED on_event │
//!   │ ── MSG haii ──────────────────────────▶ │
//!   │ ◀ UPCALL 1 on_event Upcall event: Proc… │  the server calls the client's function
//!   │ ── RETURN 1 ok ───────────────────────▶ │  ...and gets its result
//! ```
//!
//! ## A map of the crate, in reading order
//!
//! - [`protocol`]: the `upcall/1` wire format: one [`protocol::Message`] per line, its grammar,
//!   parse and encode. No sockets.
//! - [`error`]: the crate's one error type: a broken connection, or a line that broke the protocol.
//! - [`framing`]: turning a byte stream into lines with bounded memory, and lines back into
//!   single writes.
//! - [`server`]: the accept loop, one thread per client, the registry of clients and their
//!   callbacks, upcalls and their pending answers, and the limits that keep one client from
//!   stalling the others. Its files follow the upcall step by step.
//! - [`console`]: the server operator's commands (`call`, `broadcast`, `list`, `quit`): the server
//!   calling clients on its own.
//! - [`callbacks`]: the functions a client offers, in one table.
//! - [`client`]: the client's two threads: the keyboard, and the socket's upcalls.
//! - [`cli`]: the command lines of `servercall` and `clientcall` (`src/bin/`), which stay thin.
//! - [`check`]: `checkcall`, the conformance checker: the numbered rules of `upcall/1`
//!   (`src/upcall-1.md`) played against any client or server, a student's own included.
//! - [`log`]: printing that survives a closed stdout, and the server's log, which never makes a
//!   client wait for a slow terminal.
//! - [`printer`]: the one printing thread behind a bounded queue that the log and the client's
//!   screen both print through.
//! - [`os`]: what std does not offer (waiting for several sockets, TCP keepalive, the machine's
//!   limits), asked of the operating system directly: the crate's only `unsafe` code.
//!
//! Everything uses the standard library only: blocking sockets, threads, channels and locks. No
//! async runtime, so that each step of an upcall is a line of code you can point at.

// In the map's reading order (one per group, so that rustfmt keeps the order).
pub mod protocol;

pub mod error;

pub mod framing;

pub mod server;

pub mod console;

pub mod callbacks;

pub mod client;

pub mod cli;

pub mod check;

pub mod log;

pub mod printer;

pub mod os;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Takes a lock even if a thread panicked while holding it.
///
/// The data behind every lock of this crate is consistent between any two statements (each
/// critical section is a few map operations or one write), so a panic in one thread is no reason
/// to take every other client down with it, which is what `.lock().unwrap()` would do.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
