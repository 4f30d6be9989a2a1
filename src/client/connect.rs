//! Finding and reaching the server: the address a student types, and one clear sentence for each
//! way connecting can fail.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::config::WAIT;
use super::system::{in_words, Place};
use crate::lock;
use crate::log::seconds;
use crate::protocol::DEFAULT_PORT;

/// `upcall-server` means `upcall-server:4141`.
pub fn with_default_port(server: &str) -> String {
    if server.contains(':') {
        server.to_string()
    } else {
        format!("{server}:{DEFAULT_PORT}")
    }
}

/// Connects to `server` (a name or an address), turning each way it can fail into one sentence a
/// student can act on.
pub fn connect(server: &str) -> Result<TcpStream, String> {
    let addresses: Vec<SocketAddr> = match server.to_socket_addrs() {
        Ok(addresses) => addresses.collect(),
        Err(error) => {
            return Err(format!(
                "cannot find the server {server}: {error}. Check the name and port \
                 (HOST:PORT; in the Docker lab it is upcall-server:4141)."
            ))
        }
    };
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    // A name may have several addresses (localhost is ::1 and 127.0.0.1): try each in turn.
    for address in &addresses {
        match TcpStream::connect_timeout(address, WAIT) {
            Ok(stream) => return Ok(stream),
            Err(error) => last_error = error,
        }
    }
    Err(match last_error.kind() {
        // Inside the lab's container there is no cargo: the server starts in its own container.
        io::ErrorKind::ConnectionRefused if Place::here() == Place::LabContainer => format!(
            "cannot connect to {server}: connection refused. Is servercall running there? \
             Start it in another terminal with `docker compose -f compose/upcall.yml exec \
             upcall-server servercall`, or point --server at it."
        ),
        io::ErrorKind::ConnectionRefused => format!(
            "cannot connect to {server}: connection refused. Is servercall running there? \
             Start it with `cargo run --bin servercall`, or point --server at it."
        ),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
            "cannot connect to {server}: no answer within {}. Is the address right, and is \
             the server on a network this machine can reach?",
            seconds(WAIT)
        ),
        _ => format!("cannot connect to {server}: {}.", in_words(&last_error)),
    })
}

/// The client's read side of the socket, with a deadline that holds however the bytes trickle.
///
/// A read timeout alone restarts with every byte: a server that sends one byte every 2 s before
/// `WELCOME` would keep a 5 s timeout from ever firing. So before each read the time left until
/// the deadline becomes the read's timeout, and past the deadline a read fails at once with
/// `TimedOut`. Without a deadline (the reader thread, which may wait for ever) it is a plain read.
pub(super) struct Incoming {
    stream: TcpStream,
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl Incoming {
    /// The read side of `stream`, and the handle that sets its deadline.
    pub(super) fn new(stream: TcpStream) -> (Incoming, Arc<Mutex<Option<Instant>>>) {
        // Lock: guards the deadline. Held only to copy or set it, never across a read.
        let deadline = Arc::new(Mutex::new(None));
        let incoming = Incoming {
            stream,
            deadline: Arc::clone(&deadline),
        };
        (incoming, deadline)
    }
}

impl Read for Incoming {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let deadline = *lock(&self.deadline);
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the wait is over"));
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        self.stream.read(buffer)
    }
}
