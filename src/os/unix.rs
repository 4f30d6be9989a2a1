//! The system calls of [`crate::os`] on Linux and macOS: `poll`, `send`/`recv` with their
//! per-call flags, `setsockopt`, `listen` and `getrlimit`/`setrlimit`, declared from the C
//! library. Each function here is one thin wrapper; `os.rs` says what each is for.

use super::facts::MachineFacts;
use super::wait::{timeout_ms, Interest};
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::raw::{c_int, c_short, c_void};
use std::time::Duration;

#[repr(C)]
struct PollFd {
    fd: c_int,
    events: c_short,
    revents: c_short,
}

#[repr(C)]
struct RLimit {
    cur: u64,
    max: u64,
}

#[cfg(target_os = "linux")]
type Nfds = std::os::raw::c_ulong;
#[cfg(not(target_os = "linux"))]
type Nfds = std::os::raw::c_uint;

extern "C" {
    fn poll(fds: *mut PollFd, count: Nfds, timeout: c_int) -> c_int;
    fn send(socket: c_int, bytes: *const c_void, length: usize, flags: c_int) -> isize;
    fn recv(socket: c_int, buffer: *mut c_void, length: usize, flags: c_int) -> isize;
    fn listen(socket: c_int, backlog: c_int) -> c_int;
    fn setsockopt(
        socket: c_int,
        level: c_int,
        name: c_int,
        value: *const c_void,
        length: u32,
    ) -> c_int;
    fn getrlimit(resource: c_int, limit: *mut RLimit) -> c_int;
    fn setrlimit(resource: c_int, limit: *const RLimit) -> c_int;
}

// <poll.h>: the same numbers on Linux and macOS.
const POLLIN: c_short = 0x1;
const POLLOUT: c_short = 0x4;

#[cfg(target_os = "linux")]
mod consts {
    pub const SOL_SOCKET: i32 = 1;
    pub const SO_SNDBUF: i32 = 7;
    pub const SO_KEEPALIVE: i32 = 9;
    pub const IPPROTO_TCP: i32 = 6;
    pub const TCP_KEEPIDLE: i32 = 4;
    pub const TCP_KEEPINTVL: i32 = 5;
    pub const TCP_KEEPCNT: i32 = 6;
    pub const TCP_USER_TIMEOUT: Option<i32> = Some(18);
    pub const MSG_DONTWAIT: i32 = 0x40;
    /// A write to a closed connection fails with EPIPE instead of raising SIGPIPE (as std's
    /// own writes do on Linux).
    pub const MSG_NOSIGNAL: i32 = 0x4000;
    pub const RLIMIT_NPROC: i32 = 6;
    pub const RLIMIT_NOFILE: i32 = 7;
    pub const RLIMIT_AS: i32 = 9;
    pub const RLIM_INFINITY: u64 = u64::MAX;
}

#[cfg(not(target_os = "linux"))]
mod consts {
    // macOS and the BSDs.
    pub const SOL_SOCKET: i32 = 0xffff;
    pub const SO_SNDBUF: i32 = 0x1001;
    pub const SO_KEEPALIVE: i32 = 0x8;
    pub const IPPROTO_TCP: i32 = 6;
    /// macOS calls the idle time `TCP_KEEPALIVE`.
    pub const TCP_KEEPIDLE: i32 = 0x10;
    pub const TCP_KEEPINTVL: i32 = 0x101;
    pub const TCP_KEEPCNT: i32 = 0x102;
    pub const TCP_USER_TIMEOUT: Option<i32> = None;
    pub const MSG_DONTWAIT: i32 = 0x80;
    /// No such flag: as with std's own writes, SIGPIPE is ignored by the Rust runtime.
    pub const MSG_NOSIGNAL: i32 = 0;
    pub const RLIMIT_NPROC: i32 = 7;
    pub const RLIMIT_NOFILE: i32 = 8;
    pub const RLIMIT_AS: i32 = 5;
    pub const RLIM_INFINITY: u64 = (1 << 63) - 1;
}
use consts::*;

