//! The test harness shared by the integration tests that talk to a real server.
//!
//! The tests speak raw `upcall/1` bytes, the way a student does with `nc`: they never use the
//! crate's client, so a bug in the client cannot hide a bug in the server. One file a story:
//!
//! - [`client`]: [`RawClient`], the one test client (`send` raw bytes out, `expect` exactly one
//!   line in, every read with a timeout, so a missing line fails the test instead of hanging it),
//!   and [`Upcall`], the one parser of the `UPCALL` lines it hears;
//! - [`server`]: [`TestServer`], the one launcher of the library server in this process (on an
//!   ephemeral loopback port, shut down on drop), and [`KeptLog`], a server log the test reads;
//! - [`scenarios`]: who plays in the fairness and load tests, written once: the prompt
//!   `Student`, the client that `stops_reading`, the `flooder`, and `TwoClients` (a bad client
//!   next to a good one);
//! - `netns` (Linux): a LAN of network namespaces for `tests/lan.rs`;
//! - here: waiting with a deadline, one test at a time, and what `/proc` says.
//!
//! Each `tests/*.rs` is a crate of its own that uses a part of this harness, so each declares it
//! `pub mod support;`: its items are then public, and not reported as unused in a crate that does
//! not need them.

pub mod client;
#[cfg(target_os = "linux")]
pub mod netns;
pub mod scenarios;
pub mod server;

use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

pub use client::{unknown_id_error, RawClient, Upcall, READ_TIMEOUT};
pub use server::{quiet_config, KeptLog, TestServer};

/// Polls `condition` every few milliseconds until it holds or `limit` has passed; true if it held.
///
/// For facts the server does not announce on the wire (a client was forgotten, the count went
/// down), polling with a deadline is the only way to wait; it is bounded, so it never hangs.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// One test at a time, for the tests of a file that measure this process (its threads, its
/// descriptors, its memory), which holds the server *and* its clients: each takes this first,
/// and the others' threads wait, idle, on the lock.
pub fn serial() -> MutexGuard<'static, ()> {
    /// Lock: guards nothing but the right to run; a test that failed holding it does not stop
    /// the others (the poison is ignored).
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The resident memory of a process in KiB (`VmRSS` in `/proc/<process>/status`; `"self"` for this
/// one). The tests that measure memory run on Linux: without the file they fail, not pass.
pub fn resident_kib(process: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{process}/status"))
        .unwrap_or_else(|error| panic!("/proc/{process}/status: {error}"));
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// True when this process runs as root (effective uid 0 in `/proc/self/status`; false where there
/// is no such file), as the tests that make network namespaces or control groups need.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1).map(|uid| uid == "0"))
        .unwrap_or(false)
}
