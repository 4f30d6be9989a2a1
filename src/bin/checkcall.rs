//! `checkcall`: checks a client or a server against `upcall/1`, rule by rule. The logic is in the
//! library (`src/check/`); this file reads the command line, prints and picks the exit status.

use std::io::Write;
use std::process::ExitCode;

use upcall::check::{self, client_cases, server_cases, Command};

fn main() -> ExitCode {
    let options = match check::options::parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(None) => {
            println!("{}", check::options::help());
            return ExitCode::SUCCESS;
        }
        Err(Some(sentence)) => {
            eprintln!("checkcall: {sentence}. Try `checkcall --help`.");
            return ExitCode::from(2);
        }
    };
    let (suite, report) = match &options.command {
        Command::Server { address } => {
            println!("checkcall: checking the server at {address} (upcall/1)");
            ("checkcall server", server_cases::run(address, &options))
        }
        Command::Client { listen } => {
            (
                "checkcall client",
                client_cases::run(listen, &options, |addr| {
                    println!("checkcall: listening on {addr}: start your client now, connecting to {addr}");
                    let _ = std::io::stdout().flush();
                }),
            )
        }
    };
    let report = match report {
        Ok(report) => report,
        Err(sentence) => {
            eprintln!("checkcall: {sentence}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.text());
    if let Some(path) = &options.junit {
        if let Err(error) = std::fs::write(path, report.junit(suite)) {
            eprintln!("checkcall: cannot write {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
