//! The user's terminal, shared by the keyboard thread (prompts) and the reader thread (upcalls).
//!
//! Two things make printing harder than `println!` here:
//!
//! - An upcall can arrive while the user is looking at `Enter message: `. Printed as it is, it would
//!   land after the prompt, and the user would type on a line that no longer says what to type. The
//!   screen remembers which prompt is showing, prints the upcall on a line of its own and shows the
//!   prompt again.
//! - Classmates can send upcalls faster than a terminal prints them (a script in a loop, or a
//!   terminal paused with Ctrl-S). The reader thread must never wait for the terminal: it has
//!   upcalls to answer. So everything is printed by one printing thread, from a queue that is
//!   bounded in lines and in bytes; an upcall's line that does not fit is counted, not kept, and
//!   the printing thread says how many it skipped. Memory stays flat however fast they come.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::log::thousands;

/// Lines that may wait for the terminal.
pub const SCREEN_QUEUE_LINES: usize = 256;

/// Bytes of upcall text that may wait for the terminal.
pub const SCREEN_QUEUE_BYTES: usize = 64 * 1024;

/// What the printing thread is asked to do, in order.
enum Print {
    /// A line of the session's own (never dropped).
    Line(String),
    /// A line caused by an upcall: dropped and counted when the queue is full.
    News(String),
    /// The session's last line: the prompt is not shown again.
    LastLine(String),
    Prompt(&'static str),
    PromptAnswered,
    /// The keyboard has nothing more to say (`bye` typed, or the end of input).
    InputEnded {
        typed_bye: bool,
    },
    Flush(SyncSender<()>),
}

/// The terminal, as both threads of the client see it. Cheap to share behind an `Arc`.
pub struct Screen {
    queue: SyncSender<Print>,
    /// Bytes of news queued and not printed yet.
    waiting_bytes: Arc<AtomicUsize>,
    /// News lines dropped since the printing thread last said so.
    skipped: Arc<AtomicU64>,
}

impl Screen {
    /// A screen on stdout, with its printing thread.
    pub fn new() -> Screen {
        let (queue, prints) = mpsc::sync_channel(SCREEN_QUEUE_LINES);
        let waiting_bytes = Arc::new(AtomicUsize::new(0));
        let skipped = Arc::new(AtomicU64::new(0));
        let printer = Printer {
            prompt: None,
            waiting_bytes: waiting_bytes.clone(),
            skipped: skipped.clone(),
        };
        // Without a printing thread nothing is printed, but the client still answers upcalls.
        let _ = thread::Builder::new()
            .name("screen".into())
            .spawn(move || printer.run(&prints));
        Screen {
            queue,
            waiting_bytes,
            skipped,
        }
    }

    /// Prints one line of the session's own ("Connected to ...") without disturbing a prompt.
    pub fn line(&self, text: &str) {
        let _ = self.queue.send(Print::Line(text.to_string()));
    }

    /// Prints one line that an upcall caused, unless the terminal is too far behind: then the line
    /// is counted and skipped. Never waits.
    pub fn news(&self, text: &str) {
        let bytes = text.len();
        let waiting = self.waiting_bytes.fetch_add(bytes, Ordering::SeqCst) + bytes;
        let queued = waiting <= SCREEN_QUEUE_BYTES
            && self.queue.try_send(Print::News(text.to_string())).is_ok();
        if !queued {
            self.waiting_bytes.fetch_sub(bytes, Ordering::SeqCst);
            self.skipped.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Prints the session's last line: like [`Screen::line`], but the prompt is not shown again,
    /// since the program is about to exit. Waits (briefly) until it is on the terminal.
    /// The program exits after it, so a terminal that does not take it (paused, or a pipe
    /// nobody reads) is given a second, not for ever.
    pub fn last_line(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut print = Print::LastLine(text.to_string());
        loop {
            match self.queue.try_send(print) {
                Err(TrySendError::Full(again)) if Instant::now() < deadline => {
                    print = again;
                    thread::sleep(Duration::from_millis(10));
                }
                _ => break,
            }
        }
        self.flush();
    }

    /// Shows a prompt; the user's answer will follow it on the same line.
    pub fn prompt(&self, prompt: &'static str) {
        let _ = self.queue.send(Print::Prompt(prompt));
    }

    /// The user pressed Enter: no prompt is on display any more.
    pub fn prompt_answered(&self) {
        let _ = self.queue.send(Print::PromptAnswered);
    }

    /// The keyboard has nothing more to say.
    pub fn input_ended(&self, typed_bye: bool) {
        let _ = self.queue.send(Print::InputEnded { typed_bye });
    }

    /// Waits (up to a second) until everything queued so far is printed.
    pub fn flush(&self) {
        let (done, printed) = mpsc::sync_channel(1);
        if self.queue.send(Print::Flush(done)).is_ok() {
            let _ = printed.recv_timeout(Duration::from_secs(1));
        }
    }
}

impl Default for Screen {
    fn default() -> Screen {
        Screen::new()
    }
}

/// The printing thread's state: the only code that waits for the terminal.
struct Printer {
    /// The prompt on display, if any.
    prompt: Option<&'static str>,
    waiting_bytes: Arc<AtomicUsize>,
    skipped: Arc<AtomicU64>,
}

impl Printer {
    fn run(mut self, prints: &Receiver<Print>) {
        for print in prints {
            let skipped = self.skipped.swap(0, Ordering::SeqCst);
            if skipped > 0 {
                self.line(&format!(
                    "[{} upcalls not shown: they came faster than this terminal shows them]",
                    thousands(skipped)
                ));
            }
            match print {
                Print::Line(text) => self.line(&text),
                Print::News(text) => {
                    self.waiting_bytes.fetch_sub(text.len(), Ordering::SeqCst);
                    self.line(&text);
                }
                Print::LastLine(text) => {
                    let text = match self.prompt.take() {
                        Some(_) => format!("\n{text}\n"),
                        None => format!("{text}\n"),
                    };
                    write_out(&text);
                }
                Print::Prompt(prompt) => {
                    write_out(prompt);
                    self.prompt = Some(prompt);
                }
                Print::PromptAnswered => self.prompt = None,
                // After a typed `bye` a terminal has echoed the Enter key; at the end of input
                // (Ctrl-D, or the end of a script) the cursor still stands after the prompt, and
                // the shell's own prompt would follow on that line.
                Print::InputEnded { typed_bye } => {
                    if !typed_bye || !io::stdin().is_terminal() {
                        write_out("\n");
                    }
                }
                Print::Flush(done) => {
                    let _ = done.try_send(());
                }
            }
        }
    }

    /// One line, on a line of its own, with the prompt shown again after it.
    fn line(&self, text: &str) {
        let text = match self.prompt {
            Some(prompt) => format!("\n{text}\n{prompt}"),
            None => format!("{text}\n"),
        };
        write_out(&text);
    }
}

/// One write and a flush. Errors are ignored: a client whose terminal is gone still answers its
/// upcalls.
fn write_out(text: &str) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
