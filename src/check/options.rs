//! `checkcall`'s command line. (Its own, apart from `src/cli.rs`: the checker is a tool for the
//! student's programs, not a part of the lab's two.)

use std::path::PathBuf;
use std::time::Duration;

use super::case::{selected, ANSWER_WAIT};
use super::rules;

/// What to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `checkcall server ADDR`: connect to a running server.
    Server { address: String },
    /// `checkcall client`: listen here and check the client that connects.
    Client { listen: String },
}

/// Everything `checkcall` was told.
#[derive(Debug, Clone)]
pub struct Options {
    pub command: Command,
    /// Rule numbers (`4`, `4.2`) to run; empty: all.
    pub selection: Vec<String>,
    pub junit: Option<PathBuf>,
    /// The server's `--line-timeout`, for the cases of rules 9.1-9.4.
    pub line_timeout: Duration,
    /// The server's `--upcall-timeout`, for rule 6.5.
    pub upcall_timeout: Duration,
    /// The server's `--max-msg-rate`, for rules 9.5 and 9.6.
    pub max_msg_rate: u32,
    /// How long to wait for a line that should come.
    pub wait: Duration,
    /// How many server cases run at once (each on connections of its own).
    pub jobs: usize,
    /// `checkcall client`: how long to wait for the client to connect.
    pub accept_wait: Duration,
}

impl Options {
    pub fn new(command: Command) -> Options {
        Options {
            command,
            selection: Vec::new(),
            junit: None,
            line_timeout: Duration::from_secs(30),
            upcall_timeout: Duration::from_secs(5),
            max_msg_rate: 20,
            wait: ANSWER_WAIT,
            jobs: 4,
            accept_wait: Duration::from_secs(120),
        }
    }
}

/// The address `checkcall client` listens on unless told: any free port on this machine.
pub const DEFAULT_CLIENT_LISTEN: &str = "127.0.0.1:4142";

/// `checkcall --help`.
pub fn help() -> String {
    format!(
        "\
checkcall: checks a program against upcall/1, rule by rule (the rules: src/upcall-1.md).

Usage: checkcall server ADDR [RULE...] [options]   check the server running at ADDR
       checkcall client [RULE...] [options]        listen, and check the client that connects

RULE is a rule number, such as 4.2, or a section, such as 4 (default: every rule).

Options:
  --listen ADDR          checkcall client: where to listen (default {DEFAULT_CLIENT_LISTEN})
  --accept-wait SECS     checkcall client: how long to wait for the client (default 120)
  --line-timeout SECS    the server's line timeout (servercall --line-timeout; default 30)
  --upcall-timeout SECS  the server's upcall timeout (servercall --upcall-timeout; default 5)
  --max-msg-rate N       the server's message rate (servercall --max-msg-rate; default 20)
  --wait SECS            how long to wait for a line that should come (default 3)
  --jobs N               server cases run at once (default 4; 1 for a server that limits
                         connections per address)
  --junit FILE           also write the results as JUnit XML to FILE
  --help                 this text

Exit status: 0 if every case passed, 1 if one failed, 2 if the command line is wrong.
checkcall sends only to the address it is given (or that connects to it)."
    )
}

/// Reads the arguments (without the program name). `Err(None)`: `--help`; `Err(Some(..))`: a
/// mistake, in one sentence.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, Option<String>> {
    let mut args = args.into_iter();
    let mut command = match args.next().as_deref() {
        Some("server") => Command::Server {
            address: String::new(),
        },
        Some("client") => Command::Client {
            listen: DEFAULT_CLIENT_LISTEN.to_string(),
        },
        Some("--help" | "-h") => return Err(None),
        Some(other) => {
            return Err(Some(format!(
                "`{other}`: say what to check first, `server ADDR` or `client`"
            )))
        }
        None => return Err(Some("say what to check: `server ADDR` or `client`".into())),
    };
    let mut options = Options::new(command.clone());
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_string(), Some(value.into())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, Option<String>> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| Some(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--help" | "-h" => return Err(None),
            "--listen" => match &mut command {
                Command::Client { listen } => *listen = value()?,
                Command::Server { .. } => {
                    return Err(Some("--listen is for `checkcall client`".into()))
                }
            },
            "--junit" => options.junit = Some(PathBuf::from(value()?)),
            "--line-timeout" => options.line_timeout = seconds(&flag, &value()?)?,
            "--upcall-timeout" => options.upcall_timeout = seconds(&flag, &value()?)?,
            "--wait" => options.wait = seconds(&flag, &value()?)?,
            "--accept-wait" => options.accept_wait = seconds(&flag, &value()?)?,
            "--max-msg-rate" => options.max_msg_rate = number(&flag, &value()?, 1, 10_000)?,
            "--jobs" => options.jobs = number(&flag, &value()?, 1, 64)? as usize,
            other if other.starts_with("--") => {
                return Err(Some(format!("unknown option `{other}`")))
            }
            _ => match &mut command {
                Command::Server { address } if address.is_empty() => *address = arg,
                _ => {
                    let known = rules::RULES
                        .iter()
                        .any(|rule| selected(rule.number, std::slice::from_ref(&arg)));
                    if !known {
                        return Err(Some(format!(
                            "`{arg}` is not a rule number (see src/upcall-1.md)"
                        )));
                    }
                    options.selection.push(arg);
                }
            },
        }
    }
    if let Command::Server { address } = &command {
        if address.is_empty() {
            return Err(Some(
                "`checkcall server` needs the server's address, such as 127.0.0.1:4141".into(),
            ));
        }
    }
    options.command = command;
    Ok(options)
}

fn seconds(flag: &str, value: &str) -> Result<Duration, Option<String>> {
    match value.parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= 3600.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err(Some(format!(
            "{flag} wants seconds, such as 2 or 0.5, not `{value}`"
        ))),
    }
}

fn number(flag: &str, value: &str, least: u32, most: u32) -> Result<u32, Option<String>> {
    match value.parse::<u32>() {
        Ok(n) if (least..=most).contains(&n) => Ok(n),
        _ => Err(Some(format!(
            "{flag} wants a number from {least} to {most}, not `{value}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn a_server_check_takes_an_address_rules_and_the_servers_timeouts() {
        let options = parse(args(
            "server 127.0.0.1:4141 4.2 9 --line-timeout 2 --junit=r.xml",
        ))
        .unwrap();
        assert_eq!(
            options.command,
            Command::Server {
                address: "127.0.0.1:4141".into()
            }
        );
        assert_eq!(options.selection, ["4.2", "9"]);
        assert_eq!(options.line_timeout, Duration::from_secs(2));
        assert_eq!(options.junit, Some(PathBuf::from("r.xml")));
    }

    #[test]
    fn mistakes_are_told_in_a_sentence() {
        assert!(matches!(parse(args("server")), Err(Some(_))));
        assert!(matches!(parse(args("server x 12.7")), Err(Some(_))));
        assert!(matches!(parse(args("client --jobs 0")), Err(Some(_))));
        assert!(matches!(parse(args("client --help")), Err(None)));
        let client = parse(args("client --listen 127.0.0.1:0 5")).unwrap();
        assert_eq!(
            client.command,
            Command::Client {
                listen: "127.0.0.1:0".into()
            }
        );
    }
}
