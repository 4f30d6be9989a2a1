//! The client's two threads talk through a mailbox: the reader thread posts what it heard (an
//! `on_event` upcall, an `ERR`, the close), the keyboard thread waits for what concerns it (the
//! upcall its own message causes).
//!
//! The mailbox is bounded and keeps the newest news: the keyboard thread only ever waits for
//! something recent, and the reader thread must never wait for the keyboard (it has upcalls to
//! answer), so when the mailbox is full the oldest news is forgotten.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::lock;

/// News the reader thread keeps for the keyboard thread: only the newest, since the keyboard
/// thread only ever waits for something recent (the upcall its own message causes).
const MAILBOX: usize = 64;

/// What the socket side tells the keyboard side.
#[derive(Debug)]
pub(super) enum Heard {
    /// `on_event` was called with this text (and has printed it).
    OnEvent(String),
    /// The server rejected something with `ERR` (and it has been printed).
    ServerError,
    /// The server acknowledged a `REGISTER`.
    Registered(String),
    /// The connection is closed.
    Closed,
}

/// The news from the reader thread for the keyboard thread, bounded: when it is full, the oldest
/// news is forgotten. Nothing waits to post, so the reader thread never waits for the keyboard.
#[derive(Default)]
pub(super) struct Mailbox {
    /// Lock: guards the news. Held to push or pop one item, never across I/O.
    news: Mutex<VecDeque<Heard>>,
    arrived: Condvar,
}

impl Mailbox {
    pub(super) fn post(&self, heard: Heard) {
        let mut news = lock(&self.news);
        if news.len() >= MAILBOX {
            news.pop_front();
        }
        news.push_back(heard);
        self.arrived.notify_one();
    }

    /// The oldest news, waiting for some until `deadline`; `None` if none came.
    pub(super) fn wait(&self, deadline: Instant) -> Option<Heard> {
        let mut news = lock(&self.news);
        loop {
            if let Some(heard) = news.pop_front() {
                return Some(heard);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            news = self
                .arrived
                .wait_timeout(news, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }
}
