//! How much one client may cost the server, in one place: every per-client bound, the flood
//! control, the log's summary of repeats, and what the machine itself allows.
//!
//! The rest of the server reads like the upcall story; this file is where the story meets a class
//! of 200 students with scripts. The README's "Limits" table lists the same bounds, with the flag
//! that sets each and what happens past it.

use std::time::{Duration, Instant};

use crate::log::thousands;
use crate::os::MachineFacts;

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

/// The kernel's send buffer for each client's socket (`SO_SNDBUF`, see `os::set_send_buffer`).
/// Fixed, because the kernel's own grows to 4 MiB (Linux, on loopback) before a write to a client
/// that stopped reading says "would block": until then its outbox sees nothing, and neither the
/// outbox limit nor the write timeout can act. 256 KiB is thousands of ordinary lines and more
/// than a classroom LAN or Wi-Fi holds in flight (about 125 KB at 100 Mbit/s and 10 ms). Smaller
/// costs a client that reads but stalls: with 64 KiB, a `clientcall` sharing two busy cores with
/// a flood of 4 KB upcalls (no rate limit) was dropped as "stopped reading"; with 256 KiB it
/// never was, in twelve runs.
pub const SEND_BUFFER: usize = 256 * 1024;

/// How many bytes may wait in one client's outbox, beyond what its socket's buffers already hold
/// for it (0.64 MB on loopback with [`SEND_BUFFER`]): past it, the client is dropped. At
/// least two of the longest lines, so that one long line never counts as falling behind.
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

    /// Lines were skipped that no summary has counted yet.
    pub fn owed(&self) -> bool {
        self.windows.iter().any(|window| window.skipped > 0)
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
pub(super) trait Expired {
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

/// TCP keepalive: after this long without a byte from a client, its kernel is asked whether the
/// connection still exists. A `clientcall` or `nc` that is merely quiet answers from its kernel,
/// without its user doing anything; a laptop whose lid closed, or that left the Wi-Fi, does not.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);

/// Time between two keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// A client whose computer has answered nothing for this long (no probe answered, or, on Linux,
/// data sent to it left unacknowledged) is dropped. Both clocks start at most this long after
/// the last thing it said, so it is gone within a minute of that, whether or not anything was
/// sent to it. Without this a vanished client stays for the ~15 minutes of TCP's
/// retransmissions, or for ever if nothing is sent to it.
pub const KEEPALIVE_GIVE_UP: Duration = Duration::from_secs(30);

/// How often a connection thread that has nothing to wait for looks whether its connection was
/// hung up by another thread. On Linux and macOS a `shutdown` wakes the waiting thread at once;
/// on Windows it does not (rust-lang/rust#121594), so there the thread looks every second. The
/// client has left the registry already by then: this only frees the thread.
#[cfg(windows)]
pub const HANG_UP_CHECK: Option<Duration> = Some(Duration::from_secs(1));
#[cfg(not(windows))]
pub const HANG_UP_CHECK: Option<Duration> = None;

/// What one client costs of each resource the machine limits, and what the process needs
/// besides its clients.
const MAPS_PER_CLIENT: u64 = 4;
const SPARE_MAPS: u64 = 1000;
const SPARE_THREADS: u64 = 16;
/// Address space per client: a 64 KiB stack and its guard page, std's signal stack and its guard
/// page, buffers; rounded up.
const ADDRESS_SPACE_PER_CLIENT: u64 = 256 * 1024;

/// How many client threads this machine lets the process hold, and which limit says so.
///
/// Each client costs a thread, four memory maps (its stack and guard page, and std's signal stack
/// and guard page), one file descriptor and some address space. Past `vm.max_map_count` a new
/// thread cannot map its signal stack and std aborts the *whole process*; past the others a
/// thread or a connection cannot be had. So `servercall` holds `--max-clients` below all of them,
/// leaving a margin for the process's own needs. `None` where the system states no limit.
pub fn client_limit(facts: &MachineFacts) -> Option<(usize, String)> {
    let mut limits: Vec<(u64, String)> = Vec::new();
    if let Some(maps) = facts.max_map_count {
        let clients = maps.saturating_sub(SPARE_MAPS) / MAPS_PER_CLIENT;
        limits.push((
            clients,
            format!("vm.max_map_count {maps} allows about {clients} client threads"),
        ));
    }
    if let Some(files) = facts.open_files {
        // A small limit keeps a small margin, so that `ulimit -n 100` still serves a class.
        let clients = files.saturating_sub((files / 8).clamp(8, 100));
        limits.push((
            clients,
            format!("the open-file limit {files} allows about {clients} clients"),
        ));
    }
    if let Some(free) = facts.user_threads_free {
        let clients = free.saturating_sub(SPARE_THREADS);
        limits.push((
            clients,
            format!("the user's thread limit (ulimit -u) leaves room for about {clients} clients"),
        ));
    }
    if let Some(free) = facts.cgroup_pids_free {
        let clients = free.saturating_sub(SPARE_THREADS);
        limits.push((
            clients,
            format!("the control group's pids.max leaves room for about {clients} client threads"),
        ));
    }
    if let Some(bytes) = facts.address_space_free {
        // Half of what is left: the allocator and the kernel's own mappings need their share.
        let clients = bytes / 2 / ADDRESS_SPACE_PER_CLIENT;
        limits.push((
            clients,
            format!("the address-space limit (ulimit -v) leaves room for about {clients} clients"),
        ));
    }
    limits
        .into_iter()
        .min_by_key(|(clients, _)| *clients)
        .map(|(clients, why)| (usize::try_from(clients).unwrap_or(usize::MAX).max(1), why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_machine_limit_decides_and_a_small_one_still_serves() {
        assert_eq!(client_limit(&MachineFacts::default()), None);
        let small = MachineFacts {
            open_files: Some(100),
            max_map_count: Some(65_530),
            ..MachineFacts::default()
        };
        assert_eq!(
            client_limit(&small),
            Some((88, "the open-file limit 100 allows about 88 clients".into()))
        );
        let container = MachineFacts {
            open_files: Some(1_048_576),
            cgroup_pids_free: Some(200),
            ..MachineFacts::default()
        };
        assert_eq!(client_limit(&container).unwrap().0, 184);
        let tiny = MachineFacts {
            user_threads_free: Some(3),
            ..MachineFacts::default()
        };
        assert_eq!(client_limit(&tiny).unwrap().0, 1);
    }

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
