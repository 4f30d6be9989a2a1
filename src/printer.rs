//! One printing thread behind a bounded queue: whoever prints hands the line over and goes back to
//! work, and only the printing thread ever waits for the terminal.
//!
//! The server's log ([`crate::log::Log`]) and the client's screen ([`crate::client::Screen`]) both
//! print this way, for the same reason: the threads that have something to say (a client's
//! connection thread, the client's reader thread) have clients or upcalls to answer, and a
//! terminal can be slow, paused (Ctrl-S) or a pipe nobody reads. A `println!` in each thread
//! would make every one of them wait for it.
//!
//! The queue is bounded, so memory stays flat however fast lines come. What does not fit is
//! *counted*, not kept: the printing thread says how many it lost (each user in its own words)
//! as soon as it prints again. A caller that must not lose its line may wait for room instead:
//! for ever ([`Printer::send`]), or for a while ([`Printer::wait_for_room`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// What the printing thread does with what it is handed: the only code that waits for the
/// terminal. Made on the printing thread itself, so it need not be sent anywhere.
pub trait Output {
    /// What callers hand over: a line, or anything else the output understands (a prompt).
    type Item: Send + 'static;

    /// Prints one item.
    fn print(&mut self, item: Self::Item);

    /// `count` items were dropped (the queue was full) since the printing thread last said so:
    /// say so, before the next item.
    fn dropped(&mut self, count: u64);
}

/// What the queue carries.
enum Job<T> {
    Print(T),
    /// "Tell me when everything before this is printed."
    Flush(SyncSender<()>),
}

/// A bounded queue to one printing thread. Cheap to clone: every clone hands its items to the
/// same thread, which ends when the last clone is dropped.
pub struct Printer<T> {
    /// `None` when nothing is printed at all (off, or no thread could be started).
    queue: Option<SyncSender<Job<T>>>,
    counts: Arc<Counts>,
}

impl<T> Clone for Printer<T> {
    fn clone(&self) -> Printer<T> {
        Printer {
            queue: self.queue.clone(),
            counts: self.counts.clone(),
        }
    }
}

#[derive(Default)]
struct Counts {
    /// Items dropped since the printing thread last said so.
    dropped: AtomicU64,
    /// An item waited its whole patience for room: the terminal is stuck, not slow.
    stuck: AtomicBool,
}

/// How often a caller waiting for room looks again.
const RETRY: Duration = Duration::from_millis(5);

