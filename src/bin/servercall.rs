//! `servercall`: the upcall server's program. It binds the port, starts the accept loop on a thread
//! of its own, and gives the main thread (stdin) to the operator's console.
//!
//! All the logic lives in the library (`src/server.rs`, `src/console.rs`); this file only wires it up.

use std::io;
use std::process::ExitCode;
use std::thread;
use std::time::Duration;

use upcall::cli::{self, Usage};
use upcall::console::{self, ConsoleEnd};
use upcall::say;
use upcall::server::Server;

fn main() -> ExitCode {
    let options = match cli::server_options(
        std::env::args().skip(1),
        std::env::var("UPCALL_LISTEN").ok(),
    ) {
        Ok(options) => options,
        Err(Usage::Help) => {
            println!("{}", cli::SERVERCALL_HELP);
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
    // Past what the machine allows, one client too many would abort the whole server (see
    // `client_limit_here`): hold the limit below it, and say so.
    let mut config = options.config;
    if let Some((limit, reason)) = upcall::server::client_limit_here() {
        if config.max_clients > limit {
            eprintln!(
                "servercall: --max-clients {} is more than this machine allows ({reason}); \
                 using {limit}.",
                config.max_clients
            );
            config.max_clients = limit;
        }
    }
    let address = listener
        .local_addr()
        .map_or(options.listen.clone(), |a| a.to_string());
    say!("servercall listening on {address} (upcall/1). Type `help` for console commands.");

    let server = Server::new(config);
    let acceptor = {
        let server = server.clone();
        thread::spawn(move || server.serve(listener))
    };
    let end = console::run(&server, io::stdin().lock(), io::stdout());
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
    say!("Server stopped.");
    ExitCode::SUCCESS
}
