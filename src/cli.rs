//! The command lines of `servercall` and `clientcall`, and the one-sentence errors a student sees
//! when something is off (a port in use, a bad address), instead of a panic or a traceback.
//!
//! The binaries in `src/bin/` only call these functions; keeping the parsing here lets the tests
//! check every option without starting a process.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

use crate::client::{end_of_input_key, in_words, with_default_port, ClientConfig, Place};
use crate::protocol::DEFAULT_MAX_LINE;
use crate::server::ServerConfig;

/// `servercall --help`. The defaults it shows are the ones [`ServerConfig::default`] has.
pub fn servercall_help() -> String {
    let defaults = ServerConfig::default();
    let timeout = |duration: Duration| duration.as_secs_f64();
    format!(
        "\
servercall: the upcall/1 server. It calls back the functions its clients register.

Usage: servercall [--listen ADDR] [--max-clients N] [--max-per-address N] [--max-msg-rate N]
                  [--line-timeout SECS] [--upcall-timeout SECS] [--max-line BYTES] [--quiet]

Options:
  --listen ADDR           where to listen (default {listen}; environment UPCALL_LISTEN;
                          0.0.0.0:4141 listens on every interface, as in the Docker lab)
  --max-clients N         more connections than this get `ERR server full` (default {clients})
  --max-per-address N     more connections than this from one IP address are turned away
                          (default 0: no limit; all the Docker lab's clients share one address)
  --max-msg-rate N        MSGs per second one client may send, in bursts of up to 2N; faster
                          ones get ERR and are not passed on (default {rate}; 0: no limit)
  --line-timeout SECS     a new connection must send a line within this time, and a line
                          may not stay unfinished longer; quiet clients stay (default {line})
  --upcall-timeout SECS   how long an upcall may take before it is given up (default {upcall})
  --max-line BYTES        longest line accepted, newline included (default {max_line})
  --quiet                 log nothing but errors (for benchmarks)
  --help                  this text

Stdin is the operator's console: type `help` there once the server runs.",
        listen = DEFAULT_LISTEN,
        clients = defaults.max_clients,
        rate = defaults.max_msg_rate,
        line = timeout(defaults.line_timeout),
        upcall = timeout(defaults.upcall_timeout),
        max_line = defaults.max_line,
    )
}

/// Where `servercall` listens, and `clientcall` connects, unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4141";

/// `clientcall --help`, with the defaults the code uses and the end-of-input key of this system.
pub fn clientcall_help() -> String {
    let end_key = end_of_input_key();
    format!(
        "\
clientcall: the upcall/1 client. It registers on_event, uppercase and hostname, sends what you
type as messages, and runs whatever the server calls back.

Usage: clientcall [--server ADDR] [--no-reader] [--max-line BYTES]

Options:
  --server ADDR     the server, HOST:PORT or HOST (default {DEFAULT_LISTEN}; environment
                    UPCALL_SERVER; in the Docker lab upcall-server:4141)
  --no-reader       no reader thread: read the socket only after each message, like the old lab
  --max-line BYTES  longest line accepted and sent, newline included (default {DEFAULT_MAX_LINE})
  --help            this text

Type a message and press Enter; `bye` (or {end_key}) ends the session."
    )
}

/// What `servercall` was asked to do.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: String,
    pub config: ServerConfig,
}

/// Why a command line did not turn into options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Usage {
    /// `--help`: print the help text and exit successfully.
    Help,
    /// A mistake, in one sentence.
    Wrong(String),
}

/// Reads `servercall`'s arguments (without the program name). `env_listen` is `UPCALL_LISTEN`.
pub fn server_options(
    args: impl IntoIterator<Item = String>,
    env_listen: Option<String>,
) -> Result<ServerOptions, Usage> {
    let mut listen = env_listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let mut config = ServerConfig::default();
    let mut args = Flags::new(args);
    while let Some(flag) = args.next_flag()? {
        match flag.as_str() {
            "--listen" => listen = args.value(&flag)?,
            "--max-clients" => config.max_clients = args.number(&flag, 1)?,
            "--max-per-address" => config.max_per_address = args.number(&flag, 0)?,
            "--max-msg-rate" => {
                let rate = args.number(&flag, 0)?;
                config.max_msg_rate = u32::try_from(rate)
                    .map_err(|_| Usage::Wrong(format!("--max-msg-rate {rate} is too large")))?;
            }
            "--line-timeout" => config.line_timeout = args.seconds(&flag)?,
            "--upcall-timeout" => config.upcall_timeout = args.seconds(&flag)?,
            // A line must at least hold `MSG x` and its newline.
            "--max-line" => config.max_line = args.number(&flag, 16)?,
            "--quiet" => config.log = false,
            "--help" | "-h" => return Err(Usage::Help),
            other => return wrong(format!("unknown option `{other}`")),
        }
    }
    Ok(ServerOptions { listen, config })
}

