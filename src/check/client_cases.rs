//! What a client must do (the client's rules of `src/upcall-1.md`): the checker listens, plays a
//! server for the one client that connects, and runs the cases one after another on that
//! connection, its `BYE` last.
//!
//! Each case uses upcall ids of its own (100, 101, ... for the first, 200, ... for the next), so
//! a late answer to an earlier case is recognised and passed over instead of failing this one.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::case::{after, selected, Case, Outcome, Side};
use super::client_ctx::{Answer, ClientCtx};
use super::options::Options;
use super::report::Report;
use super::wire::{parse, Conn, Got, Transcript, MAX_LINE};
use crate::lock;
use crate::protocol::Message;

/// Every client case, in the order they run: the registration first, the server's `BYE` last.
pub fn cases() -> Vec<Case<ClientCtx>> {
    vec![
        Case {
            rule: "2.4",
            title: "the client registers on_event and uppercase",
            run: registers,
        },
        Case {
            rule: "5.6",
            title: "uppercase and on_event answer as the lab's callbacks do",
            run: lab_callbacks,
        },
        Case {
            rule: "5.3",
            title: "each upcall is answered once, with its own id",
            run: answered_once,
        },
        Case {
            rule: "5.2",
            title: "an upcall without an argument (no trailing space)",
            run: no_argument,
        },
        Case {
            rule: "5.4",
            title: "five upcalls at once, each answered",
            run: pipelined,
        },
        Case {
            rule: "5.5",
            title: "an unknown callback is answered FAIL",
            run: unknown_callback,
        },
        Case {
            rule: "1.1",
            title: "a CR before the LF is not part of the line",
            run: cr_dropped,
        },
        Case {
            rule: "1.3",
            title: "a lower-case verb is read; the answer's verb is upper case",
            run: verbs_any_case,
        },
        Case {
            rule: "1.5",
            title: "an upcall line of 4096 bytes",
            run: long_argument,
        },
        Case {
            rule: "1.7",
            title: "UTF-8 arguments arrive and go back intact",
            run: utf8,
        },
        Case {
            rule: "7.3",
            title: "the server's ERR is not answered",
            run: server_err,
        },
        Case {
            rule: "7.4",
            title: "lines a client cannot use are ignored",
            run: odd_lines,
        },
        Case {
            rule: "1.2",
            title: "empty lines are ignored",
            run: empty_lines,
        },
        Case {
            rule: "8.2",
            title: "after the server's BYE and close, the client closes",
            run: server_bye,
        },
    ]
}

/// Listens, tells `listening` where, waits for one client and runs the selected cases on it.
pub fn run(
    listen: &str,
    options: &Options,
    listening: impl FnOnce(SocketAddr),
) -> Result<Report, String> {
    let addr = listen
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("`{listen}` is not an address to listen on: use HOST:PORT"))?;
    let listener =
        TcpListener::bind(addr).map_err(|error| format!("cannot listen on {addr}: {error}"))?;
    let local = listener.local_addr().map_err(|error| error.to_string())?;
    listening(local);
    let stream = accept_within(&listener, options.accept_wait)?;
    let _ = stream.set_nonblocking(false);
    let transcript: Transcript = Arc::new(Mutex::new(Vec::new()));
    let mut ctx = ClientCtx {
        conn: Conn::over(stream, 'A', &transcript),
        wait: options.wait,
        registered: BTreeSet::new(),
        base: 1,
        next_id: 1,
        last: String::new(),
    };
    let mut outcomes = Vec::new();
    for (index, case) in cases().iter().enumerate() {
        // The registration is every case's start; the others are run only if picked.
        let picked = selected(case.rule, &options.selection);
        if !picked && index > 0 {
            continue;
        }
        ctx.base = 100 * (index as u64 + 1);
        ctx.next_id = ctx.base;
        let started = Instant::now();
        let failure = (case.run)(&mut ctx).err();
        let lines = std::mem::take(&mut *lock(&transcript));
        if picked {
            outcomes.push(Outcome {
                side: Side::Client,
                rule: case.rule,
                title: case.title,
                failure,
                transcript: lines,
                took: started.elapsed(),
            });
        }
    }
    Ok(Report { outcomes })
}

/// `accept` with a limit: std's has none, so a non-blocking listener is polled.
fn accept_within(listener: &TcpListener, wait: Duration) -> Result<std::net::TcpStream, String> {
    listener
        .set_nonblocking(true)
        .map_err(|error| error.to_string())?;
    let deadline = after(wait);
    loop {
        match listener.accept() {
            Ok((stream, _)) => return Ok(stream),
            Err(error) if error.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(20));
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                return Err(format!("no client connected within {wait:?}"))
            }
            Err(error) => return Err(format!("could not accept a connection: {error}")),
        }
    }
}

