//! `cargo run --release --example bench`: what an upcall costs, measured against raw TCP.
//!
//! One run prints one table. Each part answers one question, and every number in it was measured
//! in this run, on this machine, next to the baseline it is divided by (the `× base` column):
//!
//! 1. **Baseline**: raw `std::net` ping-pong on loopback, `TCP_NODELAY` on both ends, the same
//!    bytes as the lab (`MSG haii` out, a line as long as its `UPCALL` back), answered by a thread
//!    per connection that reads with a buffer as large as the server's. No protocol at all.
//!    Row 1b also sends the `RETURN` line (the raw server reads and ignores it): the same bytes and
//!    writes as the lab's round trip, so 2 against 1b is what the server's logic costs.
//! 2. **Message to upcall**: `MSG haii` until `UPCALL n on_event Upcall event: Processing haii`
//!    arrives; then `RETURN n ok`, as `clientcall` does (after the clock stopped). In row 2b the
//!    `RETURN` leaves in the same write as the next `MSG`: the same lines with one wake-up of the
//!    server's thread less, so 2b against 1 is the server's work alone.
//! 3. **Server-initiated call**: `Server::call`, which is what the console's `call` runs, until
//!    the client's `RETURN` is back in the calling thread. Row 3b types the same `call` into
//!    `servercall`'s console (stdin in, stdout out) to show what the two pipes add.
//! 4. **Broadcast fan-out** to N clients of the real `servercall`, through its console: from
//!    writing `broadcast` on its stdin until the last client has its `UPCALL`, and until the
//!    console has said that every client returned. Rows 4r do the same against the least a
//!    thread-per-client server must do (see `fan_out.rs` beside this file).
//! 5. **Capacity**: N idle, registered clients held by one `servercall`: its threads, RSS, open
//!    files and memory maps per client, and which limit of this machine stops a larger N.
//! 6. **Pipelined throughput** on one connection, K messages in flight, against raw TCP writing
//!    one line per system call (the server's way) and raw TCP coalescing its writes.
//!
//! **Why parts 1 and 2 take turns.** A shared machine drifts: another program starts a build,
//! and every round trip gets slower for a while. Rows measured one after the other carry that
//! drift into their ratio (eight runs of the old way gave row 2 at 0.73–1.75× row 1b). So parts 1
//! and 2 run together, in turns of 50 round trips of each row (1, 2, 1b, 2b, then 2b, 1b, 2, 1,
//! ...; the first 5 of each turn are thrown away, as they find the caches full of the other
//! rows' data). A round is `--block` round trips of each row; a ratio is taken round by round,
//! between p50s measured within the same few tens of milliseconds, and the table gives the
//! median of those ratios with their IQR and range. Five runs in a row then agree within a few
//! hundredths.
//!
//! Parts 1, 2, 3 and 6 run the library server (`upcall::server::Server`, log off) on a thread of
//! this process, as `servercall` runs it, and the raw server the same way, so both face the same
//! scheduler. Parts 4 and 5 need 10,000 sockets on each side, more than one process may open here
//! (20,000 files), so the server is a process of its own and the clients live in this one.
//!
//! **Why parts 1 to 3 run twice.** On a virtual machine, a thread that wakes another on the other
//! vCPU may find that vCPU halted (idle), and waking it is a trip through the hypervisor: tens of
//! microseconds, more than the whole TCP round trip. So on a quiet VM the "as scheduled" rows
//! measure mostly how fast an idle vCPU wakes up. The `[1 CPU]` rows run the same parts again in a
//! child process pinned to one CPU (`taskset -c 0`), where every wake-up is local: that is where
//! the cost of the server's own work shows.
//!
//! Run `--help` for the options; `--quick` is the CI mode.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use upcall::server::Outcome;

/// `progress!` says what the bench is doing on stderr, so that the table on stdout stays clean.
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("bench: {}", format_args!($($arg)*)) };
}

mod burst;
mod fan_out;
mod system;
mod wire;

use fan_out::LoadMode;
use wire::{bad, parse_upcall, Conn, LibraryServer, RawServer, ServerProcess, WriteBytes};

/// What the clients send: the lab's message.
const MSG_LINE: &[u8] = b"MSG haii\n";
/// How long any single step may block before the bench gives up and says so.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// The kernel's clock tick for `/proc/<pid>/stat` times (USER_HZ: 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

const HELP: &str = "\
bench: what an upcall costs, measured against raw TCP on loopback (std only).

Usage: cargo run --release --example bench -- [options]