impl<T: Send + 'static> Printer<T> {
    /// Starts a printing thread called `name` that prints through what `open` makes, with room for
    /// `capacity` items. If no thread can be started, nothing is printed, and nobody waits.
    pub fn start<O>(name: &str, capacity: usize, open: impl FnOnce() -> O + Send + 'static) -> Self
    where
        O: Output<Item = T>,
    {
        let (queue, jobs) = mpsc::sync_channel(capacity);
        let counts = Arc::new(Counts::default());
        let printing = {
            let counts = counts.clone();
            move || print_jobs(open(), &jobs, &counts)
        };
        match thread::Builder::new().name(name.into()).spawn(printing) {
            Ok(_) => Printer {
                queue: Some(queue),
                counts,
            },
            Err(_) => Printer::off(),
        }
    }

    /// A printer that prints nothing.
    pub fn off() -> Self {
        Printer {
            queue: None,
            counts: Arc::default(),
        }
    }

    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues `item`, or counts it as dropped if the queue is full. Never waits. True if queued.
    pub fn offer(&self, item: T) -> bool {
        let Some(queue) = &self.queue else {
            return false;
        };
        match queue.try_send(Job::Print(item)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.count_dropped();
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Counts one item as dropped without queueing it (the caller has a bound of its own).
    pub fn count_dropped(&self) {
        self.counts.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Queues `item`, waiting for room as long as it takes: for lines that are never dropped.
    pub fn send(&self, item: T) {
        if let Some(queue) = &self.queue {
            let _ = queue.send(Job::Print(item));
        }
    }

    /// Queues `item`, waiting for room up to `patience`; false if it did not get in (it is not
    /// counted: the caller says what that means). Once one item has waited its whole patience,
    /// the terminal is stuck, not slow: later ones do not wait at all, until one gets in again,
    /// so that a terminal nobody reads costs one `patience`, not one per line.
    pub fn wait_for_room(&self, item: T, patience: Duration) -> bool {
        let Some(queue) = &self.queue else {
            return false;
        };
        let stuck = &self.counts.stuck;
        let patience = if stuck.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            patience
        };
        let deadline = Instant::now() + patience;
        let mut job = Job::Print(item);
        loop {
            match queue.try_send(job) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {
                    stuck.store(false, Ordering::Relaxed);
                    return true;
                }
                Err(TrySendError::Full(back)) => job = back,
            }
            if Instant::now() >= deadline {
                stuck.store(true, Ordering::Relaxed);
                return false;
            }
            thread::sleep(RETRY);
        }
    }

    /// Waits (up to `limit`) until every item queued so far is printed. Even the request waits for
    /// room no longer than `limit`: the terminal may be stuck.
    pub fn flush(&self, limit: Duration) {
        let Some(queue) = &self.queue else {
            return;
        };
        let deadline = Instant::now() + limit;
        let (done, printed) = mpsc::sync_channel(1);
        let mut job = Job::Flush(done);
        loop {
            match queue.try_send(job) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) => job = back,
            }
            if Instant::now() >= deadline {
                return;
            }
            thread::sleep(RETRY);
        }
        let _ = printed.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// The printing thread: before each job, says how many items were dropped since the last.
fn print_jobs<O: Output>(mut out: O, jobs: &Receiver<Job<O::Item>>, counts: &Counts) {
    for job in jobs {
        let dropped = counts.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            out.dropped(dropped);
        }
        match job {
            Job::Print(item) => out.print(item),
            Job::Flush(done) => {
                let _ = done.try_send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Prints into a list the test reads; says on `busy` that it began an item, then waits while
    /// the test holds `pause` (a terminal paused with Ctrl-S).
    struct Recorder {
        printed: Arc<Mutex<Vec<String>>>,
        busy: mpsc::Sender<()>,
        pause: Arc<Mutex<()>>,
    }

    impl Output for Recorder {
        type Item = String;
        fn print(&mut self, item: String) {
            let _ = self.busy.send(());
            let _wait = self.pause.lock().unwrap();
            self.printed.lock().unwrap().push(item);
        }
        fn dropped(&mut self, count: u64) {
            self.printed
                .lock()
                .unwrap()
                .push(format!("[{count} dropped]"));
        }
    }

    #[test]
    fn a_stuck_terminal_costs_one_patience_and_the_dropped_are_counted_before_the_next_line() {
        let printed = Arc::new(Mutex::new(Vec::new()));
        let pause = Arc::new(Mutex::new(()));
        let (busy, began) = mpsc::channel();
        let held = pause.lock().unwrap();
        let printer = Printer::start("test printer", 2, {
            let (printed, pause) = (printed.clone(), pause.clone());
            move || Recorder {
                printed,
                busy,
                pause,
            }
        });
        // One line the paused thread holds, two in the queue; the other seven do not fit.
        assert!(printer.offer("line 0".into()));
        began.recv().unwrap();
        let queued = (1..10)
            .filter(|n| printer.offer(format!("line {n}")))
            .count();
        assert_eq!(queued, 2);
        let started = Instant::now();
        assert!(!printer.wait_for_room("patient".into(), Duration::from_millis(200)));
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Stuck now: the next one does not wait at all.
        let started = Instant::now();
        assert!(!printer.wait_for_room("impatient".into(), Duration::from_secs(5)));
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(held);
        printer.flush(Duration::from_secs(5));
        // The count comes before the first line printed after the drops.
        assert!(printer.wait_for_room("after".into(), Duration::from_secs(5)));
        printer.flush(Duration::from_secs(5));
        assert_eq!(
            *printed.lock().unwrap(),
            ["line 0", "[7 dropped]", "line 1", "line 2", "after"]
        );
    }

    #[test]
    fn a_printer_that_is_off_takes_everything_and_prints_nothing() {
        let printer = Printer::<String>::off();
        assert!(!printer.is_on());
        assert!(!printer.offer("x".into()));
        printer.send("y".into());
        assert!(!printer.wait_for_room("z".into(), Duration::from_secs(5)));
        printer.flush(Duration::from_secs(5));
    }
}
