//! The bare server of `examples/bare_server.rs`, run in this process on an ephemeral loopback
//! port, so that the lab's transcripts can be checked against it as they are against the real
//! server: the story a student reads first must speak the protocol byte for byte.

use std::net::{SocketAddr, TcpListener};
use std::thread;

// The example's own file, compiled into the test: the code a student reads is the code tested.
// Its `main` is the example's, unused here.
#[allow(dead_code)]
#[path = "../../examples/bare_server.rs"]
mod bare_server;

/// Starts a bare server on `127.0.0.1:<ephemeral port>` and returns its address. It has no
/// shutdown (the bare server has none): its accept loop ends with the test process.
pub fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let address = listener.local_addr().expect("local address");
    thread::spawn(move || bare_server::serve(listener));
    address
}
