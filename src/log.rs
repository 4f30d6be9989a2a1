//! Printing for the programs: one line at a time, and never a panic if nobody is listening.
//!
//! `println!` panics when stdout is a closed pipe (`servercall | head`, a detached `docker exec`).
//! In a server that would kill the thread that happened to print, in the middle of its work. The
//! programs print through [`say`] instead, which drops the line when stdout is gone.

use std::fmt;
use std::io::{self, Write};

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