pub(super) fn wait(
    sockets: &[(&TcpStream, Interest)],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut fds: Vec<PollFd> = sockets
        .iter()
        .map(|(socket, interest)| PollFd {
            fd: socket.as_raw_fd(),
            events: match interest {
                Interest::Read => POLLIN,
                Interest::Write => POLLOUT,
            },
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a live array of `fds.len()` pollfd structures for the whole call, and
    // every descriptor in it stays open because `sockets` borrows its stream.
    let ready = unsafe { poll(fds.as_mut_ptr(), fds.len() as Nfds, timeout_ms(timeout)) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        // A signal interrupted the wait: report "nothing ready"; the caller waits again.
        return match error.kind() {
            io::ErrorKind::Interrupted => Ok(vec![false; fds.len()]),
            _ => Err(error),
        };
    }
    // Any bit counts: the one asked for, or POLLERR/POLLHUP/POLLNVAL.
    Ok(fds.iter().map(|fd| fd.revents != 0).collect())
}

pub(super) fn wait_for(
    socket: &TcpStream,
    interest: Interest,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let mut fd = [PollFd {
        fd: socket.as_raw_fd(),
        events: match interest {
            Interest::Read => POLLIN,
            Interest::Write => POLLOUT,
        },
        revents: 0,
    }];
    // SAFETY: as in `wait`, with an array of one on our stack.
    let ready = unsafe { poll(fd.as_mut_ptr(), 1, timeout_ms(timeout)) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::Interrupted => Ok(false),
            _ => Err(error),
        };
    }
    Ok(fd[0].revents != 0)
}

pub(super) fn send_now(socket: &TcpStream, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: `bytes` is a live slice for the call and its length is passed with it; the
    // descriptor stays open because `socket` is borrowed.
    let sent = unsafe {
        send(
            socket.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            MSG_DONTWAIT | MSG_NOSIGNAL,
        )
    };
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

pub(super) fn receive(socket: &TcpStream, buffer: &mut [u8], wait: bool) -> io::Result<usize> {
    let flags = if wait { 0 } else { MSG_DONTWAIT };
    // SAFETY: `buffer` is ours, writable and of the length passed, for the whole call.
    let read = unsafe {
        recv(
            socket.as_raw_fd(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            flags,
        )
    };
    usize::try_from(read).map_err(|_| io::Error::last_os_error())
}

fn set(socket: &TcpStream, level: c_int, name: c_int, value: c_int) {
    // SAFETY: `value` lives on our stack for the call, and its length is passed exactly.
    let _ = unsafe {
        setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const c_int).cast(),
            std::mem::size_of::<c_int>() as u32,
        )
    };
}

pub(super) fn keep_alive(
    socket: &TcpStream,
    idle: Duration,
    interval: Duration,
    give_up: Duration,
) {
    let secs = |d: Duration| c_int::try_from(d.as_secs().max(1)).unwrap_or(c_int::MAX);
    let probes = (give_up.saturating_sub(idle).as_secs() / interval.as_secs().max(1)).max(1);
    set(socket, SOL_SOCKET, SO_KEEPALIVE, 1);
    set(socket, IPPROTO_TCP, TCP_KEEPIDLE, secs(idle));
    set(socket, IPPROTO_TCP, TCP_KEEPINTVL, secs(interval));
    set(socket, IPPROTO_TCP, TCP_KEEPCNT, probes as c_int);
    if let Some(user_timeout) = TCP_USER_TIMEOUT {
        let ms = c_int::try_from(give_up.as_millis()).unwrap_or(c_int::MAX);
        set(socket, IPPROTO_TCP, user_timeout, ms);
    }
}

pub(super) fn set_send_buffer(socket: &TcpStream, bytes: usize) {
    let bytes = c_int::try_from(bytes).unwrap_or(c_int::MAX);
    set(socket, SOL_SOCKET, SO_SNDBUF, bytes);
}

pub(super) fn widen_listen_queue(listener: &TcpListener, backlog: i32) {
    // SAFETY: `listen` takes a descriptor and a number and touches no memory of ours; the
    // descriptor stays open for the call because `listener` is borrowed.
    let _ = unsafe { listen(listener.as_raw_fd(), backlog) };
}

/// The soft and hard limits of `resource`; `None` for unlimited.
fn get(resource: c_int) -> Option<(Option<u64>, Option<u64>)> {
    let mut limit = RLimit { cur: 0, max: 0 };
    // SAFETY: `limit` is ours for the call, of the size the C structure has on 64-bit
    // Linux and macOS (two 64-bit numbers).
    if unsafe { getrlimit(resource, &mut limit) } != 0 {
        return None;
    }
    let finite = |value: u64| (value != RLIM_INFINITY).then_some(value);
    Some((finite(limit.cur), finite(limit.max)))
}

pub(super) fn raise_open_file_limit() -> Option<u64> {
    let (soft, hard) = get(RLIMIT_NOFILE)?;
    let current = soft?;
    // macOS refuses an unlimited soft limit for files: there, 10,240 (OPEN_MAX) is the most
    // a process can ask for without reading sysctls.
    let wanted = hard.unwrap_or(10_240);
    for target in [wanted, wanted.min(10_240)] {
        if target <= current {
            return Some(current);
        }
        let new = RLimit {
            cur: target,
            max: hard.unwrap_or(RLIM_INFINITY),
        };
        // SAFETY: `new` is ours for the call.
        if unsafe { setrlimit(RLIMIT_NOFILE, &new) } == 0 {
            return Some(target);
        }
    }
    Some(current)
}

pub(super) fn rlimit_facts() -> MachineFacts {
    let soft = |resource| get(resource).and_then(|(soft, _)| soft);
    MachineFacts {
        open_files: soft(RLIMIT_NOFILE),
        user_threads_free: soft(RLIMIT_NPROC),
        address_space_free: soft(RLIMIT_AS),
        ..MachineFacts::default()
    }
}
