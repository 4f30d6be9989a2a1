//! The checker, proved both ways: the lab's programs and the Python examples pass every case,
//! and each deliberately broken program (the Python examples with one fault put in) fails
//! exactly the cases for its fault, so that no case passes by accident.

#[path = "checkcall/programs.rs"]
mod programs;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::thread;

use programs::*;
use upcall::check::{client_cases, rules, server_cases};

fn failed(report: &upcall::check::Report) -> BTreeSet<String> {
    report.failed().into_iter().collect()
}

#[test]
fn servercall_passes_every_case() {
    let server = servercall();
    let report = check_server(&server.address);
    assert!(report.all_passed(), "{}", report.text());
    assert_eq!(report.outcomes.len(), server_cases::cases().len());
}

#[test]
fn clientcall_passes_every_case() {
    let report = check_client(clientcall);
    assert!(report.all_passed(), "{}", report.text());
    assert_eq!(report.outcomes.len(), client_cases::cases().len());
}

#[test]
fn the_python_server_passes_every_case() {
    let Some(python) = python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/servercall.py");
    let server = python_server(python, &script);
    let report = check_server(&server.address);
    assert!(report.all_passed(), "{}", report.text());
}

#[test]
fn the_python_client_passes_every_case() {
    let Some(python) = python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/clientcall.py");
    let report = check_client(python_client(python, script));
    assert!(report.all_passed(), "{}", report.text());
}

/// One fault: a line of the example replaced, and the cases that must fail because of it.
struct Fault {
    what: &'static str,
    old: &'static str,
    new: &'static str,
    fails: &'static [&'static str],
}