/// Reads `clientcall`'s arguments (without the program name). `env_server` is `UPCALL_SERVER`.
pub fn client_options(
    args: impl IntoIterator<Item = String>,
    env_server: Option<String>,
) -> Result<ClientConfig, Usage> {
    let mut config = ClientConfig {
        server: env_server.unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
        reader_thread: true,
        max_line: DEFAULT_MAX_LINE,
    };
    let mut args = Flags::new(args);
    while let Some(flag) = args.next_flag()? {
        match flag.as_str() {
            "--server" => config.server = args.value(&flag)?,
            "--no-reader" => config.reader_thread = false,
            // A line must at least hold `MSG x` and its newline.
            "--max-line" => config.max_line = args.number(&flag, 16)?,
            "--help" | "-h" => return Err(Usage::Help),
            other => return wrong(format!("unknown option `{other}`")),
        }
    }
    Ok(config)
}

/// Binds the server's listening socket, or explains in one sentence why it cannot.
///
/// The old lab printed `OSError: [Errno 98] Address already in use` inside a traceback; a student
/// needs to know what is wrong *and what to do about it*.
pub fn listen(address: &str) -> Result<TcpListener, String> {
    let address = with_default_port(address);
    let resolved: Vec<SocketAddr> = match address.to_socket_addrs() {
        Ok(resolved) => resolved.collect(),
        Err(_) => {
            return Err(format!(
                "`{address}` is not an address to listen on: use HOST:PORT, such as \
                 127.0.0.1:4141 (this machine only) or 0.0.0.0:4141 (every interface)."
            ))
        }
    };
    let Some(first) = resolved.first() else {
        return Err(format!("`{address}` has no address to listen on."));
    };
    let other_port = format!("--listen {}:{}", first.ip(), first.port().wrapping_add(1));
    TcpListener::bind(first).map_err(|error| match error.kind() {
        io::ErrorKind::AddrInUse => format!(
            "cannot listen on {first}: the address is already in use. {} Or pick another port \
             with {other_port}.",
            who_has_the_port(first.port(), Place::here())
        ),
        io::ErrorKind::AddrNotAvailable => format!(
            "cannot listen on {first}: this machine has no such address. Use 127.0.0.1 or \
             0.0.0.0."
        ),
        // Windows refuses a port it has reserved (Hyper-V, WSL and Docker Desktop reserve
        // ranges that can move at each boot) with "access denied"; it has no root-only ports.
        io::ErrorKind::PermissionDenied if Place::here() == Place::Windows => format!(
            "cannot listen on {first}: permission denied. Windows has reserved this port for \
             something else: `netsh interface ipv4 show excludedportrange protocol=tcp` lists \
             the reserved ranges. Pick a port outside them with {other_port}."
        ),
        io::ErrorKind::PermissionDenied => format!(
            "cannot listen on {first}: permission denied (ports below 1024 need root). Use \
             a port such as 4141."
        ),
        _ => format!("cannot listen on {first}: {}.", in_words(&error)),
    })
}

/// Who may have a port, and how to stop it, in the commands of the place the student is in.
fn who_has_the_port(port: u16, place: Place) -> String {
    let show = match place {
        // In the Docker lab, that is nearly always a servercall started earlier with `docker
        // compose exec`: Ctrl-C ends the exec, not the servercall it started.
        Place::LabContainer => {
            return "In this container an earlier servercall is probably still running (Ctrl-C \
                    on `docker compose exec` leaves it running). Use that one, or stop it from \
                    your machine's terminal with `docker compose -f compose/upcall.yml exec \
                    upcall-server pkill -x servercall`."
                .to_string()
        }
        Place::Windows => {
            format!("`netstat -ano | findstr :{port}` shows the PID of the program that has it")
        }
        Place::Linux => format!("`ss -ltnp 'sport = :{port}'` shows which program has it"),
        Place::OtherUnix => {
            format!("`lsof -nP -iTCP:{port} -sTCP:LISTEN` shows which program has it")
        }
    };
    format!(
        "Another servercall (or another program) has that port: stop it (Ctrl-C or `quit` in its \
         terminal; {show})."
    )
}

fn wrong<T>(sentence: String) -> Result<T, Usage> {
    Err(Usage::Wrong(sentence))
}

/// `--name value` and `--name=value`, one flag at a time.
struct Flags<I: Iterator<Item = String>> {
    args: I,
    /// The value after `=` in the flag just read, if it had one.
    inline_value: Option<String>,
}

impl<I: Iterator<Item = String>> Flags<I> {
    fn new(args: impl IntoIterator<IntoIter = I>) -> Flags<I> {
        Flags {
            args: args.into_iter(),
            inline_value: None,
        }
    }