Options:
  --quick               CI mode: fewer samples, N = 100,1000, one K (well under a minute)
  --parts LIST          parts to run, e.g. 1,2,6 (default all: 1 baseline, 2 message, 3 call,
                        4 broadcast and 5 capacity (these two run together), 6 pipelined,
                        7 a burst of connections)
  --clients LIST        N for parts 4 and 5 (default 100,1000,10000)
  --rounds R            rounds of parts 1 and 2, which take turns in each (default 60)
  --block B             round trips of each row of parts 1 and 2 in a round, in turns of 50
                        (default 500; --quick: 200)
  --repeats R           rounds of part 3 and of each pipelined K (default 5)
  --iterations I        round trips per round of part 3 (default 5000)
  --broadcasts B        measured broadcasts per N, after 2 for warm-up (default 20)
  --inflight LIST       K for part 6 (default 1,16,128)
  --seconds S           length of one pipelined round (default 1)
  --load-threads T      threads of the load that holds the N clients (default 4)
  --load MODE           how the load waits for its upcalls: poll:MICROS (nonblocking reads,
                        sleep MICROS when the next client has nothing yet; default poll:100)
                        or block (blocking reads: exact, but one wake-up per client)
  --no-one-cpu          do not rerun parts 1-3 pinned to one CPU (needs `taskset`)
  --servercall PATH     the servercall binary (default: built next to this example)
  --help                this text";

// ---------------------------------------------------------------------------------------------
// Options

#[derive(Debug, Clone)]
pub struct Options {
    quick: bool,
    parts: BTreeSet<u32>,
    pub clients: Vec<usize>,
    rounds: usize,
    block: usize,
    repeats: usize,
    iterations: usize,
    pub broadcasts: usize,
    inflight: Vec<usize>,
    seconds: f64,
    pub load_threads: usize,
    pub load_mode: LoadMode,
    one_cpu: bool,
    /// Set in the child process that runs parts 1-3 pinned to one CPU.
    one_cpu_child: bool,
    servercall: Option<PathBuf>,
}

fn options(args: Vec<String>) -> Result<Options, String> {
    let quick = args.iter().any(|arg| arg == "--quick");
    let mut options = Options {
        quick,
        parts: (1..=7).collect(),
        clients: if quick {
            vec![100, 1000]
        } else {
            vec![100, 1000, 10_000]
        },
        rounds: 60,
        block: if quick { 200 } else { 500 },
        repeats: if quick { 3 } else { 5 },
        iterations: if quick { 2000 } else { 5000 },
        broadcasts: if quick { 5 } else { 20 },
        inflight: if quick { vec![16] } else { vec![1, 16, 128] },
        seconds: if quick { 0.5 } else { 1.0 },
        load_threads: 4,
        load_mode: LoadMode::Poll(Duration::from_micros(100)),
        one_cpu: true,
        one_cpu_child: false,
        servercall: None,
    };
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => {}
            "--help" | "-h" => return Err(String::new()),
            "--parts" => {
                options.parts = list(&value()?, 1)?.into_iter().map(|p| p as u32).collect()
            }
            "--clients" => options.clients = list(&value()?, 1)?,
            "--rounds" => options.rounds = number(&value()?, 1)?,
            "--block" => options.block = number(&value()?, 1)?,
            "--repeats" => options.repeats = number(&value()?, 1)?,
            "--iterations" => options.iterations = number(&value()?, 1)?,
            "--broadcasts" => options.broadcasts = number(&value()?, 1)?,
            "--inflight" => options.inflight = list(&value()?, 1)?,
            "--seconds" => {
                let text = value()?;
                options.seconds = match text.parse::<f64>() {
                    Ok(s) if s > 0.0 && s < 3600.0 => s,
                    _ => return Err(format!("--seconds wants a positive number, got `{text}`")),
                }
            }
            "--load-threads" => options.load_threads = number(&value()?, 1)?,
            "--load" => {
                let mode = value()?;
                options.load_mode = match mode.as_str() {
                    "block" => LoadMode::Block,
                    "poll" => LoadMode::Poll(Duration::from_micros(100)),
                    _ => match mode.strip_prefix("poll:") {
                        Some(micros) => {
                            LoadMode::Poll(Duration::from_micros(number(micros, 1)? as u64))
                        }
                        None => {
                            return Err(format!(
                                "--load takes block, poll or poll:MICROS, not {mode}"
                            ))
                        }
                    },
                }
            }
            "--no-one-cpu" => options.one_cpu = false,
            "--one-cpu-child" => options.one_cpu_child = true,
            "--servercall" => options.servercall = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if options.parts.iter().any(|part| !(1..=7).contains(part)) {
        return Err("--parts takes numbers from 1 to 7".into());
    }
    Ok(options)
}

