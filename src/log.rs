//! Printing for the programs: one line at a time, never a panic if nobody is listening, and never a
//! client held up by a slow terminal.
//!
//! Two ways to print live here:
//!
//! - [`say`] prints a line at once. `println!` panics when stdout is a closed pipe (`servercall |
//!   head`, a detached `docker exec`); `say` drops the line instead. The programs use it for their
//!   first and last lines, when nothing else is running.
//! - [`Log`] is the server's log. Connection threads never print themselves: they hand each line
//!   to one printing thread through a bounded queue (a [`Printer`], as the client's screen does),
//!   and go back to their clients at once. If the
//!   terminal is slow or paused (Ctrl-S, a full pipe), the queue fills, and what does not fit is
//!   *counted*, not waited for: the printing thread says `[log] 12,345 lines dropped: the terminal is
//!   not keeping up` when it can print again. A log that could block would let a paused terminal
//!   freeze every client, which is what a synchronous `println!` in each thread does.
//!
//! The operator's console prints through the same queue ([`Log::print`], which waits instead of
//! dropping), so its answers and the log lines stay in the order they happened.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::printer::{Output, Printer};

/// Prints one line on stdout, ignoring a closed stdout.
///
/// Each call writes the whole line under stdout's own lock, so lines printed from different
/// threads never mix within a line.
pub fn say(line: fmt::Arguments<'_>) {
    let mut out = io::stdout().lock();
    let _ = out.write_fmt(line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// `say!("...", args)`: [`say`] with `format!` syntax.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::log::say(format_args!($($arg)*))
    };
}

/// How many lines may wait for the printing thread. A terminal prints tens of thousands of lines a
/// second, so a full queue means it is paused or far behind, not a burst.
pub const LOG_QUEUE: usize = 4096;

/// How long the console's own lines wait for a paused terminal before they are dropped (and
/// counted) too: long enough for any terminal that is merely slow, short enough that `quit`
/// still ends the program when nobody reads its output at all.
pub const CONSOLE_PATIENCE: Duration = Duration::from_secs(1);

/// The server's log: a bounded queue to one printing thread (a [`Printer`]). Cheap to clone.
#[derive(Clone)]
pub struct Log {
    /// Off when the log is off (`--quiet`, the benchmark, the tests).
    printer: Printer<String>,
    /// Lines the printing thread could not write (a full disk, a closed pipe), and not yet
    /// reported.
    unwritten: Arc<Unwritten>,
}

/// Lines that could not be written, and the last error that said why.
#[derive(Default)]
struct Unwritten {
    count: AtomicU64,
    /// Lock: guards the last write error's text. Held to copy or replace it.
    error: std::sync::Mutex<String>,
}

impl Log {
    /// Starts the printing thread, writing to stdout.
    pub fn to_stdout() -> Log {
        Log::to(io::stdout)
    }

    /// Starts the printing thread on the output that `open` gives (stdout, or a buffer in tests).
    /// The thread ends when the last clone of this `Log` is dropped. If no thread can be started,
    /// there is no log: the server still serves.
    pub fn to<W: Write>(open: impl FnOnce() -> W + Send + 'static) -> Log {
        let unwritten = Arc::new(Unwritten::default());
        let printer = Printer::start("log", LOG_QUEUE, {
            let unwritten = unwritten.clone();
            move || LogOutput {
                out: open(),
                unwritten,
            }
        });
        Log { printer, unwritten }
    }

    /// A log that prints nothing.
    pub fn off() -> Log {
        Log {
            printer: Printer::off(),
            unwritten: Arc::new(Unwritten::default()),
        }
    }

    pub fn is_on(&self) -> bool {
        self.printer.is_on()
    }

    /// Queues one log line, or counts it as dropped if the terminal is behind. Never waits.
    pub fn line(&self, line: fmt::Arguments<'_>) {
        if self.printer.is_on() {
            self.printer.offer(line.to_string());
        }
    }

    /// Queues one line of the operator's console, waiting for room up to [`CONSOLE_PATIENCE`]:
    /// only the console's own thread waits for a slow terminal, never a client's, and not for
    /// ever (a terminal nobody reads must not keep `quit` from ending the program). Once one
    /// console line has waited its full patience, the terminal is stuck, not slow: later lines
    /// are dropped (and counted) at once, until the queue takes one again.
    pub fn print(&self, line: String) {
        if self.printer.is_on() && !self.printer.wait_for_room(line, CONSOLE_PATIENCE) {
            self.printer.count_dropped();
        }
    }