    fn next_flag(&mut self) -> Result<Option<String>, Usage> {
        let Some(arg) = self.args.next() else {
            return Ok(None);
        };
        if !arg.starts_with('-') {
            return wrong(format!(
                "unexpected argument `{arg}` (options start with --)"
            ));
        }
        match arg.split_once('=') {
            Some((flag, value)) => {
                self.inline_value = Some(value.to_string());
                Ok(Some(flag.to_string()))
            }
            None => {
                self.inline_value = None;
                Ok(Some(arg))
            }
        }
    }

    fn value(&mut self, flag: &str) -> Result<String, Usage> {
        match self.inline_value.take().or_else(|| self.args.next()) {
            Some(value) => Ok(value),
            None => wrong(format!("{flag} needs a value")),
        }
    }

    /// A duration in seconds, fractions allowed: more than 0, at most a day.
    fn seconds(&mut self, flag: &str) -> Result<Duration, Usage> {
        let value = self.value(flag)?;
        match value.parse::<f64>() {
            Ok(s) if s > 0.0 && s <= 86_400.0 => Ok(Duration::from_secs_f64(s)),
            _ => wrong(format!("{flag} wants seconds, got `{value}`")),
        }
    }

    fn number(&mut self, flag: &str, at_least: usize) -> Result<usize, Usage> {
        let value = self.value(flag)?;
        match value.parse::<usize>() {
            Ok(n) if n >= at_least => Ok(n),
            _ => wrong(format!(
                "{flag} wants a whole number of at least {at_least}, got `{value}`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn server_defaults_and_flags() {
        let options = server_options(args(""), None).unwrap();
        assert_eq!(options.listen, "127.0.0.1:4141");
        assert_eq!(options.config.max_clients, 1024);
        assert_eq!(options.config.upcall_timeout, Duration::from_secs(5));
        assert_eq!(options.config.max_line, 4096);

        let line = "--listen=0.0.0.0:5000 --max-clients 3 --upcall-timeout 0.5 --max-line 100";
        let options = server_options(args(line), Some("ignored:1".into())).unwrap();
        assert_eq!(options.listen, "0.0.0.0:5000");
        assert_eq!(options.config.max_clients, 3);
        assert_eq!(options.config.upcall_timeout, Duration::from_millis(500));
        assert_eq!(options.config.max_line, 100);
    }

    #[test]
    fn the_environment_is_the_fallback() {
        let options = server_options(args(""), Some("0.0.0.0:4141".into())).unwrap();
        assert_eq!(options.listen, "0.0.0.0:4141");
        let config = client_options(args(""), Some("upcall-server:4141".into())).unwrap();
        assert_eq!(config.server, "upcall-server:4141");
        let config = client_options(args("--server h:1"), Some("upcall-server:4141".into()));
        assert_eq!(config.unwrap().server, "h:1");
    }

    #[test]
    fn mistakes_are_one_sentence() {
        let cases = [
            (
                "--max-clients zero",
                "--max-clients wants a whole number of at least 1, got `zero`",
            ),
            (
                "--max-clients 0",
                "--max-clients wants a whole number of at least 1, got `0`",
            ),
            (
                "--upcall-timeout -1",
                "--upcall-timeout wants seconds, got `-1`",
            ),
            ("--listen", "--listen needs a value"),
            ("--verbose", "unknown option `--verbose`"),
            ("4141", "unexpected argument `4141` (options start with --)"),
        ];
        for (line, sentence) in cases {
            let result = server_options(args(line), None);
            assert_eq!(result.unwrap_err(), Usage::Wrong(sentence.into()), "{line}");
        }
        assert_eq!(
            server_options(args("--help"), None).unwrap_err(),
            Usage::Help
        );
        assert_eq!(client_options(args("-h"), None).unwrap_err(), Usage::Help);
        assert!(
            !client_options(args("--no-reader"), None)
                .unwrap()
                .reader_thread
        );
    }

    #[test]
    fn the_advice_for_a_busy_port_names_the_commands_of_each_system() {
        let cases = [
            (Place::Linux, "`ss -ltnp 'sport = :4141'`"),
            (Place::Windows, "`netstat -ano | findstr :4141`"),
            (Place::OtherUnix, "`lsof -nP -iTCP:4141 -sTCP:LISTEN`"),
            (
                Place::LabContainer,
                "exec upcall-server pkill -x servercall`",
            ),
        ];
        for (place, command) in cases {
            let advice = who_has_the_port(4141, place);
            assert!(advice.contains(command), "{place:?}: {advice}");
            for (other, other_command) in cases {
                assert!(
                    other == place || !advice.contains(other_command),
                    "{advice}"
                );
            }
        }
    }

    #[test]
    fn a_port_in_use_is_explained() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap().to_string();
        let error = listen(&address).unwrap_err();
        assert!(error.contains("already in use"), "{error}");
        assert!(error.contains("--listen 127.0.0.1:"), "{error}");
        assert!(listen("no such host name at all:1")
            .unwrap_err()
            .contains("not an address"));
    }
}