fn number(text: &str, min: usize) -> Result<usize, String> {
    match text.replace('_', "").parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("expected a number of at least {min}, got `{text}`")),
    }
}

fn list(text: &str, min: usize) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|item| number(item.trim(), min))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Statistics and the table

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The `q` quantile (0 to 1) of `values`, interpolated between the two nearest ranks.
fn quantile(values: &[f64], q: f64) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => 0.0,
        n => {
            let at = q * (n - 1) as f64;
            let (low, high) = (at.floor() as usize, at.ceil() as usize);
            values[low] + (values[high] - values[low]) * (at - low as f64)
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(|a, b| a.total_cmp(b));
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

pub fn show(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.1} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.2} ms", micros / 1000.0)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

pub fn thousands(n: f64) -> String {
    let digits = format!("{n:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && c != '-' && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One row of the latency table.
pub struct Row {
    /// `1`, `1b`, `2`, ...: what the ratios name.
    id: String,
    label: String,
    size: String,
    count: usize,
    p50: Duration,
    p99: Duration,
    /// Rows of one group are divided by the group's baseline row.
    group: String,
    baseline: bool,
    note: String,
    /// The p50 of each round, for rows measured in the same rounds (parts 1 and 2); empty
    /// otherwise. Round `i` of one row ran next to round `i` of every other row of its group.
    rounds: Vec<Duration>,
}

impl Row {
    fn from_samples(
        label: &str,
        size: &str,
        group: &str,
        baseline: bool,
        mut samples: Vec<Duration>,
        note: &str,
    ) -> Row {
        samples.sort();
        Row {
            id: label.split(' ').next().unwrap_or("").into(),
            label: label.into(),
            size: size.into(),
            count: samples.len(),
            p50: percentile(&samples, 50.0),
            p99: percentile(&samples, 99.0),
            group: group.into(),
            baseline,
            note: note.into(),
            rounds: Vec::new(),
        }
    }

    /// The row as one tab-separated line, for the one-CPU child to hand to its parent.
    fn to_line(&self) -> String {
        format!(
            "ROW\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            self.id,
            self.label,
            self.size,
            self.group,
            self.baseline,
            self.count,
            self.p50.as_nanos(),
            self.p99.as_nanos(),
            self.note,
            self.rounds
                .iter()
                .map(|p50| p50.as_nanos().to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    }

    fn from_line(line: &str) -> Option<Row> {
        let fields: Vec<&str> = line.strip_prefix("ROW\t")?.split('\t').collect();
        let [id, label, size, group, baseline, count, p50, p99, note, rounds] = fields[..] else {
            return None;
        };
        let rounds: Option<Vec<Duration>> = rounds
            .split(',')
            .filter(|p50| !p50.is_empty())
            .map(|p50| Some(Duration::from_nanos(p50.parse().ok()?)))
            .collect();
        Some(Row {
            id: id.into(),
            label: label.into(),
            size: size.into(),
            group: group.into(),
            baseline: baseline == "true",
            count: count.parse().ok()?,
            p50: Duration::from_nanos(p50.parse().ok()?),
            p99: Duration::from_nanos(p99.parse().ok()?),
            note: note.into(),
            rounds: rounds?,
        })
    }
}

/// A pipelined result: upcalls (or lines) per second over the rounds.
struct Rate {
    label: String,
    k: usize,
    median: f64,
    min: f64,
    max: f64,
    /// Divided by the row of the same K whose label starts with this.
    baseline: bool,
    note: String,
}

/// The ratios parts 1 and 2 are for: (row, over row, what it says).
const RATIOS: [(&str, &str, &str); 3] = [
    ("2", "1b", "MSG → UPCALL over raw TCP with the same lines"),
    ("2", "1", "MSG → UPCALL over the 2-line ping-pong"),
    ("2b", "1", "RETURN with next MSG, over the 2-line ping-pong"),
];

/// `row` over `base`, round by round; `None` unless both were measured in the same rounds.
fn per_round_ratios(row: &Row, base: &Row) -> Option<Vec<f64>> {
    if row.rounds.is_empty() || row.rounds.len() != base.rounds.len() {
        return None;
    }
    let ratios = row.rounds.iter().zip(&base.rounds);
    Some(
        ratios
            .map(|(row, base)| row.as_secs_f64() / base.as_secs_f64())
            .collect(),
    )
}

/// Everything one run measured, printed at the end as one table.
#[derive(Default)]
pub struct Report {
    pub latency: Vec<Row>,
    rates: Vec<Rate>,
    pub capacity: Vec<String>,
    pub limits: Vec<String>,
    pub problems: Vec<String>,
    /// Things left out that do not make the run fail (no `taskset` on this machine).
    notes: Vec<String>,
    header: Vec<String>,
}

impl Report {
    /// The ratios of parts 1 and 2, each the median of its rounds', with their spread.
    fn print_ratios(&self, out: &mut String) {
        let mut lines = Vec::new();
        for tag in [AS_SCHEDULED, ONE_CPU] {
            let find = |id: &str| {
                let in_group = |row: &&Row| row.group == tag.group && row.id == id;
                self.latency.iter().find(in_group)
            };
            for (top, bottom, what) in RATIOS {
                let (Some(row), Some(base)) = (find(top), find(bottom)) else {
                    continue;
                };
                let Some(ratios) = per_round_ratios(row, base) else {
                    continue;
                };
                let (min, max) = (quantile(&ratios, 0.0), quantile(&ratios, 1.0));
                let (q1, q3) = (quantile(&ratios, 0.25), quantile(&ratios, 0.75));
                lines.push(format!(
                    "{:<64} {:>6} {:>6.2} {:>11} {:>11}",
                    format!("{top:<2} / {bottom:<2} {what}{}", tag.suffix),
                    ratios.len(),
                    median(&ratios),
                    format!("{q1:.2}–{q3:.2}"),
                    format!("{min:.2}–{max:.2}"),
                ));
            }
        }
        if lines.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\n{:<64} {:>6} {:>6} {:>11} {:>11}",
            "ratio of p50s, round by round (parts 1 and 2 take turns)",
            "rounds",
            "median",
            "IQR",
            "min–max"
        );
        for line in lines {
            let _ = writeln!(out, "{line}");
        }
    }

    fn print(&self) {
        let mut out = String::new();
        for line in &self.header {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "\n{:<46} {:>7} {:>7} {:>10} {:>10} {:>7}  notes",
            "part", "size", "samples", "p50", "p99", "× base"
        );
        for row in &self.latency {
            let base = self
                .latency
                .iter()
                .find(|other| other.baseline && other.group == row.group);
            // Rows measured in the same rounds: the median of the ratios of each round, which
            // the machine's drift between rounds does not move. Other rows: the ratio of p50s.
            let ratio = base.map_or("-".to_string(), |base| {
                let ratio = match per_round_ratios(row, base) {
                    Some(ratios) => median(&ratios),
                    None => row.p50.as_secs_f64() / base.p50.as_secs_f64(),
                };
                format!("{ratio:.2}")
            });
            let _ = writeln!(
                out,
                "{:<46} {:>7} {:>7} {:>10} {:>10} {:>7}  {}",
                row.label,
                row.size,
                row.count,
                show(row.p50),
                show(row.p99),
                ratio,
                row.note
            );
        }
        self.print_ratios(&mut out);
        if !self.rates.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<46} {:>5} {:>11} {:>19} {:>7}  notes",
                "part", "K", "median/s", "min–max/s", "× base"
            );
            for rate in &self.rates {
                let base = self.rates.iter().find(|r| r.baseline && r.k == rate.k);
                let ratio = base.map_or("-".to_string(), |base| {
                    format!("{:.2}", rate.median / base.median)
                });
                let _ = writeln!(
                    out,
                    "{:<46} {:>5} {:>11} {:>19} {:>7}  {}",
                    rate.label,
                    rate.k,
                    thousands(rate.median),
                    format!("{}–{}", thousands(rate.min), thousands(rate.max)),
                    ratio,
                    rate.note
                );
            }
        }
        if !self.capacity.is_empty() {
            let _ = writeln!(
                out,
                "\n5  capacity: idle registered clients, per server process"
            );
            for line in &self.capacity {
                let _ = writeln!(out, "   {line}");
            }
        }
        if !self.limits.is_empty() {
            let _ = writeln!(
                out,
                "\n5  what stops a larger N (servercall's per-client costs above against this machine's limits)"
            );
            for line in &self.limits {
                let _ = writeln!(out, "   {line}");
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "NOTE: {note}");
        }
        for problem in &self.problems {
            let _ = writeln!(out, "PROBLEM: {problem}");
        }
        print!("{out}");
    }
}