    /// Lines that could not be written since the last report, and why: for the program to say on
    /// stderr at its end, when stdout itself is what failed.
    pub fn unwritten(&self) -> Option<(u64, String)> {
        let count = self.unwritten.count.swap(0, Ordering::Relaxed);
        (count > 0).then(|| (count, crate::lock(&self.unwritten.error).clone()))
    }

    /// Waits (up to `limit`) until every line queued so far is printed: the last lines before the
    /// program exits.
    pub fn flush(&self, limit: Duration) {
        self.printer.flush(limit);
    }
}

/// The log's printing thread's end: the only code that waits for the terminal.
struct LogOutput<W> {
    out: W,
    unwritten: Arc<Unwritten>,
}

impl<W: Write> Output for LogOutput<W> {
    type Item = String;

    fn print(&mut self, line: String) {
        write_line(&mut self.out, &line, &self.unwritten);
    }

    fn dropped(&mut self, count: u64) {
        let note = format!(
            "[log] {} lines dropped: the terminal is not keeping up",
            thousands(count)
        );
        write_line(&mut self.out, &note, &self.unwritten);
    }
}

/// Writes one line; a line that cannot be written (a full disk, a closed pipe) is counted, and
/// the count is said as soon as a line can be written again.
fn write_line(out: &mut impl Write, line: &str, unwritten: &Unwritten) {
    let written = writeln!(out, "{line}").and_then(|()| out.flush());
    match written {
        Ok(()) => {
            let lost = unwritten.count.swap(0, Ordering::Relaxed);
            if lost > 0 {
                let error = crate::lock(&unwritten.error).clone();
                let _ = writeln!(
                    out,
                    "[log] {} lines could not be written ({error})",
                    thousands(lost)
                );
                let _ = out.flush();
            }
        }
        Err(error) => {
            unwritten.count.fetch_add(1, Ordering::Relaxed);
            *crate::lock(&unwritten.error) = error.to_string();
        }
    }
}

/// A [`Write`] for the console's answers that goes through the log's queue, line by line, so the
/// answers and the log lines come out in one order.
pub struct LogWriter {
    log: Log,
    partial: Vec<u8>,
}

impl LogWriter {
    pub fn new(log: Log) -> LogWriter {
        LogWriter {
            log,
            partial: Vec::new(),
        }
    }
}

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&byte| byte == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            self.log
                .print(String::from_utf8_lossy(&line[..end]).into_owned());
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `12345` as `12,345`: counts in log lines a person reads.
pub fn thousands(number: u64) -> String {
    let digits = number.to_string();
    let mut out = String::new();
    for (place, digit) in digits.chars().enumerate() {
        if place > 0 && (digits.len() - place) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `5 s`, `1.5 s`, `250 ms`: durations the way the programs print them.
pub fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{} s", duration.as_secs())
    } else if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A `Write` whose bytes the test can read while the printing thread holds it.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_come_out_in_order_and_the_console_waits_its_turn() {
        let out = Shared::default();
        let log = Log::to({
            let out = out.clone();
            move || out
        });
        log.line(format_args!("one"));
        LogWriter::new(log.clone())
            .write_all(b"two\nthree")
            .unwrap();
        log.line(format_args!("four"));
        log.flush(Duration::from_secs(5));
        assert_eq!(
            String::from_utf8(out.0.lock().unwrap().clone()).unwrap(),
            "one\ntwo\nfour\n"
        );
    }

    /// A terminal that is paused: every write waits until the test lets it go.
    struct Paused(Arc<Mutex<()>>, Shared);

    impl Write for Paused {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            let _wait = self.0.lock().unwrap();
            self.1.write(bytes)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_paused_terminal_never_blocks_a_logger_and_drops_are_counted() {
        let pause = Arc::new(Mutex::new(()));
        let out = Shared::default();
        let held = pause.lock().unwrap();
        let log = Log::to({
            let (pause, out) = (pause.clone(), out.clone());
            move || Paused(pause, out)
        });
        let started = std::time::Instant::now();
        for n in 0..LOG_QUEUE * 3 {
            log.line(format_args!("line {n}"));
        }
        assert!(started.elapsed() < Duration::from_secs(2), "the log waited");
        drop(held);
        log.flush(Duration::from_secs(5));
        log.line(format_args!("after"));
        log.flush(Duration::from_secs(5));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(" lines dropped: the terminal is not keeping up\n"),
            "{text}"
        );
        assert!(text.ends_with("after\n"), "{text}");
    }

    #[test]
    fn numbers_and_durations_read_like_a_person_writes_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_345), "12,345");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(seconds(Duration::from_secs(5)), "5 s");
        assert_eq!(seconds(Duration::from_millis(250)), "250 ms");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
    }
}
