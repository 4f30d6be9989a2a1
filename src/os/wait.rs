//! What a wait on sockets is given, the same on every system: what it waits for on each socket
//! ([`Interest`]) and how long, in `poll`'s milliseconds. A leaf that `os.rs` and each system's
//! calls both use.

use std::time::Duration;

/// What a thread waits for on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// A line (or the end of the connection) has arrived.
    Read,
    /// The kernel has room for more bytes to send.
    Write,
}

/// `poll`'s timeout: milliseconds, rounded up so that a wait never ends before its time; -1 for
/// "no limit".
pub(super) fn timeout_ms(timeout: Option<Duration>) -> i32 {
    match timeout {
        None => -1,
        Some(timeout) => {
            let ms = timeout.as_micros().div_ceil(1000);
            i32::try_from(ms).unwrap_or(i32::MAX)
        }
    }
}
