//! What a server must do over time (rules 6.5 and 9 of `src/upcall-1.md`): give up on upcalls,
//! close connections that hold a slot without using it, keep the quiet ones, hold floods to a
//! rate. These cases wait for the server's own timeouts, so `checkcall` takes them as options
//! (`--line-timeout 2` for a `servercall --line-timeout 2`).

use std::thread;
use std::time::{Duration, Instant};

use super::case::{after, Case};
use super::server_ctx::{is_relay, Peer, ServerCtx};
use super::wire::parse;
use crate::protocol::Message;

/// The time a server is given past its own timeout: a loaded machine, a slow language.
const SLACK: Duration = Duration::from_secs(3);

pub fn cases() -> Vec<Case<ServerCtx>> {
    vec![
        Case {
            rule: "6.5",
            title: "an answer after the upcall timeout gets ERR",
            run: late_answer,
        },
        Case {
            rule: "9.1",
            title: "silence after connecting: ERR, then the close",
            run: silent_connection,
        },
        Case {
            rule: "9.2",
            title: "no REGISTER within the line timeout: ERR, then the close",
            run: never_registers,
        },
        Case {
            rule: "9.3",
            title: "a line trickling for the line timeout: ERR, then the close",
            run: unfinished_line,
        },
        Case {
            rule: "9.4",
            title: "a registered client may stay quiet",
            run: quiet_client_stays,
        },
        Case {
            rule: "9.5",
            title: "MSGs past the rate get ERR and no upcall",
            run: message_flood,
        },
        Case {
            rule: "9.6",
            title: "refused lines past the rate close the connection",
            run: refused_flood,
        },
    ]
}

/// The cases that wait for a timeout: the runner starts them first.
pub fn is_slow(rule: &str) -> bool {
    matches!(rule, "6.5" | "9.1" | "9.2" | "9.3" | "9.4")
}

fn late_answer(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["on_event"])?;
    peer.send(&["MSG answered too late"])?;
    let id = peer.expect_processing("answered too late")?;
    let wait = ctx.options.upcall_timeout + Duration::from_secs(1);
    peer.conn.note(&format!(
        "(checkcall waits {wait:?}: the upcall timeout and a second)"
    ));
    thread::sleep(wait);
    peer.send(&[&format!("RETURN {id} late")])?;
    peer.expect_err(&format!(
        "upcall {id} was given up after the upcall timeout ({:?}): it is no longer pending",
        ctx.options.upcall_timeout
    ))?;
    Ok(())
}

/// Expects the server to close `peer` between `earliest` and `latest`, with an `ERR` as the
/// last line before the close.
fn expect_dropped(
    peer: &mut Peer,
    earliest: Instant,
    latest: Instant,
    why: &str,
) -> Result<(), String> {
    match peer.until_closed(latest) {
        Ok(lines) => {
            if Instant::now() < earliest {
                return Err(format!("{why}: not before the line timeout"));
            }
            let last_err = lines
                .iter()
                .rev()
                .find(|line| !matches!(parse(line), Ok(Message::Bye)))
                .is_some_and(|line| matches!(parse(line), Ok(Message::Err { .. })));
            if last_err {
                Ok(())
            } else {
                Err(format!(
                    "{why}: an ERR <reason> (then BYE or not) before the close"
                ))
            }
        }
        Err(_) => Err(format!(
            "{why}: ERR <reason> and the close within the line timeout and {SLACK:?}"
        )),
    }
}

fn silent_connection(ctx: &mut ServerCtx) -> Result<(), String> {
    let started = Instant::now();
    let mut peer = ctx.open()?;
    let limit = ctx.options.line_timeout;
    peer.conn.note(&format!(
        "(checkcall sends nothing, for up to {:?})",
        limit + SLACK
    ));
    expect_dropped(
        &mut peer,
        started + limit.mul_f64(0.8),
        started + limit + SLACK,
        &format!("a connection that sends nothing is closed after the line timeout ({limit:?})"),
    )
}

fn never_registers(ctx: &mut ServerCtx) -> Result<(), String> {
    let started = Instant::now();
    let mut peer = ctx.open()?;
    let limit = ctx.options.line_timeout;
    let latest = started + limit + SLACK;
    peer.conn.note(&format!(
        "(checkcall sends a MSG every {:?} and never registers)",
        limit / 4
    ));
    // Each MSG is refused (rule 4.3): what matters is that the connection is closed in the end.
    let mut lines = Vec::new();
    while Instant::now() < latest {
        if peer.send(&["MSG still no callback"]).is_err() {
            break;
        }
        match peer.until_closed(after(limit / 4)) {
            Ok(more) => {
                lines.extend(more);
                if Instant::now() < started + limit.mul_f64(0.8) {
                    return Err(
                        "a client that has not registered yet kept until the line timeout".into(),
                    );
                }
                return match lines.last().map(|line| parse(line)) {
                    Some(Ok(Message::Err { .. } | Message::Bye)) => Ok(()),
                    _ => Err("an ERR <reason> before the close".into()),
                };
            }
            Err(more) => lines.extend(more),
        }
    }
    Err(format!(
        "a connection that registers no callback is closed after the line timeout ({limit:?}), \
         even while it sends lines; it was still open after {:?}",
        limit + SLACK
    ))
}