fn registers(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.conn.send(&["WELCOME client-1 upcall/1"])?;
    let deadline = after(ctx.wait + Duration::from_secs(2));
    let mut quiet_from: Option<Instant> = None;
    let mut wrong = None;
    loop {
        let ready = ctx.registered.contains("on_event") && ctx.registered.contains("uppercase");
        // Once both are there, half a second more for the client's other callbacks.
        let until = match quiet_from {
            Some(since) if ready => (since + Duration::from_millis(500)).min(deadline),
            _ => deadline,
        };
        match ctx.conn.read_line(until) {
            Got::Line(line) => {
                ctx.last = line.clone();
                quiet_from = Some(Instant::now());
                match parse(&line) {
                    Ok(Message::Register { callback }) => {
                        ctx.conn.send(&[&format!("REGISTERED {callback}")])?;
                        ctx.registered.insert(callback);
                    }
                    Ok(Message::Msg { .. }) => {}
                    // Read on to the end of the client's registrations, so that its other lines
                    // do not land in the next case.
                    Ok(_) => wrong = wrong.or(Some(ctx.instead("REGISTER <callback> lines after WELCOME"))),
                    Err(error) => {
                        ctx.conn.send(&[&format!("ERR {error}")])?;
                        wrong = wrong.or(Some(format!("REGISTER <callback>; instead a line that is not upcall/1 ({error})")));
                    }
                }
            }
            Got::Closed => return Err("REGISTER on_event and REGISTER uppercase; instead the client closed the connection".into()),
            Got::Silent if ready || wrong.is_some() => return wrong.map_or(Ok(()), Err),
            Got::Silent => {
                return Err(format!(
                    "REGISTER on_event and REGISTER uppercase within {:?} of WELCOME (checkcall calls \
                     these two); the client registered {:?}",
                    ctx.wait + Duration::from_secs(2),
                    ctx.registered
                ))
            }
        }
        if ready && quiet_from.is_none() {
            quiet_from = Some(Instant::now());
        }
    }
}

fn lab_callbacks(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.needs("uppercase")?;
    let id = ctx.upcall("uppercase", "haii")?;
    ctx.expect_return(id, "HAII", "uppercase returns its argument in upper case")?;
    let id = ctx.upcall("on_event", "Upcall event: Processing haii")?;
    match ctx.answer(&format!(
        "RETURN {id} <any value> (on_event is a notification)"
    ))? {
        (got, Answer::Returned(_)) if got == id => Ok(()),
        _ => Err(ctx.instead(&format!("RETURN {id} <any value>, for on_event"))),
    }
}

fn answered_once(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.needs("uppercase")?;
    // Ids the client cannot guess: it must echo them, not count.
    ctx.next_id += 41;
    let first = ctx.upcall("uppercase", "a")?;
    ctx.next_id -= 30;
    let second = ctx.upcall("uppercase", "b")?;
    ctx.expect_return(first, "A", "the answer carries the upcall's own id")?;
    ctx.expect_return(second, "B", "the answer carries the upcall's own id")?;
    ctx.next_id += 50;
    let third = ctx.upcall("uppercase", "c")?;
    ctx.expect_return(third, "C", "nothing more for the upcalls already answered")
}

fn no_argument(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.needs("uppercase")?;
    let id = ctx.upcall_raw("uppercase", b"\n")?;
    let what = format!("RETURN {id} (an empty value: uppercase of an empty argument)");
    match ctx.answer(&what)? {
        (got, Answer::Returned(value)) if got == id && value.is_empty() => Ok(()),
        _ => Err(ctx.instead(&what)),
    }
}

fn pipelined(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.needs("uppercase")?;
    let mut bytes = Vec::new();
    let mut expected = std::collections::BTreeMap::new();
    for n in 0..5 {
        let id = ctx.next_id;
        ctx.next_id += 1;
        bytes.extend_from_slice(format!("UPCALL {id} uppercase pipelined {n}\n").as_bytes());
        expected.insert(id, format!("PIPELINED {n}"));
    }
    ctx.conn.send_bytes(&bytes)?;
    while !expected.is_empty() {
        let ids: Vec<String> = expected.keys().map(u64::to_string).collect();
        let what = format!("answers to upcalls {} (any order)", ids.join(", "));
        match ctx.answer(&what)? {
            (id, Answer::Returned(value)) if expected.get(&id) == Some(&value) => {
                expected.remove(&id);
            }
            _ => return Err(ctx.instead(&what)),
        }
    }
    Ok(())
}