const SERVER_FAULTS: &[Fault] = &[
    Fault { what: "keeps the CR", old: "if raw.endswith(b\"\\r\"):  # rule 1.1", new: "if False:", fails: &["server 1.1", "server 1.2"] },
    Fault { what: "answers empty lines", old: "if not raw:  # rule 1.2: ignored (it still counts against the rate)\n        return lines.take() or refuse(\"too many lines: this one was ignored\")", new: "if not raw:\n        return refuse(\"empty line\")", fails: &["server 1.2"] },
    Fault { what: "verbs in upper case only", old: "verb = verb.upper()  # rule 1.3", new: "verb = verb", fails: &["server 1.3"] },
    Fault { what: "drops long lines without a word", old: "keep_going = refuse(f\"line too long (the limit is {MAX_LINE} bytes)\")", new: "keep_going = True", fails: &["server 1.4"] },
    Fault { what: "takes control and invisible characters", old: "problem = bad_text(line)", new: "problem = None", fails: &["server 1.6"] },
    Fault { what: "says upcall/2", old: "client.send(f\"WELCOME {name} upcall/1\")", new: "client.send(f\"WELCOME {name} upcall/2\")", fails: &["server 2.1", "server 2.2", "server 4.2"] },
    Fault { what: "calls everyone client-1", old: "client.send(f\"WELCOME {name} upcall/1\")", new: "client.send(\"WELCOME client-1 upcall/1\")", fails: &["server 2.2", "server 4.2"] },
    Fault { what: "loses what came before WELCOME", old: "    client.send(f\"WELCOME {name} upcall/1\")  # rule 2.1: first, without waiting", new: "    time.sleep(0.3)\n    sock.setblocking(False)\n    try:\n        sock.recv(65536)\n    except OSError:\n        pass\n    sock.setblocking(True)\n    client.send(f\"WELCOME {name} upcall/1\")", fails: &["server 2.3"] },
    Fault { what: "names of 31 characters at most", old: "re.compile(r\"[a-z][a-z0-9_]{0,31}\")", new: "re.compile(r\"[a-z][a-z0-9_]{0,30}\")", fails: &["server 3.1"] },
    Fault { what: "takes any name", old: "re.compile(r\"[a-z][a-z0-9_]{0,31}\")", new: "re.compile(r\"\\S+\")", fails: &["server 3.2", "server 7.2"] },
    Fault { what: "refuses a second REGISTER", old: "client.send(f\"REGISTERED {rest}\")  # rule 3.3", new: "return refuse(\"already registered\")", fails: &["server 3.3", "server 3.4"] },
    Fault { what: "no limit on callbacks", old: "if len(client.callbacks) >= MAX_CALLBACKS:", new: "if False:", fails: &["server 3.4"] },
    Fault { what: "trims the message", old: "f\"Upcall event: Processing {rest}\"", new: "f\"Upcall event: Processing {rest.strip()}\"", fails: &["server 4.1"] },
    Fault { what: "passes nothing on", old: "for other in others:  # rule 4.2", new: "for other in []:", fails: &["server 4.2"] },
    Fault { what: "says nothing to a client without on_event", old: "refuse(\"no on_event registered: send REGISTER on_event to get upcalls\")  # rule 4.3", new: "pass", fails: &["server 4.3"] },
    Fault { what: "counts ids from 0", old: "self.last_id = 0", new: "self.last_id = -1", fails: &["server 5.1"] },
    Fault { what: "acknowledges RETURN", old: "return True  # rule 6.1: no reply", new: "client.send(\"OK\")\n        return True", fails: &["server 1.3", "server 6.1", "server 6.2", "server 6.3"] },
    Fault { what: "wants a value", old: "        upcall_id, _, value = rest.partition(\" \")\n", new: "        upcall_id, _, value = rest.partition(\" \")\n        if not value:\n            return refuse(\"missing value\")\n", fails: &["server 6.2"] },
    Fault { what: "takes answers to upcalls never sent", old: "if deadline is None or deadline < time.monotonic():", new: "if deadline is not None and deadline < time.monotonic():", fails: &["server 6.3", "server 7.2"] },
    Fault { what: "ignores malformed ids", old: "return lines.take() and refuse(\"bad upcall id (expected a decimal number)\")", new: "return True", fails: &["server 6.4"] },
    Fault { what: "never gives up on an upcall", old: "time.monotonic() + options.upcall_timeout", new: "time.monotonic() + 3600", fails: &["server 6.5"] },
    Fault { what: "takes the server's verbs from a client", old: "return refuse(f\"{verb} is sent by the server, not by a client\")", new: "return True", fails: &["server 7.1"] },
    Fault { what: "no BYE back", old: "client.send(\"BYE\")  # rule 8.1", new: "pass", fails: &["server 8.1"] },
    Fault { what: "no line timeout", old: "if not client.callbacks and now - connected >= options.line_timeout:", new: "if False:", fails: &["server 9.1", "server 9.2"] },
    Fault { what: "a line, any line, is enough to stay", old: "if not client.callbacks and now - connected >= options.line_timeout:", new: "if not said_a_line and now - connected >= options.line_timeout:", fails: &["server 9.2"] },
    Fault { what: "lets a line trickle for ever", old: "if partial_since is not None and now - partial_since", new: "if False and now - partial_since", fails: &["server 9.3"] },
    Fault { what: "drops quiet clients", old: "if not client.callbacks and now - connected >= options.line_timeout:", new: "if now - connected >= options.line_timeout:", fails: &["server 9.4"] },
    Fault { what: "no message rate", old: "if not lines.take():  # rule 9.5", new: "if False:", fails: &["server 9.5"] },
    Fault { what: "refuses for ever without closing", old: "if not refusals.take():  # rule 9.6", new: "if False:", fails: &["server 9.6"] },
];

