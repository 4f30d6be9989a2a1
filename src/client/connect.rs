//! Finding and reaching the server: the address a student types, and one clear sentence for each
//! way connecting can fail.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};

use super::WAIT;
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
        io::ErrorKind::ConnectionRefused => format!(
            "cannot connect to {server}: connection refused. Is servercall running there? \
             Start it with `cargo run --bin servercall`, or point --server at it."
        ),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
            "cannot connect to {server}: no answer within {}. Is the address right, and is \
             the server on a network this machine can reach?",
            seconds(WAIT)
        ),
        _ => format!("cannot connect to {server}: {last_error}."),
    })
}
