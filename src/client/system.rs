//! What differs with the system a program runs on, so that every hint names the student's own:
//! the key that ends input, whether we run inside the lab's container, and an OS error said in words.
//!
//! Students bring Linux, Windows and macOS laptops, and run the programs natively or in the
//! Docker lab. A hint that names another system's key or command is a wrong hint. `cli.rs` (the
//! servercall side) uses these too.

use std::io;
use std::path::Path;

/// The key that ends the input at a terminal on this system.
pub fn end_of_input_key() -> &'static str {
    if cfg!(windows) {
        // Windows' console reads Ctrl-Z at the start of a line, then Enter, as the end of input.
        "Ctrl-Z then Enter"
    } else {
        "Ctrl-D"
    }
}

/// A line that is only another system's end-of-input key: Ctrl-D then Enter on Windows arrives as
/// the line "\u{4}", Ctrl-Z then Enter read through a Unix pipe as "\u{1a}". The user meant to
/// leave, so it counts as the end of input instead of a "control character" complaint.
pub fn is_end_of_input_key(line: &str) -> bool {
    matches!(line, "\u{4}" | "\u{1a}")
}

/// Inside the Docker lab's container: where there is no cargo, and where a process started with
/// `docker compose exec` outlives a Ctrl-C. That is a container (Docker writes `/.dockerenv`,
/// Podman `/run/.containerenv`) where the program was not started by cargo: cargo sets `CARGO`
/// for every program it runs, and a developer may well build and test inside a container.
pub fn in_lab_container() -> bool {
    cfg!(target_os = "linux")
        && std::env::var_os("CARGO").is_none()
        && (Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists())
}

/// Where a program runs, as far as the advice it gives is concerned: each names its own commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The Docker lab's container (see [`in_lab_container`]).
    LabContainer,
    Linux,
    Windows,
    /// macOS, and the other Unix systems (`lsof` is their common tool).
    OtherUnix,
}

impl Place {
    /// Where this program runs.
    pub fn here() -> Place {
        if in_lab_container() {
            Place::LabContainer
        } else if cfg!(windows) {
            Place::Windows
        } else if cfg!(target_os = "linux") {
            Place::Linux
        } else {
            Place::OtherUnix
        }
    }
}

/// An OS error in words, without the raw code: "Connection reset by peer (os error 104)" tells
/// a student less than "the connection was reset", and differs from system to system.
pub fn in_words(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "no answer in time".to_string(),
        io::ErrorKind::ConnectionReset => "the other side reset the connection".to_string(),
        io::ErrorKind::ConnectionAborted => "the connection was aborted".to_string(),
        io::ErrorKind::BrokenPipe => "the other side closed the connection".to_string(),
        io::ErrorKind::UnexpectedEof => "the connection closed in the middle of a line".to_string(),
        io::ErrorKind::NotConnected => "not connected".to_string(),
        // The system's own sentence, without its code ("Network is unreachable (os error
        // 101)"), in the small letters the rest of a sentence has.
        _ => {
            let text = error.to_string();
            let text = match text.find(" (os error ") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            let mut letters = text.chars();
            match letters.next() {
                Some(first) => first.to_lowercase().chain(letters).collect(),
                None => error.kind().to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_input_key_is_this_systems() {
        let key = end_of_input_key();
        if cfg!(windows) {
            assert_eq!(key, "Ctrl-Z then Enter");
        } else {
            assert_eq!(key, "Ctrl-D");
        }
        assert!(is_end_of_input_key("\u{4}") && is_end_of_input_key("\u{1a}"));
        assert!(!is_end_of_input_key("bye") && !is_end_of_input_key(""));
    }

    #[test]
    fn os_errors_are_said_without_their_codes() {
        for code in [11, 104, 110, 10054, 10060] {
            let said = in_words(&io::Error::from_raw_os_error(code));
            assert!(!said.contains("os error"), "{code}: {said}");
        }
        let timeout = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(in_words(&timeout), "no answer in time");
        let custom = io::Error::other("Network is unreachable (os error 101)");
        assert_eq!(in_words(&custom), "network is unreachable");
    }
}