fn unfinished_line(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["on_event"])?;
    let limit = ctx.options.line_timeout;
    let started = Instant::now();
    let latest = started + limit + SLACK;
    peer.conn.send_bytes(b"MSG slow")?;
    peer.conn.note(&format!(
        "(checkcall sends one more byte every {:?}, never a newline)",
        limit / 4
    ));
    while Instant::now() < latest {
        match peer.until_closed(after(limit / 4)) {
            Ok(lines) => {
                if Instant::now() < started + limit.mul_f64(0.8) {
                    return Err("the unfinished line kept until the line timeout".into());
                }
                return match lines
                    .iter()
                    .rev()
                    .find(|l| !matches!(parse(l), Ok(Message::Bye)))
                {
                    Some(line) if matches!(parse(line), Ok(Message::Err { .. })) => Ok(()),
                    _ => Err("an ERR <reason> before the close".into()),
                };
            }
            Err(lines) => {
                // Other clients' messages may come (and wait: an answer now would land in the
                // middle of the unfinished line); anything else is wrong.
                if let Some(line) = lines.iter().find(|line| !is_relay(line)) {
                    if !matches!(parse(line), Ok(Message::Err { .. })) {
                        return Err(format!(
                            "nothing while the line is unfinished; got `{line}`"
                        ));
                    }
                    if Instant::now() < started + limit.mul_f64(0.8) {
                        return Err("the unfinished line kept until the line timeout".into());
                    }
                    return match peer.until_closed(after(SLACK)) {
                        Ok(_) => Ok(()),
                        Err(_) => Err(format!("the close after the ERR, within {SLACK:?}")),
                    };
                }
            }
        }
        if peer.conn.send_bytes(b"w").is_err() {
            break;
        }
    }
    Err(format!(
        "a line that is still unfinished after the line timeout ({limit:?}) gets ERR and the \
         connection is closed, however slowly its bytes trickle in"
    ))
}

fn quiet_client_stays(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["on_event"])?;
    let wait = ctx.options.line_timeout + Duration::from_secs(1);
    peer.conn.note(&format!(
        "(checkcall is quiet for {wait:?}, longer than the line timeout)"
    ));
    thread::sleep(wait);
    peer.send(&["MSG still here"])?;
    let id = peer.expect_processing("still here")?;
    peer.send(&[&format!("RETURN {id} ok")])
}

fn message_flood(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["on_event"])?;
    let rate = ctx.options.max_msg_rate as usize;
    let count = 2 * rate + 10;
    let lines: Vec<String> = (0..count).map(|n| format!("MSG flood {n}")).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    peer.send(&refs)?;
    let (mut passed, mut refused) = (0, 0);
    while passed + refused < count {
        match peer.next(&format!("an UPCALL or an ERR for each of the {count} MSGs"))? {
            Message::Upcall { id, .. } => {
                passed += 1;
                peer.send(&[&format!("RETURN {id} ok")])?;
            }
            Message::Err { .. } => refused += 1,
            _ => return Err(peer.instead("an UPCALL or an ERR for each MSG")),
        }
    }
    // The burst is 2R; a few more may pass while the bucket refills during the test.
    if refused == 0 || passed > 2 * rate + 5 {
        return Err(format!(
            "of {count} MSGs sent at once, at most {} passed on (a burst of 2 x {rate}) and the \
             rest refused with ERR; {passed} were passed on and {refused} refused",
            2 * rate
        ));
    }
    Ok(())
}

fn refused_flood(ctx: &mut ServerCtx) -> Result<(), String> {
    // Registered, so that no line timeout (rule 9.2) closes it instead.
    let mut peer = ctx.open_registered(&["on_event"])?;
    let rate = ctx.options.max_msg_rate as usize;
    let count = 6 * rate + 20;
    let lines = vec!["HELLO"; count];
    peer.send(&lines)?;
    let wait = ctx.options.wait + Duration::from_secs(4);
    match peer.until_closed(after(wait)) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "{count} bad lines sent at once (each refused with ERR): past {rate} refusals a \
             second (bursts of {}) the server closes the connection; it was still open after {wait:?}",
            2 * rate
        )),
    }
}
