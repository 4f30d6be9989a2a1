//! What std does not offer, asked of the operating system directly: waiting for several sockets at
//! once (`poll`), TCP keepalive, the size of a socket's send buffer, the length of the listen
//! queue, and the limits the machine puts on one process. This is the crate's only `unsafe` code
//! (the calls themselves are in `os/unix.rs` and `os/windows.rs`), and the only place where
//! Linux, macOS and Windows differ; the rest of the crate reads the same on every system.
//!
//! Each call is a thin wrapper around one C function that takes numbers and a pointer to memory we
//! own for the length of the call. The constants come from the systems' headers (`<poll.h>`,
//! `<sys/socket.h>`, `<netinet/tcp.h>`, `<sys/resource.h>`, `winsock2.h`).
//!
//! Two of them are on the path of every line: [`send_now`] and [`receive`], a write that never
//! waits and a read that waits only when asked to. std can only make a whole socket blocking or
//! not; the server needs both at once on one socket (see [`BLOCKING_READS`]).

use std::io;
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// What a wait asks for and how long (`os/wait.rs`).
mod wait;
#[cfg(test)]
use wait::timeout_ms;
pub use wait::Interest;

/// Waits until one of `sockets` is ready for what it is asked for, or `timeout` passes (`None`:
/// no limit). Returns, for each socket, whether it is ready; a socket whose connection broke or
/// was hung up counts as ready, so that the next read or write reports why.
///
/// This is how a thread waits for a socket without blocking inside `read` or `write`: the server's
/// writes never wait ([`send_now`]), so a write to a client that stopped reading returns at once
/// instead of holding up the thread that writes (usually another client's).
pub fn wait(
    sockets: &[(&TcpStream, Interest)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    sys::wait(sockets, timeout)
}

/// [`wait`] for one socket: true when it is ready. No allocation: this is on the path of every
/// line a client sends.
pub fn wait_for(
    socket: &TcpStream,
    interest: Interest,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    sys::wait_for(socket, interest, timeout)
}

/// Whether a server's socket stays blocking (Linux, macOS), so that its connection thread can
/// wait for input inside `recv` itself, as a plain blocking server does: one system call per
/// line instead of a read that finds nothing, a `poll`, and the read again. Every write then says
/// "do not wait" on its own ([`send_now`]). Windows has no such flag for a single `send`: there
/// the socket is non-blocking and the thread waits with [`wait_for`].
pub const BLOCKING_READS: bool = cfg!(unix);

/// Writes what the kernel takes of `bytes` now, without ever waiting for room: a client that
/// stopped reading cannot hold up the thread that writes to it (`MSG_DONTWAIT` on Linux and
/// macOS; on Windows the socket is non-blocking). "Would block" means the socket is full.
pub fn send_now(socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    sys::send_now(socket, bytes)
}

/// Reads what has arrived. With `wait`, and where [`BLOCKING_READS`] holds, waits for it as long
/// as it takes (the caller has no deadline to keep); otherwise returns "would block" at once when
/// nothing is there, and the caller waits with [`wait_for`].
pub fn receive(socket: &TcpStream, buffer: &mut [u8], wait: bool) -> io::Result<usize> {
    sys::receive(socket, buffer, wait)
}

/// Turns on TCP keepalive: after `idle` without a byte from the peer, the kernel sends a probe
/// every `interval`, and gives up on the connection when the peer stays silent for `give_up` (the
/// read then fails). On Linux `give_up` also bounds how long sent data may stay unacknowledged
/// (`TCP_USER_TIMEOUT`), which keepalive alone does not cover. A peer that is merely quiet answers
/// the probes from its kernel, without its program or its user doing anything.
pub fn keep_alive(socket: &TcpStream, idle: Duration, interval: Duration, give_up: Duration) {
    sys::keep_alive(socket, idle, interval, give_up);
}

/// Fixes the kernel's send buffer of `socket` at about `bytes` (`SO_SNDBUF`), so that a
/// non-blocking write reports "would block" once that much waits unacknowledged.
///
/// Left alone, the kernel sizes the buffer itself and grows it while the connection seems fast:
/// Linux up to `net.ipv4.tcp_wmem`'s 4 MiB (measured on loopback: 4.2 MB taken by a peer that
/// never read, before the first "would block"), Windows by its "ideal send backlog". A client
/// that stops reading would hold that much of the server's memory before the outbox noticed
/// anything. Setting the size turns the growing off on every system (Linux doubles the number
/// for its own bookkeeping).
pub fn set_send_buffer(socket: &TcpStream, bytes: usize) {
    sys::set_send_buffer(socket, bytes);
}

/// How many finished handshakes the kernel may hold for `accept`: Linux's own cap
/// (`net.core.somaxconn`, 4096 by default) applies on top.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Lets the kernel queue up to [`LISTEN_BACKLOG`] new connections for the accept loop.
///
/// std's `TcpListener::bind` asks for a queue of 128. When a class connects at once, the accept
/// loop shares two cores with thousands of new client threads, and 128 connections arrive before
/// it runs again; the kernel drops the rest, and each of those clients waits a second (then three,
/// then seven) for its SYN to be retried: 5,000 clients took 13 s here. Calling `listen` again on a
/// listening socket only changes the length of its queue (POSIX and Winsock say so).
pub fn widen_listen_queue(listener: &TcpListener) {
    sys::widen_listen_queue(listener, LISTEN_BACKLOG);
}

/// The limits that decide how many clients fit (`os/facts.rs`): filled here from `getrlimit` and
/// by `os/linux.rs` from `/proc`.
mod facts;
pub use facts::MachineFacts;

/// Raises the soft open-file limit to the hard one, as Go's runtime does at start: the soft limit
/// is often 1,024 (256 on macOS), far below what a class needs, while the hard limit is what the
/// administrator really allows. Returns the limit from then on (`None` where there is none, as on
/// Windows).
pub fn raise_open_file_limit() -> Option<u64> {
    sys::raise_open_file_limit()
}

/// The limits that decide how many clients this process can hold, as the system states them now.
pub fn machine_facts() -> MachineFacts {
    let mut facts = sys::rlimit_facts();
    if cfg!(target_os = "linux") {
        linux::add_proc_facts(&mut facts);
    }
    facts
}

/// What Linux says in `/proc` and `/sys` (`os/linux.rs`): plain file reads, nothing unsafe.
mod linux;

/// The system calls themselves, one file per family of systems.
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as sys;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as sys;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Instant;

    fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let theirs = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        (ours, theirs)
    }

    #[test]
    fn a_wait_ends_when_a_line_arrives_and_not_before() {
        let (ours, mut theirs) = pair();
        let started = Instant::now();
        let quiet = wait(&[(&ours, Interest::Read)], Some(Duration::from_millis(50))).unwrap();
        assert_eq!(quiet, vec![false]);
        assert!(started.elapsed() >= Duration::from_millis(50));
        theirs.write_all(b"MSG haii\n").unwrap();
        let ready = wait(&[(&ours, Interest::Read)], Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready, vec![true]);
    }

    #[test]
    fn a_fresh_socket_has_room_to_write() {
        let (ours, _theirs) = pair();
        let ready = wait(&[(&ours, Interest::Write)], Some(Duration::ZERO)).unwrap();
        assert_eq!(ready, vec![true]);
    }

    #[test]
    fn a_peer_that_never_reads_takes_only_the_send_buffer_and_its_own() {
        let (ours, theirs) = pair();
        set_send_buffer(&ours, 64 * 1024);
        ours.set_nonblocking(true).unwrap();
        let line = [b'x'; 3000];
        let mut taken = 0;
        let mut last_taken = Instant::now();
        // Until a write has found the socket full for a while (the kernel may still move a
        // little from our buffer to the peer's).
        while last_taken.elapsed() < Duration::from_millis(200) {
            match (&ours).write(&line) {
                Ok(written) => {
                    taken += written;
                    last_taken = Instant::now();
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(error) => panic!("{error}"),
            }
            assert!(taken < 4 << 20, "the socket took 4 MiB and more");
        }
        // Measured on loopback: 0.26 MB on Linux, 0.24 MB under Wine; 4.2 MB without the cap.
        assert!(taken < 1 << 20, "the socket took {taken} bytes");
        drop(theirs);
    }

    #[test]
    fn timeouts_round_up_to_whole_milliseconds() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(1500))), 1500);
        assert_eq!(timeout_ms(Some(Duration::from_secs(u64::MAX))), i32::MAX);
    }
}
