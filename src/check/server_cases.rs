//! What a server must do (rules 1-8 of `src/upcall-1.md`), one case per rule, each on
//! connections of its own. A case reads like a conversation with `nc`: send a line, say what
//! should come back. (The timeouts and rates are in `timing_cases.rs`, the connection a case
//! talks on in `server_ctx.rs`, the runner in `server_run.rs`.)

use super::case::{after, Case};
use super::options::Options;
use super::report::Report;
use super::rules::RULES;
use super::server_ctx::ServerCtx;
use super::server_run;
use super::timing_cases;
use crate::protocol::{relayed, Message};

/// Runs the selected server cases against the server at `address`, `options.jobs` at a time.
pub fn run(address: &str, options: &Options) -> Result<Report, String> {
    server_run::play(address, options, cases())
}

/// Every server case, in the order of the rules.
pub fn cases() -> Vec<Case<ServerCtx>> {
    let mut all = vec![
        Case {
            rule: "1.1",
            title: "a CR right before the LF is dropped",
            run: cr_dropped,
        },
        Case {
            rule: "1.2",
            title: "empty lines are ignored, never answered",
            run: empty_lines,
        },
        Case {
            rule: "1.3",
            title: "verbs are read in any case",
            run: verbs_any_case,
        },
        Case {
            rule: "1.4",
            title: "a line over 4096 bytes gets ERR and is skipped",
            run: long_line,
        },
        Case {
            rule: "1.6",
            title: "bad bytes, control and invisible characters get ERR",
            run: bad_text,
        },
        Case {
            rule: "2.1",
            title: "the first line is WELCOME <client-id> upcall/1",
            run: welcome_first,
        },
        Case {
            rule: "2.2",
            title: "two connections get two client ids",
            run: distinct_ids,
        },
        Case {
            rule: "2.3",
            title: "lines sent before WELCOME are handled in order",
            run: before_welcome,
        },
        Case {
            rule: "3.1",
            title: "REGISTER is answered REGISTERED",
            run: register,
        },
        Case {
            rule: "3.2",
            title: "a bad callback name gets ERR",
            run: bad_callback_name,
        },
        Case {
            rule: "3.3",
            title: "registering again is answered again",
            run: register_again,
        },
        Case {
            rule: "3.4",
            title: "the 65th callback gets ERR",
            run: too_many_callbacks,
        },
        Case {
            rule: "4.1",
            title: "MSG upcalls on_event on its sender",
            run: msg_upcalls_sender,
        },
        Case {
            rule: "4.2",
            title: "MSG upcalls on_event on the other clients",
            run: msg_relayed,
        },
        Case {
            rule: "4.3",
            title: "MSG without on_event gets ERR and no upcall",
            run: msg_without_on_event,
        },
        Case {
            rule: "5.1",
            title: "upcall ids count 1, 2, 3 on a connection",
            run: ids_count_up,
        },
        Case {
            rule: "6.1",
            title: "an accepted RETURN gets no reply",
            run: return_no_reply,
        },
        Case {
            rule: "6.2",
            title: "RETURN without a value, FAIL without a reason",
            run: empty_answers,
        },
        Case {
            rule: "6.3",
            title: "an id not pending gets ERR",
            run: unknown_id,
        },
        Case {
            rule: "6.4",
            title: "a malformed id gets ERR",
            run: malformed_id,
        },
        Case {
            rule: "7.1",
            title: "a refused line gets one ERR, the connection stays",
            run: refused_lines,
        },
        Case {
            rule: "7.2",
            title: "pipelined lines are answered in order",
            run: answered_in_order,
        },
        Case {
            rule: "8.1",
            title: "BYE is answered BYE, then the connection closes",
            run: bye,
        },
    ];
    all.extend(timing_cases::cases());
    all.sort_by_key(|case| RULES.iter().position(|rule| rule.number == case.rule));
    all
}

fn cr_dropped(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["on_event"])?;
    peer.conn.send_bytes(b"MSG crlf\r\n")?;
    let id = peer.expect_processing("crlf")?;
    peer.send(&[&format!("RETURN {id} ok")])
}

fn empty_lines(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open()?;
    peer.conn.send_bytes(b"\n\r\n\n")?;
    peer.ping("the empty lines before it get no answer")
}

fn verbs_any_case(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open()?;
    peer.send(&["register on_event"])?;
    peer.expect_registered("on_event")?;
    peer.send(&["Msg mixed case"])?;
    let id = peer.expect_processing("mixed case")?;
    peer.send(&[&format!("return {id} ok")])?;
    peer.ping("`return` in lower case is a RETURN, and an accepted one gets no reply")
}