// ---------------------------------------------------------------------------------------------
// Parts 1, 2 and 3: one round trip at a time

/// Where a latency row goes: the plain run, or the one pinned to one CPU.
struct Tag {
    suffix: &'static str,
    group: &'static str,
}

const AS_SCHEDULED: Tag = Tag {
    suffix: "",
    group: "as scheduled",
};
const ONE_CPU: Tag = Tag {
    suffix: " [1 CPU]",
    group: "one CPU",
};

/// What the ping-pong client does with the `UPCALL` (or raw reply) it got.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Nothing: the pure ping-pong of the baseline.
    None,
    /// `RETURN <id> ok` at once, in a write of its own, after the clock stopped (`clientcall`).
    Alone,
    /// `RETURN <id> ok` in the same write as the next `MSG`: the same lines, one wake-up less.
    WithNextMessage,
}

/// `count` round trips of `MSG haii` → one line back; returns the time of each.
///
/// With [`Answer::WithNextMessage`], the `RETURN` owed for the last round trip leaves at the
/// end, after the clock stopped, so that no upcall is left pending between blocks.
fn ping_pong(conn: &mut Conn, count: usize, answer: Answer) -> io::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(count);
    let mut out = Vec::with_capacity(64);
    for _ in 0..count {
        out.extend_from_slice(MSG_LINE);
        let start = Instant::now();
        conn.send(&out)?;
        out.clear();
        let line = conn.line()?;
        let elapsed = start.elapsed();
        let Some((id, _, _)) = parse_upcall(line) else {
            return Err(bad(format!(
                "not an UPCALL: {:?}",
                String::from_utf8_lossy(line)
            )));
        };
        let _ = writeln!(WriteBytes(&mut out), "RETURN {id} ok");
        if answer == Answer::Alone {
            conn.send(&out)?;
        }
        if answer != Answer::WithNextMessage {
            out.clear();
        }
        samples.push(elapsed);
    }
    if !out.is_empty() {
        conn.send(&out)?;
    }
    Ok(samples)
}