fn unknown_callback(ctx: &mut ClientCtx) -> Result<(), String> {
    let id = ctx.upcall("no_such_callback", "x")?;
    let what = format!("FAIL {id} <reason> (the client has no callback no_such_callback)");
    match ctx.answer(&what)? {
        (got, Answer::Failed(_)) if got == id => Ok(()),
        _ => Err(ctx.instead(&what)),
    }
}

fn cr_dropped(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.needs("uppercase")?;
    let id = ctx.upcall_raw("uppercase", b"\r\n")?;
    let what = format!("RETURN {id} (the callback is `uppercase`, not `uppercase\\r`)");
    match ctx.answer(&what)? {
        (got, Answer::Returned(value)) if got == id && value.is_empty() => Ok(()),
        _ => Err(ctx.instead(&what)),
    }
}

fn verbs_any_case(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.needs("uppercase")?;
    let id = ctx.next_id;
    ctx.next_id += 1;
    ctx.conn.send(&[&format!("upcall {id} uppercase lower")])?;
    ctx.expect_return(id, "LOWER", "`upcall` is UPCALL in any case")?;
    if ctx.last.starts_with("RETURN ") {
        Ok(())
    } else {
        Err(format!(
            "the verb RETURN in upper case; instead `{}`",
            ctx.last
        ))
    }
}

fn long_argument(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.needs("uppercase")?;
    let id = ctx.next_id;
    // The whole line, newline included, is exactly the limit.
    let head = format!("UPCALL {id} uppercase ");
    let argument = "abcdefghij"
        .repeat(MAX_LINE)
        .chars()
        .take(MAX_LINE - head.len() - 1)
        .collect::<String>();
    let id = ctx.upcall("uppercase", &argument)?;
    ctx.expect_return(
        id,
        &argument.to_uppercase(),
        "an upcall line of 4096 bytes is valid",
    )
}

fn utf8(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.needs("uppercase")?;
    let id = ctx.upcall("uppercase", "café straße ☀ selamat pagi\tñ")?;
    ctx.expect_return(
        id,
        "CAFÉ STRASSE ☀ SELAMAT PAGI\tÑ",
        "UTF-8 text, tab included, is text",
    )
}

fn server_err(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.needs("uppercase")?;
    ctx.conn
        .send(&["ERR unknown verb (expected REGISTER, MSG, RETURN, FAIL or BYE)"])?;
    let id = ctx.upcall("uppercase", "after err")?;
    ctx.expect_return(
        id,
        "AFTER ERR",
        "nothing in answer to ERR, and the client still answers",
    )
}

fn odd_lines(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.needs("uppercase")?;
    ctx.conn.send(&[
        "HELLO there",
        "REGISTERED nothing_asked",
        "UPCALL x uppercase bad id",
    ])?;
    let id = ctx.upcall("uppercase", "still here")?;
    ctx.expect_return(
        id,
        "STILL HERE",
        "lines that are no use to the client are ignored",
    )
}

fn empty_lines(ctx: &mut ClientCtx) -> Result<(), String> {
    ctx.needs("uppercase")?;
    ctx.conn.send_bytes(b"\n\r\n\n")?;
    let id = ctx.upcall("uppercase", "after empty lines")?;
    ctx.expect_return(id, "AFTER EMPTY LINES", "empty lines get no answer")
}

fn server_bye(ctx: &mut ClientCtx) -> Result<(), String> {
    // A client that has closed already (a failure an earlier case reported) has closed.
    let _ = ctx.conn.send(&["BYE"]);
    ctx.conn.shut_write();
    let deadline = after(ctx.wait);
    loop {
        match ctx.conn.read_line(deadline) {
            // BYE back is polite; an answer to an upcall sent before the BYE may still come.
            Got::Line(line)
                if matches!(
                    parse(&line),
                    Ok(Message::Bye | Message::Return { .. } | Message::Fail { .. })
                ) => {}
            Got::Line(line) => {
                return Err(format!(
                    "nothing but BYE after the server's BYE; instead `{line}`"
                ))
            }
            Got::Closed => return Ok(()),
            Got::Silent => {
                return Err(format!(
                    "the client to close the connection once the server said BYE and closed, \
                     within {:?}",
                    ctx.wait
                ))
            }
        }
    }
}
