//! `clientcall`: the upcall client's program. It reads its options and hands the keyboard to the
//! library's client (`src/client/`), which does all the work.

use std::io;
use std::process::ExitCode;

use upcall::cli::{self, Usage};
use upcall::client::{self, Link};

/// The connection was lost while the keyboard was being read: the reader thread ends the program.
fn connection_lost() -> ! {
    std::process::exit(1)
}

fn main() -> ExitCode {
    let config = match cli::client_options(
        std::env::args().skip(1),
        std::env::var("UPCALL_SERVER").ok(),
    ) {
        Ok(config) => config,
        Err(Usage::Help) => {
            println!("{}", cli::clientcall_help());
            return ExitCode::SUCCESS;
        }
        Err(Usage::Wrong(sentence)) => {
            eprintln!("clientcall: {sentence}. Try `clientcall --help`.");
            return ExitCode::from(2);
        }
    };
    // 0 when the user left (`bye` or the end of input), 1 when the connection failed or was lost.
    match client::run(&config, io::stdin().lock(), connection_lost) {
        Ok(Link::Up) => ExitCode::SUCCESS,
        Ok(Link::Lost) => ExitCode::FAILURE,
        Err(sentence) => {
            eprintln!("clientcall: {sentence}");
            ExitCode::FAILURE
        }
    }
}