/// One row of parts 1 and 2: which server, and what the client does with its answer.
struct Trip {
    label: &'static str,
    library: bool,
    answer: Answer,
    note: &'static str,
}

/// Rows 1, 2, 1b, 2b, in the order a round runs them: raw, server, raw, server.
const TRIPS: [Trip; 4] = [
    Trip {
        label: "1  raw TCP ping-pong",
        library: false,
        answer: Answer::None,
        note: "",
    },
    Trip {
        label: "2  MSG → UPCALL (then RETURN)",
        library: true,
        answer: Answer::Alone,
        note: "the library server, log off; RETURN in a write of its own",
    },
    Trip {
        label: "1b raw TCP ping-pong + RETURN line",
        library: false,
        answer: Answer::Alone,
        note: "the lab's bytes and writes, no protocol",
    },
    Trip {
        label: "2b MSG → UPCALL, RETURN with next MSG",
        library: true,
        answer: Answer::WithNextMessage,
        note: "RETURN and MSG in one write: one wake-up less",
    },
];

/// Round trips of one row in a turn of parts 1 and 2, after [`TURN_WARM_UP`] more that are
/// thrown away: the first trip or two of a turn find the caches full of the other rows' data
/// (measured: every row about 5 µs slower when the rows took turns trip by trip).
const TURN: usize = 50;
const TURN_WARM_UP: usize = 5;

