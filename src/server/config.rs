//! What an operator can set on `servercall`'s command line, and what it is when they set nothing.
//! The README's "Limits" table gives the flag of each.

use std::time::Duration;

use super::limits;
use crate::protocol::DEFAULT_MAX_LINE;

/// What an operator can set on `servercall`'s command line.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// More connections than this get `ERR server full` and are closed: each client costs a thread.
    pub max_clients: usize,
    /// More connections than this from one IP address are turned away. 0: no such limit.
    pub max_per_address: usize,
    /// How long an upcall may take before the server gives up on it.
    pub upcall_timeout: Duration,
    /// How long a line may wait in a client's outbox (the client is not reading) before the
    /// client is dropped.
    pub write_timeout: Duration,
    /// A new connection must send a complete line within this time, and no line may take longer
    /// to arrive than this once it has begun. A client that is merely quiet is never dropped.
    pub line_timeout: Duration,
    /// `MSG`s per second one client may send (with a burst of twice as many). 0: no limit.
    pub max_msg_rate: u32,
    /// Longest line accepted (and sent), newline included.
    pub max_line: usize,
    /// Upcalls one client may leave unanswered; a client that reaches this is dropped.
    pub max_pending: usize,
    /// Print the step-by-step log. The benchmark turns it off: 10,000 log lines per broadcast would
    /// measure the terminal, not the server.
    pub log: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_clients: 1024,
            max_per_address: 0,
            upcall_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            line_timeout: Duration::from_secs(30),
            max_msg_rate: 20,
            max_line: DEFAULT_MAX_LINE,
            max_pending: limits::MAX_PENDING,
            log: true,
        }
    }
}
