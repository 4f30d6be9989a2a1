//! What the client is told on its command line, and how long it waits for the server.

use std::time::Duration;

/// How long the client waits: to connect, for `WELCOME`, for the upcall its message causes, for the
/// server's `BYE`. Five seconds is the server's default upcall timeout too.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a leaving client waits for the server: to take its `BYE`, and to close. A server that
/// does neither cannot keep the program from ending.
pub const FAREWELL: Duration = Duration::from_secs(2);

/// What the client can be told on its command line.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `HOST:PORT`, or just `HOST` for port 4141.
    pub server: String,
    /// Run the reader thread (the default), or read the socket only after each message.
    pub reader_thread: bool,
    /// Longest line accepted and sent, newline included.
    pub max_line: usize,
}