fn long_line(ctx: &mut ServerCtx) -> Result<(), String> {
    // Registered, so that a long MSG taken in would show as an UPCALL, not pass as an ERR.
    let mut peer = ctx.open_registered(&["on_event"])?;
    let line = format!("MSG {}", "x".repeat(5000));
    peer.send(&[&line])?;
    peer.expect_err("the line is 5005 bytes, over the limit of 4096")?;
    peer.ping("the rest of the long line was skipped, not read as more lines")
}

fn bad_text(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["on_event"])?;
    peer.conn.send_bytes(b"MSG caf\xff\n")?;
    peer.expect_err("byte 0xff is not UTF-8")?;
    peer.conn.send_bytes(b"MSG a\x01b\n")?;
    peer.expect_err("the line has a control character (0x01)")?;
    peer.send(&["MSG gnp.exe\u{202E}"])?;
    peer.expect_err("the line has an invisible character that reorders text (U+202E)")?;
    peer.ping("a refused MSG causes no UPCALL, and the connection stays")
}

fn welcome_first(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.connect()?;
    peer.welcome()?
}

fn distinct_ids(ctx: &mut ServerCtx) -> Result<(), String> {
    let first = ctx.open()?;
    let second = ctx.open()?;
    match (&first.client_id, &second.client_id) {
        (Some(a), Some(b)) if a != b => Ok(()),
        (Some(a), Some(_)) => Err(format!(
            "a client id other than {a} for the second connection"
        )),
        _ => Err("WELCOME <client-id> upcall/1 on both connections".into()),
    }
}

fn before_welcome(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.connect()?;
    peer.send(&["REGISTER on_event", "MSG early"])?;
    // What the first line says is rule 2.1's business; here it only has to come first.
    let _ = peer.welcome()?;
    peer.expect_registered("on_event")?;
    let id = peer.expect_processing("early")?;
    peer.send(&[&format!("RETURN {id} ok")])
}

fn register(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open()?;
    let longest = "a".repeat(32);
    peer.send(&["REGISTER uppercase", &format!("REGISTER {longest}")])?;
    peer.expect_registered("uppercase")?;
    peer.expect_registered(&longest)
}

fn bad_callback_name(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open()?;
    peer.send(&["REGISTER On_Event"])?;
    peer.expect_err("a callback name is [a-z][a-z0-9_]*: no capitals")?;
    peer.send(&[&format!("REGISTER {}", "a".repeat(33))])?;
    peer.expect_err("a callback name has at most 32 characters")?;
    peer.send(&["REGISTER"])?;
    peer.expect_err("REGISTER needs a name")?;
    peer.ping("the connection stays after a refused REGISTER")
}

fn register_again(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open()?;
    peer.send(&["REGISTER on_event", "REGISTER on_event"])?;
    peer.expect_registered("on_event")?;
    peer.expect_registered("on_event")
}

fn too_many_callbacks(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open()?;
    let lines: Vec<String> = (0..64).map(|n| format!("REGISTER cb_{n}")).collect();
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    peer.send(&lines)?;
    for n in 0..64 {
        peer.expect_registered(&format!("cb_{n}"))?;
    }
    peer.send(&["REGISTER cb_64"])?;
    peer.expect_err("a client may register at most 64 callbacks")?;
    peer.send(&["REGISTER cb_0"])?;
    peer.expect_registered("cb_0")
}

fn msg_upcalls_sender(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["on_event"])?;
    // The text is everything after `MSG `: its spaces are kept, inside and at the ends.
    peer.send(&["MSG  hello  upcall "])?;
    let id = peer.expect_processing(" hello  upcall ")?;
    peer.send(&[&format!("RETURN {id} ok")])
}

fn msg_relayed(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut sender = ctx.open_registered(&["on_event"])?;
    let mut other = ctx.open_registered(&["on_event"])?;
    other.keep_relays = true;
    let sender_id = sender
        .client_id
        .clone()
        .ok_or("WELCOME <client-id> upcall/1 on A")?;
    let text = format!("from {sender_id}, for everyone");
    sender.send(&[&format!("MSG {text}")])?;
    let id = sender.expect_processing(&text)?;
    sender.send(&[&format!("RETURN {id} ok")])?;
    let argument = relayed(&sender_id, &text);
    let what = format!("on B: UPCALL <id> on_event {argument}");
    loop {
        match other.next(&what)? {
            Message::Upcall {
                id,
                callback,
                argument: got,
            } if callback == "on_event" => {
                other.send(&[&format!("RETURN {id} ok")])?;
                if got == argument {
                    return Ok(());
                }
                // Another client's message on a shared server: not ours, wait on.
                if !got.contains(" says ") || got.contains(&sender_id) {
                    return Err(other.instead(&what));
                }
            }
            _ => return Err(other.instead(&what)),
        }
    }
}