/// Parts 1 and 2 together, in short turns (ABAB...): 50 round trips of row 1, 50 of row 2, of 1b,
/// of 2b, then 2b, 1b, 2, 1, and so on, so that whatever the machine does meanwhile (another
/// program's build taking the CPU, or the caches) falls on both sides of a ratio alike, a
/// millisecond or two apart. A round is `--block` round trips of each row; each row keeps the
/// p50 of each round, and the ratios are taken round by round.
fn part_rounds(options: &Options, tag: &Tag, report: &mut Report) -> io::Result<()> {
    let parts = &options.parts;
    progress!(
        "1 and 2: raw TCP and MSG → UPCALL, taking turns{}",
        tag.suffix
    );
    let raw = RawServer::start(false)?;
    let mut raw_conn = Conn::connect(raw.address, 4096)?;
    let server = LibraryServer::start()?;
    let (mut upcall_conn, _) = Conn::register(server.address, "on_event", 4096)?;
    let trips: Vec<&Trip> = TRIPS
        .iter()
        .filter(|trip| parts.contains(&if trip.library { 2 } else { 1 }))
        .collect();
    let mut samples = vec![Vec::new(); trips.len()];
    let mut rounds = vec![Vec::new(); trips.len()];
    // Warm-up: the connections, the servers' threads and the caches, once each.
    for trip in &trips {
        let conn = if trip.library {
            &mut upcall_conn
        } else {
            &mut raw_conn
        };
        ping_pong(conn, options.block.min(1000), trip.answer)?;
    }
    let turns = options.block.div_ceil(TURN);
    for _ in 0..options.rounds {
        let mut round = vec![Vec::with_capacity(turns * TURN); trips.len()];
        for turn in 0..turns {
            let mut order: Vec<usize> = (0..trips.len()).collect();
            if turn % 2 == 1 {
                order.reverse();
            }
            for index in order {
                let trip = trips[index];
                let conn = if trip.library {
                    &mut upcall_conn
                } else {
                    &mut raw_conn
                };
                let mut times = ping_pong(conn, TURN_WARM_UP + TURN, trip.answer)?;
                round[index].extend(times.drain(TURN_WARM_UP..));
            }
        }
        for (index, mut round) in round.into_iter().enumerate() {
            round.sort();
            rounds[index].push(percentile(&round, 50.0));
            samples[index].append(&mut round);
        }
    }
    let baseline_note = format!(
        "baseline: {} B out, {} B back",
        MSG_LINE.len(),
        wire::RAW_REPLY.len()
    );
    for ((trip, samples), rounds) in trips.iter().zip(samples).zip(rounds) {
        let baseline = trip.answer == Answer::None;
        let note = if baseline { &baseline_note } else { trip.note };
        let label = format!("{}{}", trip.label, tag.suffix);
        let mut row = Row::from_samples(&label, "-", tag.group, baseline, samples, note);
        row.rounds = rounds;
        report.latency.push(row);
    }
    // Rows in the table's order: 1, 1b, 2, 2b.
    report.latency.sort_by_key(|row| row.id.clone());
    Ok(())
}

/// A client that answers every `uppercase` upcall at once, on a thread of its own (as
/// `clientcall`'s reader thread does). Stops at the end of the stream.
fn uppercase_client(mut conn: Conn) -> JoinHandle<io::Result<()>> {
    thread::spawn(move || loop {
        let line = match conn.line() {
            Ok(line) => line,
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error),
        };
        if line == b"BYE" {
            return Ok(());
        }
        let Some((id, _, argument)) = parse_upcall(line) else {
            return Err(bad(format!(
                "not an UPCALL: {:?}",
                String::from_utf8_lossy(line)
            )));
        };
        let answer = format!(
            "RETURN {id} {}\n",
            String::from_utf8_lossy(argument).to_uppercase()
        );
        conn.send(answer.as_bytes())?;
    })
}

fn part_call(
    options: &Options,
    tag: &Tag,
    report: &mut Report,
    servercall: Option<&Path>,
) -> io::Result<()> {
    progress!("3: Server::call → RETURN{}", tag.suffix);
    let server = LibraryServer::start()?;
    let (conn, name) = Conn::register(server.address, "uppercase", 4096)?;
    let client = uppercase_client(conn);
    let warm_up = options.iterations.min(1000);
    let mut samples = Vec::new();
    for i in 0..warm_up + options.repeats * options.iterations {
        let start = Instant::now();
        let result = server.server.call(&name, "uppercase", "x");
        let elapsed = start.elapsed();
        if result.outcome != Outcome::Returned("X".into()) {
            return Err(bad(format!("call returned {result}")));
        }
        if i >= warm_up {
            samples.push(elapsed);
        }
    }
    report.latency.push(Row::from_samples(
        &format!("3  call → RETURN (Server::call){}", tag.suffix),
        "-",
        tag.group,
        false,
        samples,
        "what the console's `call` runs",
    ));
    drop(server);
    let _ = client.join();

    // The same call typed into servercall's console: two pipes and a process more.
    let Some(path) = servercall else {
        return Ok(());
    };
    progress!("3b: `call` through servercall's console{}", tag.suffix);
    let mut process = ServerProcess::servercall(path, 16)?;
    let (conn, name) = Conn::register(process.address, "uppercase", 4096)?;
    let client = uppercase_client(conn);
    let iterations = (options.repeats * options.iterations / 5).max(100);
    let command = format!("call {name} uppercase x");
    let expected = format!("{name} returned: X");
    let mut samples = Vec::new();
    for i in 0..200 + iterations {
        let start = process.console(&command)?;
        let (at, line) = process.wait_for("", STEP_TIMEOUT)?;
        if line != expected {
            return Err(bad(format!("the console said {line:?}")));
        }
        if i >= 200 {
            samples.push(at - start);
        }
    }
    report.latency.push(Row::from_samples(
        &format!("3b call → RETURN (servercall's console){}", tag.suffix),
        "-",
        tag.group,
        false,
        samples,
        "stdin → console → client → console → stdout",
    ));
    process.stop();
    let _ = client.join();
    Ok(())
}

