//! How much one client may cost the server, in one place: every per-client bound, the flood
//! control, the log's summary of repeats, and what the machine itself allows.
//!
//! The rest of the server reads like the upcall story; this file is where the story meets a class
//! of 200 students with scripts. The README's "Limits" table lists the same bounds, with the flag
//! that sets each and what happens past it.

use std::time::{Duration, Instant};

use crate::log::thousands;

/// Stack size of a client's thread. A connection thread only parses short lines and formats a few
/// strings, which needs a few KiB of stack; the default of 2 MiB is reserved address space that ten
/// thousand clients would multiply into 20 GiB. 64 KiB leaves ample headroom (the guard page below
/// it turns an overflow into a clean abort, never silent corruption) and keeps the memory that is
/// really touched per client to a few pages.
pub const CLIENT_THREAD_STACK: usize = 64 * 1024;

/// Callbacks one client may register. The lab's client registers three; a name is at most 32
/// bytes, so this bounds a client's registrations to a couple of KiB.
pub const MAX_CALLBACKS: usize = 64;

/// Upcalls one client may leave unanswered at a time, by default. A client that answers (every
/// `clientcall`) has one or two; one that reaches this many is not reading its socket, or not
/// answering, and is dropped. Each costs about 100 bytes, so this bounds a client to ~100 KiB.
pub const MAX_PENDING: usize = 1024;

/// How long one write may wait for room in a client's socket before the line goes to its outbox
/// instead. Short: the thread writing is usually serving someone else.
pub const SEND_TRY: Duration = Duration::from_millis(10);

/// How many bytes may wait in one client's outbox, beyond what the kernel's socket buffers already
/// hold for it (hundreds of KiB on a LAN): past it, the client is dropped. At least two of the
/// longest lines, so that one long line never counts as falling behind.
pub fn outbox_limit(max_line: usize) -> usize {
    OUTBOX_LIMIT.max(2 * max_line)
}

/// The outbox limit with the default line length: 64 KiB, a few hundred upcalls.
pub const OUTBOX_LIMIT: usize = 64 * 1024;

/// Flood control for one client's `MSG`s: a token bucket.
///
/// The bucket holds up to `burst` tokens and refills at `rate` per second; each `MSG` takes one,
/// and a `MSG` that finds the bucket empty is refused. A person typing never notices (twenty
/// messages a second is far beyond typing, and a burst covers pasting a few lines), while a
/// script sending as fast as it can is held to `rate`. IRC servers call the same idea "Excess
/// Flood".
#[derive(Debug, Clone)]
pub struct MessageRate {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl MessageRate {
    /// `per_second` messages a second, with a burst of twice as many; 0 means no limit.
    pub fn new(per_second: u32) -> MessageRate {
        let rate = f64::from(per_second);
        MessageRate {
            rate,
            burst: 2.0 * rate,
            tokens: 2.0 * rate,
            refilled: Instant::now(),
        }
    }

    /// Takes a token for one message: false if the client is over its rate.
    pub fn allow(&mut self, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let earned = now.saturating_duration_since(self.refilled).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The kinds of log line one client can cause many of, each summarised on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Noise {
    /// `Received from client-1: ...`
    Received,
    /// `Upcall 7 to client-1: ...`
    Upcall,
    /// How an upcall ended: returned, failed, given up.
    Outcome,
    /// `client-1 sent a bad line: ...`, and refused messages.
    Refused,
    /// `client-1 registered ...`
    Registered,
}

impl Noise {
    const ALL: [Noise; 5] = [
        Noise::Received,
        Noise::Upcall,
        Noise::Outcome,
        Noise::Refused,
        Noise::Registered,
    ];

    fn describe(self) -> &'static str {
        match self {
            Noise::Received => "messages received",
            Noise::Upcall => "upcalls sent",
            Noise::Outcome => "upcall results",
            Noise::Refused => "refused lines",
            Noise::Registered => "registrations",
        }
    }
}

/// Log lines of one kind per client per second; the rest are counted and summarised.
pub const LOG_LINES_PER_SECOND: u32 = 5;

/// The log's memory of one client's repeats: one window per [`Noise`] kind.
#[derive(Debug, Default)]
pub struct Repeats {
    windows: [Window; Noise::ALL.len()],
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    started: Option<Instant>,
    printed: u32,
    skipped: u64,
}

/// What to do with one log line.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Print it; if `summary` is set, print that first (the previous second's count).
    Print { summary: Option<String> },
    /// Count it and print nothing.
    Skip,
}

impl Repeats {
    /// Decides about one line of `kind` about `client`.
    pub fn judge(&mut self, client: &str, kind: Noise, now: Instant) -> Verdict {
        let window = &mut self.windows[kind as usize];
        let mut summary = None;
        if window
            .started
            .is_none_or_expired(now, Duration::from_secs(1))
        {
            summary = window.summary(client, kind);
            *window = Window {
                started: Some(now),
                ..Window::default()
            };
        }
        if window.printed < LOG_LINES_PER_SECOND {
            window.printed += 1;
            Verdict::Print { summary }
        } else {
            // A window that just began has printed nothing yet, so `summary` is `None` here.
            window.skipped += 1;
            Verdict::Skip
        }
    }