const CLIENT_FAULTS: &[Fault] = &[
    Fault { what: "keeps the CR", old: "if line.endswith(b\"\\r\"):  # rule 1.1", new: "if False:", fails: &["client 1.1"] },
    Fault { what: "an empty line ends the reader", old: "if not line:  # rule 1.2\n            continue", new: "if not line:\n            break", fails: &["client 1.2"] },
    Fault { what: "verbs in upper case only", old: "verb = verb.upper()  # rule 1.3", new: "verb = verb", fails: &["client 1.3"] },
    Fault { what: "lines of 1024 bytes at most", old: "MAX_LINE = 4096", new: "MAX_LINE = 1024", fails: &["client 1.5"] },
    Fault { what: "reads Latin-1", old: "yield line.decode(\"utf-8\")", new: "yield line.decode(\"latin-1\")", fails: &["client 1.7"] },
    Fault { what: "a REGISTER with a colon", old: "send(sock, f\"REGISTER {name}\")", new: "send(sock, f\"REGISTER: {name}\")", fails: &["client 1.1", "client 1.2", "client 1.3", "client 1.5", "client 1.7", "client 2.4", "client 5.2", "client 5.3", "client 5.4", "client 5.6", "client 7.3", "client 7.4"] },
    Fault { what: "wants an argument", old: "if not upcall_id.isdigit() or not callback:", new: "if not upcall_id.isdigit() or not argument:", fails: &["client 1.1", "client 5.2"] },
    Fault { what: "answers twice", old: "    send(sock, f\"RETURN {upcall_id} {value}\" if value else f\"RETURN {upcall_id}\")  # rule 5.3", new: "    send(sock, f\"RETURN {upcall_id} {value}\" if value else f\"RETURN {upcall_id}\")\n    send(sock, f\"RETURN {upcall_id} {value}\")", fails: &["client 5.3", "client 5.4", "client 5.6"] },
    Fault { what: "says nothing to an unknown callback", old: "send(sock, f\"FAIL {upcall_id} unknown callback {callback}\")  # rule 5.5", new: "pass", fails: &["client 5.5"] },
    Fault { what: "on_event fails", old: "    return \"ok\"", new: "    raise RuntimeError(\"not today\")", fails: &["client 5.6"] },
    Fault { what: "answers ERR", old: "print(f\"\\nServer error: {rest}\")", new: "send(sock, \"ERR what error?\")", fails: &["client 7.3"] },
    Fault { what: "answers lines it cannot use", old: "print(f\"\\nIgnoring a line from the server: {line!r}\")  # rule 7.4", new: "send(sock, \"ERR what?\")", fails: &["client 7.4"] },
    Fault { what: "stays after the server closed", old: "    sock.close()\n    os._exit(0)", new: "    threading.Event().wait(60)", fails: &["client 8.2"] },
];

/// Runs `check` for every fault, a few at a time, and says which ones failed other cases.
fn prove(faults: &'static [Fault], check: impl Fn(&'static Fault) -> BTreeSet<String> + Sync) {
    let wrong = Mutex::new(Vec::new());
    let next = Mutex::new(faults.iter());
    thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| loop {
                // Lock: guards the iterator over faults; held to take the next one.
                let Some(fault) = next.lock().unwrap().next() else {
                    break;
                };
                let got = check(fault);
                let want: BTreeSet<String> = fault.fails.iter().map(|s| s.to_string()).collect();
                if got != want {
                    // Lock: guards the list of mismatches; held to add one.
                    wrong.lock().unwrap().push(format!(
                        "{}: expected to fail {want:?}, failed {got:?}",
                        fault.what
                    ));
                }
            });
        }
    });
    let wrong = wrong.into_inner().unwrap();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn each_broken_server_fails_exactly_the_cases_for_its_fault() {
    let Some(python) = python() else { return };
    let source = example("servercall.py");
    prove(SERVER_FAULTS, |fault| {
        let script = mutant("servercall.py", &source, fault.old, fault.new);
        let server = python_server(python, &script);
        failed(&check_server(&server.address))
    });
}

#[test]
fn each_broken_client_fails_exactly_the_cases_for_its_fault() {
    let Some(python) = python() else { return };
    let source = example("clientcall.py");
    prove(CLIENT_FAULTS, |fault| {
        let script = mutant("clientcall.py", &source, fault.old, fault.new);
        failed(&check_client(python_client(python, script)))
    });
}

/// The rule numbers a spec file gives, as `**4.2**`.
fn numbered(path: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap();
    text.split("**")
        .skip(1)
        .step_by(2)
        .filter(|part| {
            part.split_once('.').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.chars().chain(b.chars()).all(|c| c.is_ascii_digit())
            })
        })
        .map(String::from)
        .collect()
}