fn msg_without_on_event(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["uppercase"])?;
    peer.send(&["MSG nobody to call back"])?;
    peer.expect_err("the client did not register on_event")?;
    peer.ping("no UPCALL to a client that did not register on_event")
}

fn ids_count_up(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["on_event"])?;
    peer.send(&["MSG one", "MSG two", "MSG three"])?;
    for text in ["one", "two", "three"] {
        let id = peer.expect_processing(text)?;
        peer.send(&[&format!("RETURN {id} ok")])?;
    }
    let counted: Vec<u64> = (1..=peer.upcall_ids.len() as u64).collect();
    if peer.upcall_ids == counted {
        Ok(())
    } else {
        Err(format!(
            "upcall ids {counted:?} on this new connection (1, then one more each time); got {:?}",
            peer.upcall_ids
        ))
    }
}

fn return_no_reply(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["on_event"])?;
    peer.send(&["MSG answer me"])?;
    let id = peer.expect_processing("answer me")?;
    peer.send(&[&format!("RETURN {id} HELLO WORLD")])?;
    peer.ping("an accepted RETURN gets no reply")
}

fn empty_answers(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["on_event"])?;
    peer.send(&["MSG first", "MSG second"])?;
    let first = peer.expect_processing("first")?;
    let second = peer.expect_processing("second")?;
    peer.send(&[&format!("RETURN {first}"), &format!("FAIL {second}")])?;
    peer.ping("RETURN <id> with no value and FAIL <id> with no reason are valid answers")
}

fn unknown_id(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open_registered(&["on_event"])?;
    peer.send(&["RETURN 999999 ok"])?;
    peer.expect_err("no upcall 999999 was sent on this connection")?;
    peer.send(&["MSG once"])?;
    let id = peer.expect_processing("once")?;
    peer.send(&[&format!("RETURN {id} ok"), &format!("FAIL {id} twice")])?;
    peer.expect_err(&format!("upcall {id} was already answered"))?;
    peer.ping("the connection stays")
}

fn malformed_id(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open()?;
    for (line, why) in [
        ("RETURN x ok", "`x` is not an upcall id"),
        ("FAIL +1 no", "an id is digits only: no `+`"),
        ("RETURN", "RETURN needs an id"),
    ] {
        peer.send(&[line])?;
        peer.expect_err(why)?;
    }
    peer.ping("the connection stays")
}

fn refused_lines(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open()?;
    for (line, why) in [
        ("HELLO there", "HELLO is not a verb of upcall/1"),
        (
            "UPCALL 1 on_event hi",
            "UPCALL is the server's verb, not a client's",
        ),
        ("WELCOME client-1 upcall/1", "WELCOME is the server's verb"),
        ("BYE now", "BYE takes no field"),
    ] {
        peer.send(&[line])?;
        peer.expect_err(why)?;
    }
    peer.ping("exactly one ERR for each refused line, and the connection stays")
}

fn answered_in_order(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open()?;
    peer.send(&[
        "REGISTER on_event",
        "HELLO",
        "REGISTER Bad",
        "MSG in order",
        "RETURN 77 ok",
        "REGISTER last",
    ])?;
    peer.expect_registered("on_event")?;
    peer.expect_err("HELLO (the 2nd line) is not a verb")?;
    peer.expect_err("`Bad` (the 3rd line) is not a callback name")?;
    let id = peer.expect_processing("in order")?;
    peer.expect_err("no upcall 77 is pending (the 5th line)")?;
    peer.expect_registered("last")?;
    peer.send(&[&format!("RETURN {id} ok")])
}

fn bye(ctx: &mut ServerCtx) -> Result<(), String> {
    let mut peer = ctx.open()?;
    peer.send(&["BYE"])?;
    match peer.next("BYE in answer to BYE")? {
        Message::Bye => {}
        _ => return Err(peer.instead("BYE in answer to BYE")),
    }
    let wait = peer.wait;
    match peer.until_closed(after(wait)) {
        Ok(lines) if lines.is_empty() => Ok(()),
        Ok(_) => Err("nothing after BYE but the close".into()),
        Err(_) => Err(format!(
            "the server to close the connection after its BYE, within {wait:?}"
        )),
    }
}
