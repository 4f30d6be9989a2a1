//! `servercall`: the upcall server's program. It binds the port, starts the accept loop on a thread
//! of its own, and gives the main thread (stdin) to the operator's console.
//!
//! All the logic lives in the library (`src/server/`, `src/console.rs`); this file only wires it up.

use std::io::{self, Write};
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use upcall::cli::{self, Usage};
use upcall::console::{self, ConsoleEnd};
use upcall::log::{Log, LogWriter};
use upcall::say;
use upcall::server::Server;

fn main() -> ExitCode {
    let options = match cli::server_options(
        std::env::args().skip(1),
        std::env::var("UPCALL_LISTEN").ok(),
    ) {
        Ok(options) => options,
        Err(Usage::Help) => {
            println!("{}", cli::servercall_help());
            return ExitCode::SUCCESS;
        }
        Err(Usage::Wrong(sentence)) => {
            eprintln!("servercall: {sentence}. Try `servercall --help`.");
            return ExitCode::from(2);
        }
    };
    let listener = match cli::listen(&options.listen) {
        Ok(listener) => listener,
        Err(sentence) => {
            eprintln!("servercall: {sentence}");
            return ExitCode::FAILURE;
        }
    };
    // The soft open-file limit is often 1,024 (256 on macOS) while the hard one allows far more:
    // take what the administrator allows, as Go's runtime does.
    let _ = upcall::os::raise_open_file_limit();
    // Past what the machine allows, one client too many would abort the whole server, or find no
    // thread (see `client_limit_here`): hold the limit below it, and say so.
    let mut config = options.config;
    if let Some((limit, reason)) = upcall::server::client_limit_here() {
        if config.max_clients > limit {
            // One write for the whole line, so that it never comes out in pieces between the
            // lines of stdout (stderr is unbuffered, and `eprintln!` writes piece by piece).
            let note = format!(
                "servercall: --max-clients {} is more than this machine allows ({reason}); \
                 using {limit}.\n",
                config.max_clients
            );
            let _ = io::stderr().write_all(note.as_bytes());
            config.max_clients = limit;
        }
    }
    let address = listener
        .local_addr()
        .map_or(options.listen.clone(), |a| a.to_string());
    say!("servercall listening on {address} (upcall/1). Type `help` for console commands.");

    // One printing thread for the log and the console's answers, so that they come out in the
    // order they happened, and so that a paused terminal holds up only the console (and that
    // for a second at most).
    let printer = Log::to_stdout();
    let log = if config.log {
        printer.clone()
    } else {
        Log::off()
    };
    let server = Server::with_log(config, log);
    let acceptor = thread::Builder::new().name("accept".into()).spawn({
        let server = server.clone();
        move || server.serve(listener)
    });
    let acceptor = match acceptor {
        Ok(acceptor) => acceptor,
        Err(error) => {
            eprintln!("servercall: cannot start the accept loop: {error}");
            return ExitCode::FAILURE;
        }
    };
    let end = console::run(&server, io::stdin().lock(), LogWriter::new(printer.clone()));
    if end.as_ref().is_ok_and(|end| *end == ConsoleEnd::Quit) {
        server.shutdown();
    }
    // Without `quit` (stdin at its end, as in a detached container) this waits for ever: the
    // server goes on serving without a console.
    if let Ok(Err(error)) = acceptor.join() {
        eprintln!("servercall: the accept loop stopped: {error}");
        return ExitCode::FAILURE;
    }
    server.wait_for_clients_to_leave(Duration::from_secs(2));
    // Never waits: if nobody reads stdout, the program still ends.
    printer.line(format_args!("Server stopped."));
    printer.flush(Duration::from_millis(500));
    if let Some((count, why)) = printer.unwritten() {
        let note = format!("servercall: {count} lines of output could not be written ({why})\n");
        let _ = io::stderr().write_all(note.as_bytes());
    }
    ExitCode::SUCCESS
}