#[test]
fn every_rule_is_in_both_specs_and_has_a_case_and_a_test_that_breaks_it() {
    let table: Vec<String> = rules::RULES
        .iter()
        .map(|rule| rule.number.to_string())
        .collect();
    assert_eq!(
        numbered("src/upcall-1.md"),
        table,
        "src/upcall-1.md numbers other rules"
    );
    assert_eq!(
        numbered("src/upcall-1.id.md"),
        table,
        "src/upcall-1.id.md numbers other rules"
    );
    let server: BTreeSet<&str> = server_cases::cases().iter().map(|case| case.rule).collect();
    let client: BTreeSet<&str> = client_cases::cases().iter().map(|case| case.rule).collect();
    let broken: BTreeSet<&str> = SERVER_FAULTS
        .iter()
        .chain(CLIENT_FAULTS)
        .flat_map(|f| f.fails.iter().copied())
        .collect();
    for rule in rules::RULES {
        let sides: &[&str] = match rule.who {
            rules::Who::Server => &["server"],
            rules::Who::Client => &["client"],
            rules::Who::Both => &["server", "client"],
        };
        for side in sides {
            let cases = if *side == "server" { &server } else { &client };
            assert!(
                cases.contains(rule.number),
                "rule {} has no {side} case",
                rule.number
            );
            let name = format!("{side} {}", rule.number);
            assert!(
                broken.contains(name.as_str()),
                "no broken program in the tests fails {name}"
            );
        }
    }
    // And no case checks a rule the spec does not have, or the other side's.
    for (side, cases) in [(rules::Who::Server, &server), (rules::Who::Client, &client)] {
        for number in cases.iter() {
            let rule =
                rules::find(number).unwrap_or_else(|| panic!("case for unknown rule {number}"));
            assert!(
                rule.who == side || rule.who == rules::Who::Both,
                "rule {number} is not for that side"
            );
        }
    }
}

#[test]
fn checkcall_picks_rules_writes_junit_and_says_so_in_its_exit_status() {
    let server = servercall();
    let junit = std::env::temp_dir().join(format!("upcall-checkcall-{}.xml", std::process::id()));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_checkcall"))
            .args(args)
            .output()
            .expect("run checkcall")
    };
    let passed = run(&[
        "server",
        &server.address,
        "4.2",
        "3",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&passed.stdout);
    assert_eq!(passed.status.code(), Some(0), "{text}");
    assert!(
        text.contains("PASS  server 4.2") && text.contains("PASS  server 3.4"),
        "{text}"
    );
    assert!(!text.contains("server 4.1"), "{text}");
    assert!(text.contains("5 passed, 0 failed, of 5 cases."), "{text}");
    let xml = std::fs::read_to_string(&junit).expect("the JUnit report");
    let _ = std::fs::remove_file(&junit);
    assert!(
        xml.contains("tests=\"5\" failures=\"0\"") && xml.contains("name=\"4.2 "),
        "{xml}"
    );

    // A server that is not upcall/1 fails, with the lines and what was expected.
    let python = python();
    if let Some(python) = python {
        let fault = &SERVER_FAULTS[12];
        let script = mutant(
            "servercall.py",
            &example("servercall.py"),
            fault.old,
            fault.new,
        );
        let broken = python_server(python, &script);
        let failed = run(&["server", &broken.address, "4.1"]);
        let text = String::from_utf8_lossy(&failed.stdout);
        assert_eq!(failed.status.code(), Some(1), "{text}");
        assert!(
            text.contains("FAIL  server 4.1") && text.contains("sent:     MSG  hello  upcall "),
            "{text}"
        );
        assert!(
            text.contains(
                "expected: UPCALL <id> on_event Upcall event: Processing  hello  upcall "
            ),
            "{text}"
        );
    }
    let wrong = run(&["server", &server.address, "12.7"]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not a rule number"));
}

/// The README's `checkcall-section-4` sample (both guides carry the same) is what checkcall
/// prints against the Python server, ports aside.
#[test]
fn the_readme_sample_of_checkcall_is_real() {
    let Some(python) = python() else { return };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/servercall.py");
    let server = python_server(python, &script);
    let output = Command::new(env!("CARGO_BIN_EXE_checkcall"))
        .args(["server", &server.address, "4"])
        .output()
        .expect("run checkcall");
    let printed =
        String::from_utf8_lossy(&output.stdout).replace(&server.address, "127.0.0.1:4141");
    for readme in ["README.md", "README.id.md"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(readme)).unwrap();
        let marker = "<!-- sample: checkcall-section-4 -->\n```text\n";
        let start = text
            .find(marker)
            .unwrap_or_else(|| panic!("{readme} has no checkcall sample"))
            + marker.len();
        let end = start + text[start..].find("```").unwrap();
        assert_eq!(printed, text[start..end], "{readme}");
    }
}