    /// Summaries of windows that ended with lines skipped: the sweeper prints them, so a flood
    /// that stops still gets its last count. With `all`, every open window counts as ended (the
    /// client is leaving).
    pub fn due(&mut self, client: &str, now: Instant, all: bool) -> Vec<String> {
        let mut lines = Vec::new();
        for kind in Noise::ALL {
            let window = &mut self.windows[kind as usize];
            if all
                || window
                    .started
                    .is_none_or_expired(now, Duration::from_secs(1))
            {
                if let Some(line) = window.summary(client, kind) {
                    lines.push(line);
                }
                window.skipped = 0;
            }
        }
        lines
    }
}

impl Window {
    fn summary(&self, client: &str, kind: Noise) -> Option<String> {
        (self.skipped > 0).then(|| {
            format!(
                "[log] {client}: {} more {} not shown (at most {LOG_LINES_PER_SECOND} a second)",
                thousands(self.skipped),
                kind.describe()
            )
        })
    }
}

/// `Option<Instant>::is_none_or` is newer than Rust 1.85; this is the one use we need.
trait Expired {
    fn is_none_or_expired(&self, now: Instant, after: Duration) -> bool;
}

impl Expired for Option<Instant> {
    fn is_none_or_expired(&self, now: Instant, after: Duration) -> bool {
        match self {
            None => true,
            Some(started) => now.saturating_duration_since(*started) >= after,
        }
    }
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
/// listening socket only changes the length of its queue (POSIX and Linux say so), and std has no
/// way to ask for that, so this is the crate's one call into the C library directly. On other
/// systems it does nothing, and the queue stays at 128.
#[cfg(unix)]
pub fn widen_listen_queue(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd;
    extern "C" {
        fn listen(socket: i32, backlog: i32) -> i32;
    }
    // SAFETY: `listen` takes a file descriptor and a number and touches no memory of ours; the
    // descriptor stays open for the call because `listener` is borrowed.
    let _ = unsafe { listen(listener.as_raw_fd(), LISTEN_BACKLOG) };
}

#[cfg(not(unix))]
pub fn widen_listen_queue(_listener: &std::net::TcpListener) {}

/// How many client threads this machine lets one process hold, and which limit says so.
///
/// Each client costs a thread, and each thread four memory maps (its stack and guard page, and
/// std's signal stack and guard page) and one file descriptor. Past `vm.max_map_count` a new
/// thread cannot map its signal stack and std aborts the *whole process*, every client with it;
/// past the open-file limit `accept` fails. So `servercall` holds `--max-clients` below both,
/// leaving a margin for the process's own maps and files. `None` where `/proc` does not say.
pub fn client_limit_here() -> Option<(usize, String)> {
    const MAPS_PER_CLIENT: usize = 4;
    const SPARE: usize = 1000;
    let maps = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|text| text.trim().parse::<usize>().ok())
        .map(|maps| {
            let clients = maps.saturating_sub(SPARE) / MAPS_PER_CLIENT;
            (
                clients,
                format!("vm.max_map_count {maps} allows about {clients} client threads"),
            )
        });
    // "Max open files            20000                20000                files"
    let files = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits
                .lines()
                .find(|line| line.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        })
        .map(|files| {
            let clients = files.saturating_sub(SPARE / 10);
            (
                clients,
                format!("the open-file limit {files} allows about {clients} clients"),
            )
        });
    [maps, files]
        .into_iter()
        .flatten()
        .min_by_key(|(clients, _)| *clients)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut rate = MessageRate::new(20);
        let burst = (0..100).filter(|_| rate.allow(start)).count();
        assert_eq!(burst, 40);
        // One second later, twenty more.
        let later = start + Duration::from_secs(1);
        assert_eq!((0..100).filter(|_| rate.allow(later)).count(), 20);
        // Off means off.
        let mut off = MessageRate::new(0);
        assert!((0..10_000).all(|_| off.allow(start)));
    }

    #[test]
    fn repeats_print_a_few_a_second_then_one_summary() {
        let start = Instant::now();
        let mut repeats = Repeats::default();
        let verdicts: Vec<Verdict> = (0..1000)
            .map(|_| repeats.judge("client-1", Noise::Received, start))
            .collect();
        let printed = verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Print { .. }))
            .count();
        assert_eq!(printed, LOG_LINES_PER_SECOND as usize);
        // Other kinds have their own windows.
        assert!(matches!(
            repeats.judge("client-1", Noise::Refused, start),
            Verdict::Print { summary: None }
        ));
        let next = start + Duration::from_secs(1);
        assert_eq!(
            repeats.judge("client-1", Noise::Received, next),
            Verdict::Print {
                summary: Some(
                    "[log] client-1: 995 more messages received not shown (at most 5 a second)"
                        .into()
                )
            }
        );
        // A flood that stops is summarised by `due`.
        for _ in 0..10 {
            repeats.judge("client-1", Noise::Received, next);
        }
        assert_eq!(repeats.due("client-1", next, false), Vec::<String>::new());
        assert_eq!(
            repeats.due("client-1", next + Duration::from_secs(1), false),
            vec!["[log] client-1: 6 more messages received not shown (at most 5 a second)"]
        );
    }
}
