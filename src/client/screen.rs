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
//!   upcalls to answer. So everything is printed by one printing thread (a [`Printer`], as the
//!   server's log is), from a queue that is bounded in lines and, for upcalls' lines, in bytes;
//!   an upcall's line that does not fit is counted, not kept, and
//!   the printing thread says how many it skipped. Memory stays flat however fast they come.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::log::thousands;
use crate::printer::{Output, Printer};

/// Lines that may wait for the terminal.
pub const SCREEN_QUEUE_LINES: usize = 256;

/// Bytes of upcall text that may wait for the terminal.
pub const SCREEN_QUEUE_BYTES: usize = 64 * 1024;

/// How long the session's last line, and the flush at its end, wait for the terminal.
const LAST_PATIENCE: Duration = Duration::from_secs(1);

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
}

/// The terminal, as both threads of the client see it. Cheap to share behind an `Arc`.
pub struct Screen {
    printer: Printer<Print>,
    /// Bytes of news queued and not printed yet.
    waiting_bytes: Arc<AtomicUsize>,
}

impl Screen {
    /// A screen on stdout, with its printing thread. Without a printing thread nothing is
    /// printed, but the client still answers upcalls.
    pub fn new() -> Screen {
        let waiting_bytes = Arc::new(AtomicUsize::new(0));
        let printer = Printer::start("screen", SCREEN_QUEUE_LINES, {
            let waiting_bytes = waiting_bytes.clone();
            move || Terminal {
                prompt: None,
                waiting_bytes,
            }
        });
        Screen {
            printer,
            waiting_bytes,
        }
    }

    /// Prints one line of the session's own ("Connected to ...") without disturbing a prompt.
    pub fn line(&self, text: &str) {
        self.printer.send(Print::Line(text.to_string()));
    }

    /// Prints one line that an upcall caused, unless the terminal is too far behind: then the line
    /// is counted and skipped. Never waits.
    pub fn news(&self, text: &str) {
        let bytes = text.len();
        let waiting = self.waiting_bytes.fetch_add(bytes, Ordering::SeqCst) + bytes;
        let queued = if waiting <= SCREEN_QUEUE_BYTES {
            self.printer.offer(Print::News(text.to_string()))
        } else {
            self.printer.count_dropped();
            false
        };
        if !queued {
            self.waiting_bytes.fetch_sub(bytes, Ordering::SeqCst);
        }
    }

    /// Prints the session's last line: like [`Screen::line`], but the prompt is not shown again,
    /// since the program is about to exit. Waits (briefly) until it is on the terminal.
    /// The program exits after it, so a terminal that does not take it (paused, or a pipe
    /// nobody reads) is given a second, not for ever.
    pub fn last_line(&self, text: &str) {
        self.printer
            .wait_for_room(Print::LastLine(text.to_string()), LAST_PATIENCE);
        self.flush();
    }

    /// Shows a prompt; the user's answer will follow it on the same line.
    pub fn prompt(&self, prompt: &'static str) {
        self.printer.send(Print::Prompt(prompt));
    }

    /// The user pressed Enter: no prompt is on display any more.
    pub fn prompt_answered(&self) {
        self.printer.send(Print::PromptAnswered);
    }

    /// The keyboard has nothing more to say.
    pub fn input_ended(&self, typed_bye: bool) {
        self.printer.send(Print::InputEnded { typed_bye });
    }

    /// Waits (up to a second) until everything queued so far is printed.
    pub fn flush(&self) {
        self.printer.flush(LAST_PATIENCE);
    }
}

impl Default for Screen {
    fn default() -> Screen {
        Screen::new()
    }
}

/// The printing thread's end: the only code that waits for the terminal.
struct Terminal {
    /// The prompt on display, if any.
    prompt: Option<&'static str>,
    waiting_bytes: Arc<AtomicUsize>,
}

impl Output for Terminal {
    type Item = Print;

    fn print(&mut self, print: Print) {
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
        }
    }

    fn dropped(&mut self, count: u64) {
        self.line(&format!(
            "[{} upcalls not shown: they came faster than this terminal shows them]",
            thousands(count)
        ));
    }
}

impl Terminal {
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
