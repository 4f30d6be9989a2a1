//! The system calls of [`crate::os`] on Windows: `WSAPoll`, `send`/`recv`, `setsockopt` and
//! `listen` from Winsock (`ws2_32`). Windows has no per-call "do not wait" flag, so its server
//! sockets are non-blocking instead; there are no rlimits to read.

use super::facts::MachineFacts;
use super::wait::{timeout_ms, Interest};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::windows::io::AsRawSocket;
use std::time::Duration;

#[repr(C)]
struct WsaPollFd {
    fd: usize,
    events: i16,
    revents: i16,
}

#[link(name = "ws2_32")]
extern "system" {
    fn WSAPoll(fds: *mut WsaPollFd, count: u32, timeout: i32) -> i32;
    fn listen(socket: usize, backlog: i32) -> i32;
    fn setsockopt(socket: usize, level: i32, name: i32, value: *const u8, length: i32) -> i32;
}

// winsock2.h
const POLLRDNORM: i16 = 0x0100;
const POLLWRNORM: i16 = 0x0010;
const SOL_SOCKET: i32 = 0xffff;
const SO_KEEPALIVE: i32 = 0x0008;
const SO_SNDBUF: i32 = 0x1001;
const IPPROTO_TCP: i32 = 6;
// ws2ipdef.h (Windows 10 1709 and later; older systems ignore them and keep the defaults).
const TCP_KEEPIDLE: i32 = 3;
const TCP_KEEPCNT: i32 = 16;
const TCP_KEEPINTVL: i32 = 17;

pub(super) fn wait(
    sockets: &[(&TcpStream, Interest)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut fds: Vec<WsaPollFd> = sockets
        .iter()
        .map(|(socket, interest)| WsaPollFd {
            fd: socket.as_raw_socket() as usize,
            events: match interest {
                Interest::Read => POLLRDNORM,
                Interest::Write => POLLWRNORM,
            },
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a live array of `fds.len()` structures for the whole call, and every
    // socket in it stays open because `sockets` borrows its stream.
    let ready = unsafe { WSAPoll(fds.as_mut_ptr(), fds.len() as u32, timeout_ms(timeout)) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fds.iter().map(|fd| fd.revents != 0).collect())
}

pub(super) fn wait_for(
    socket: &TcpStream,
    interest: Interest,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    Ok(wait(&[(socket, interest)], timeout)?[0])
}

/// The socket is non-blocking (`BLOCKING_READS` is false here): a plain write never waits.
pub(super) fn send_now(mut socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    std::io::Write::write(&mut socket, bytes)
}

/// The socket is non-blocking: a read never waits, whatever `wait` says.
pub(super) fn receive(mut socket: &TcpStream, buffer: &mut [u8], _: bool) -> io::Result<usize> {
    std::io::Read::read(&mut socket, buffer)
}

fn set(socket: &TcpStream, level: i32, name: i32, value: i32) {
    // SAFETY: `value` lives on our stack for the call, and its length is passed exactly.
    let _ = unsafe {
        setsockopt(
            socket.as_raw_socket() as usize,
            level,
            name,
            (&value as *const i32).cast(),
            4,
        )
    };
}

pub(super) fn keep_alive(
    socket: &TcpStream,
    idle: Duration,
    interval: Duration,
    give_up: Duration,
) {
    let secs = |d: Duration| i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX);
    let probes = (give_up.saturating_sub(idle).as_secs() / interval.as_secs().max(1)).max(1);
    set(socket, SOL_SOCKET, SO_KEEPALIVE, 1);
    set(socket, IPPROTO_TCP, TCP_KEEPIDLE, secs(idle));
    set(socket, IPPROTO_TCP, TCP_KEEPINTVL, secs(interval));
    set(socket, IPPROTO_TCP, TCP_KEEPCNT, probes as i32);
}

pub(super) fn set_send_buffer(socket: &TcpStream, bytes: usize) {
    let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
    set(socket, SOL_SOCKET, SO_SNDBUF, bytes);
}

pub(super) fn widen_listen_queue(listener: &TcpListener, backlog: i32) {
    // SAFETY: `listen` takes a socket and a number and touches no memory of ours.
    let _ = unsafe { listen(listener.as_raw_socket() as usize, backlog) };
}

/// Windows has no open-file limit for sockets to raise.
pub(super) fn raise_open_file_limit() -> Option<u64> {
    None
}

pub(super) fn rlimit_facts() -> MachineFacts {
    MachineFacts::default()
}