fn latency_parts(options: &Options, tag: &Tag, report: &mut Report, servercall: Option<&Path>) {
    let parts = &options.parts;
    let mut problem = |part: u32, result: io::Result<()>| {
        if let Err(error) = result {
            report
                .problems
                .push(format!("part {part}{}: {error}", tag.suffix));
        }
    };
    if parts.contains(&1) || parts.contains(&2) {
        let mut rows = Report::default();
        let part = if parts.contains(&1) { 1 } else { 2 };
        problem(part, part_rounds(options, tag, &mut rows));
        report.latency.append(&mut rows.latency);
    }
    if parts.contains(&3) {
        let mut rows = Report::default();
        problem(3, part_call(options, tag, &mut rows, servercall));
        report.latency.append(&mut rows.latency);
    }
}

/// Runs parts 1 to 3 again in a child process pinned to CPU 0, and adds its rows.
fn latency_parts_on_one_cpu(options: &Options, report: &mut Report, servercall: Option<&Path>) {
    let taskset = Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !taskset.is_ok_and(|status| status.success()) {
        report
            .notes
            .push("no `taskset` here: the [1 CPU] rows were skipped".into());
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let parts: Vec<String> = options
        .parts
        .iter()
        .filter(|part| **part <= 3)
        .map(u32::to_string)
        .collect();
    let mut child = Command::new("taskset");
    child
        .args(["-c", "0"])
        .arg(exe)
        .args(["--one-cpu-child", "--parts", &parts.join(",")])
        .args(["--rounds", &options.rounds.to_string()])
        .args(["--block", &options.block.to_string()])
        .args(["--repeats", &options.repeats.to_string()])
        .args(["--iterations", &options.iterations.to_string()]);
    if let Some(path) = servercall {
        child.arg("--servercall").arg(path);
    }
    match child.stderr(Stdio::inherit()).output() {
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout);
            for line in text.lines() {
                if let Some(row) = Row::from_line(line) {
                    report.latency.push(row);
                } else if let Some(problem) = line.strip_prefix("PROBLEM: ") {
                    report.problems.push(problem.to_string());
                }
            }
        }
        Err(error) => report
            .problems
            .push(format!("cannot run the [1 CPU] child: {error}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Part 6: pipelined

/// One connection, `k` messages in flight, for `duration` (after a tenth of it for warm-up);
/// returns upcalls (or, from the raw server, lines) per second.
///
/// Every `UPCALL` is answered with `RETURN`. The client batches what it writes (the `RETURN`s it
/// owes and the `MSG`s that refill the window leave in one write), so that its own system calls
/// are not what is measured. With the raw server (`upcall == false`) there is no `WELCOME`.
fn pipelined(
    address: std::net::SocketAddr,
    upcall: bool,
    k: usize,
    duration: Duration,
) -> io::Result<f64> {
    let mut conn = if upcall {
        Conn::register(address, "on_event", 256 * 1024)?.0
    } else {
        Conn::connect(address, 256 * 1024)?
    };
    let mut out = Vec::with_capacity(64 * 1024);
    // Sends for `duration`, then waits for the last answers: (upcalls, time until the last).
    let mut run = |duration: Duration| -> io::Result<(usize, Duration)> {
        let start = Instant::now();
        let (mut received, mut in_flight) = (0, 0);
        loop {
            let sending = start.elapsed() < duration;
            if !sending && in_flight == 0 {
                break;
            }
            while sending && in_flight < k {
                out.extend_from_slice(MSG_LINE);
                in_flight += 1;
            }
            if !out.is_empty() {
                conn.send(&out)?;
                out.clear();
            }
            let mut line = Some(conn.line()?);
            while let Some(bytes) = line {
                let Some((id, _, _)) = parse_upcall(bytes) else {
                    return Err(bad(format!(
                        "not an UPCALL: {:?}",
                        String::from_utf8_lossy(bytes)
                    )));
                };
                let _ = writeln!(WriteBytes(&mut out), "RETURN {id} ok");
                in_flight -= 1;
                received += 1;
                line = conn.buffered_line();
            }
        }
        let elapsed = start.elapsed();
        if !out.is_empty() {
            conn.send(&out)?;
            out.clear();
        }
        Ok((received, elapsed))
    };
    run(duration / 10)?;
    let (upcalls, elapsed) = run(duration)?;
    Ok(upcalls as f64 / elapsed.as_secs_f64())
}

fn part_pipelined(options: &Options, report: &mut Report) -> io::Result<()> {
    let round = Duration::from_secs_f64(options.seconds);
    for &k in &options.inflight {
        progress!("6: pipelined, K = {k}");
        let (mut raw, mut batched, mut upcalls) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..options.repeats {
            // Interleaved, so that a burst of load from elsewhere hits all three alike.
            let server = RawServer::start(false)?;
            raw.push(pipelined(server.address, false, k, round)?);
            drop(server);
            let server = LibraryServer::start()?;
            upcalls.push(pipelined(server.address, true, k, round)?);
            drop(server);
            let server = RawServer::start(true)?;
            batched.push(pipelined(server.address, false, k, round)?);
        }
        let rounds = format!("{} rounds of {}", options.repeats, show(round));
        for (label, rates, baseline, note) in [
            (
                "6  raw TCP, one write per line: lines/s",
                raw,
                true,
                "baseline: the server's way of writing",
            ),
            (
                "6  MSG → UPCALL (+ RETURN): upcalls/s",
                upcalls,
                false,
                "the library server, log off",
            ),
            (
                "6  raw TCP, writes coalesced: lines/s",
                batched,
                false,
                "what one write per read would allow",
            ),
        ] {
            report.rates.push(Rate {
                label: label.into(),
                k,
                median: median(&rates),
                min: rates.iter().copied().fold(f64::INFINITY, f64::min),
                max: rates.iter().copied().fold(0.0, f64::max),
                baseline,
                note: format!("{note}; {rounds}"),
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--raw-fan-out-server") {
        return fan_out::raw_fan_out_server();
    }
    let options = match options(args) {
        Ok(options) => options,
        Err(error) if error.is_empty() => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("bench: {error}. Try --help.");
            return ExitCode::from(2);
        }
    };
    if options.one_cpu_child {
        let mut report = Report::default();
        latency_parts(
            &options,
            &ONE_CPU,
            &mut report,
            options.servercall.as_deref(),
        );
        for row in &report.latency {
            println!("{}", row.to_line());
        }
        for problem in &report.problems {
            println!("PROBLEM: {problem}");
        }
        return ExitCode::SUCCESS;
    }

    let began = Instant::now();
    let cpu_before = system::cpu_snapshot();
    let load_before = system::load_average();
    let mut report = Report::default();
    let parts = options.parts.clone();
    let servercall = if parts.iter().any(|p| [3, 4, 5, 7].contains(p)) {
        let found = wire::find_servercall(options.servercall.as_deref());
        if found.is_none() {
            report.problems.push(
                "servercall not found: parts 3b, 4, 5 and 7 skipped (try --servercall PATH)".into(),
            );
        }
        found
    } else {
        None
    };

    latency_parts(&options, &AS_SCHEDULED, &mut report, servercall.as_deref());
    if options.one_cpu && parts.iter().any(|p| *p <= 3) {
        latency_parts_on_one_cpu(&options, &mut report, servercall.as_deref());
    }
    if parts.contains(&6) {
        if let Err(error) = part_pipelined(&options, &mut report) {
            report.problems.push(format!("part 6: {error}"));
        }
    }
    if parts.contains(&4) || parts.contains(&5) {
        if let Some(path) = &servercall {
            fan_out::part_fan_out(&options, &mut report, path);
        }
    }
    if parts.contains(&7) {
        if let Some(path) = &servercall {
            burst::part_burst(&options, &mut report, path);
        }
    }

    let cpu_after = system::cpu_snapshot();
    let busy = system::cpu_seconds(cpu_after.0 - cpu_before.0);
    let all = system::cpu_seconds(cpu_after.1 - cpu_before.1);
    let ours = system::cpu_seconds(cpu_after.2 - cpu_before.2);
    report.header = vec![
        format!(
            "upcall bench: {}{}",
            system::machine(),
            if options.quick { ", --quick" } else { "" }
        ),
        format!(
            "load average (1/5/15 min): {load_before} at the start, {} at the end",
            system::load_average()
        ),
        format!(
            "CPU time while it ran ({}): machine busy {busy:.1} s of {all:.1} s; this bench and its servers {ours:.1} s; everything else {:.1} s",
            show(began.elapsed()),
            (busy - ours).max(0.0)
        ),
    ];
    report.print();
    if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
