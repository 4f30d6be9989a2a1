//! The answer keys of the guides' exercises are true: each exercise runs here as the guide says,
//! and what it prints is the key's output, in both guides (README.md and README.id.md carry the
//! same blocks, marked `<!-- sample: exercise-N... -->`). What a key says in words and a program
//! can see is checked too; each such check first finds the key's own words for it (its code, which
//! both guides share), so that a key cannot change what it claims without this file noticing.
//!
//! `servercall` and `clientcall` are the real programs. A student's `nc` is a plain TCP client
//! here: it sends the same bytes, in the same writes, with the same pauses, and keeps what comes
//! back as `nc` prints it. Exercise 5's key is checked in `tests/readme.rs`, exercise 6's (the
//! reference capture's frames and times) in `tests/reading_the_capture.rs`.
//!
//! Exercise 1 also counts the TCP segments, as the exercise asks, with tcpdump on `lo` (root, on
//! Linux). Without tcpdump or root that part says so and is left out, except under CI (`CI=true`),
//! where it fails.

mod process;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub mod guide;

use guide::{read, sample, without_ports, GUIDES};
use process::{Program, PATIENCE};

/// Exercise `number` of `guide` with its answer key: from its heading (`### 3. `) to the end of
/// its `<details>`.
fn exercise(guide: &str, number: u32) -> String {
    let text = read(guide);
    let heading = format!("\n### {number}. ");
    let exercise = &text[text
        .find(&heading)
        .unwrap_or_else(|| panic!("{guide} has no exercise {number}"))..];
    let end = exercise.find("</details>").expect("the key ends");
    // A phrase may be broken over two lines: compare words, not line breaks.
    exercise[..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts that exercise `number` or its key says `words`, in both guides (code, or a figure with
/// its unit, which the two guides write alike).
fn key_says(number: u32, words: &str) {
    for guide in GUIDES {
        assert!(
            exercise(guide, number).contains(words),
            "{guide}: exercise {number} no longer says {words:?}: \
             update this test with what it says now"
        );
    }
}

/// Asserts that the sample `name` of both guides is `printed`, but for the port numbers: the
/// guides show 4141, the tests use a port the system picks.
fn samples_are(name: &str, printed: &str) {
    for guide in GUIDES {
        assert_eq!(
            without_ports(printed),
            without_ports(&sample(guide, name)),
            "{guide}: sample {name}"
        );
    }
}

/// A student's `nc 127.0.0.1 PORT`: each `send` is one write, as a line typed (or a `printf`
/// piped) into `nc` is; what the server sends is kept, as `nc` prints it.
struct Nc {
    stream: TcpStream,
    /// Everything received so far, and whether the server has closed its side.
    received: Arc<Mutex<(String, bool)>>,
    /// Where the next `wait_for` starts looking.
    seen: usize,
}

impl Nc {
    fn connect(port: u16) -> Nc {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to servercall");
        let received = Arc::new(Mutex::new((String::new(), false)));
        let mut reader = stream.try_clone().expect("clone the socket");
        let shared = Arc::clone(&received);
        thread::spawn(move || {
            let mut buffer = [0; 4096];
            loop {
                match reader.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => shared
                        .lock()
                        .unwrap()
                        .0
                        .push_str(&String::from_utf8_lossy(&buffer[..n])),
                }
            }
            shared.lock().unwrap().1 = true;
        });
        Nc {
            stream,
            received,
            seen: 0,
        }
    }

    fn send(&mut self, text: &str) {
        self.stream
            .write_all(text.as_bytes())
            .expect("write to servercall");
    }

    /// Waits (boundedly) until what `nc` printed, after what earlier waits matched, holds `text`.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            {
                let received = self.received.lock().unwrap();
                if let Some(at) = received.0[self.seen..].find(text) {
                    self.seen += at + text.len();
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nc got no {text:?} within {PATIENCE:?}; it printed:\n{}",
                self.printed()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (boundedly) until the server has closed the connection.
    fn wait_for_close(&self) {
        let deadline = Instant::now() + PATIENCE;
        while !self.received.lock().unwrap().1 {
            assert!(
                Instant::now() < deadline,
                "the server did not close the connection; nc printed:\n{}",
                self.printed()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn printed(&self) -> String {
        self.received.lock().unwrap().0.clone()
    }

    /// What `nc` does when it ends (Ctrl-C, or `-q 1` a second after its input ended): it closes.
    fn quit(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The lines `printed` holds after the line `after` (exclusive), as many as `block` has.
fn lines_after(printed: &str, after: &str, block: &str) -> String {
    let lines: Vec<&str> = printed.lines().collect();
    let at = lines
        .iter()
        .position(|line| *line == after)
        .unwrap_or_else(|| panic!("no line {after:?} in:\n{printed}"));
    let count = block.lines().count();
    let mut out = lines[at + 1..(at + 1 + count).min(lines.len())].join("\n");
    out.push('\n');
    out
}

/// tcpdump on `lo`, writing the traffic of one port to a file, as the guide's capture command
/// does (`sudo tcpdump -i lo -U -w captures/upcall.pcap tcp port 4141`).
struct Tcpdump {
    child: Child,
    file: PathBuf,
}

impl Tcpdump {
    /// A running capture, or why there is none (no tcpdump, not root). Under CI, none fails.
    fn start(port: u16) -> Option<Tcpdump> {
        // Linux only: a capture on `lo` by tcpdump, as root (the Windows build runs under Wine).
        if cfg!(not(target_os = "linux")) {
            eprintln!("exercises: exercise 1's segments are counted on Linux only (tcpdump on lo)");
            return None;
        }
        match Tcpdump::try_start(port) {
            Ok(tcpdump) => Some(tcpdump),
            Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("{why}, and CI=true: CI must count exercise 1's segments")
            }
            Err(why) => {
                eprintln!("exercises: {why}: exercise 1's segments are not counted in this run");
                None
            }
        }
    }

    fn try_start(port: u16) -> Result<Tcpdump, String> {
        let file = std::env::temp_dir().join(format!(
            "upcall-exercise-1-{}-{port}.pcap",
            std::process::id()
        ));
        // --immediate-mode: each packet is handed over at once, so none is still in the kernel's
        // buffer when the capture is stopped.
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "-U", "--immediate-mode", "-Z", "root", "-w"])
            .arg(&file)
            .args(["tcp", "port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run tcpdump ({error})"))?;
        // tcpdump says "listening on lo" once it captures; anything else is why it cannot.
        let mut stderr = child.stderr.take().expect("piped");
        let (said, heard) = std::sync::mpsc::channel();
        thread::spawn(move || {
            let mut text = Vec::new();
            let mut byte = [0; 1];
            while let Ok(1) = stderr.read(&mut byte) {
                text.push(byte[0]);
                if text.ends_with(b"\n") {
                    let _ = said.send(String::from_utf8_lossy(&text).into_owned());
                    text.clear();
                }
            }
        });
        let tcpdump = Tcpdump { child, file };
        match heard.recv_timeout(PATIENCE) {
            Ok(line) if line.contains("listening on lo") => Ok(tcpdump),
            Ok(line) => Err(format!("tcpdump cannot capture on lo: {}", line.trim())),
            Err(_) => Err("tcpdump did not start capturing on lo".to_string()),
        }
    }

    /// Stops the capture (its packets are all written: `-U`) and decodes it.
    fn stop(mut self, port: u16) -> Vec<String> {
        // Let the last packets (the close) reach the file.
        thread::sleep(Duration::from_millis(500));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let conversation = upcall_capture::decode_file(&self.file, port)
            .unwrap_or_else(|error| panic!("the capture of exercise 1: {error}"));
        let format = upcall_capture::Format {
            time: false,
            frames: true,
        };
        conversation
            .entries
            .iter()
            .map(|entry| upcall_capture::format_entry(entry, format))
            .collect()
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        // Our own child, by its handle; and its file.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// The frame number of the entry `c<connection> C>S <line>` (`#12   c1 C>S MSG haii`).
fn frame_of(entries: &[String], connection: usize, line: &str) -> String {
    let wanted = format!(" c{connection} C>S {line}");
    let entry = entries
        .iter()
        .find(|entry| entry.ends_with(&wanted))
        .unwrap_or_else(|| panic!("no {wanted:?} in the capture:\n{}", entries.join("\n")));
    entry.split(' ').next().unwrap().to_string()
}

/// Exercise 1: `REGISTER on_event\nMSG haii\nMSG halo\n` in one write is two messages and two
/// upcalls, in one segment of 36 bytes; `MSG ha`, three seconds, `ii\n` is one message, logged
/// when its newline arrives in a second segment. `nc -q 1` then closes, and the server gives up
/// the upcalls nobody answered.
#[test]
fn exercise_1_answer_key_is_what_servercall_logs_for_one_write_and_for_two() {
    let (mut server, port) = Program::servercall(&[]);
    let capture = Tcpdump::start(port);

    // printf 'REGISTER on_event\nMSG haii\nMSG halo\n' | nc -q 1 127.0.0.1 4141
    let one_write = "REGISTER on_event\nMSG haii\nMSG halo\n";
    assert_eq!(one_write.len(), 36);
    key_says(1, "36 byte");
    let mut nc = Nc::connect(port);
    nc.send(one_write);
    nc.wait_for("UPCALL 2 on_event Upcall event: Processing halo\n");
    thread::sleep(Duration::from_secs(1));
    nc.quit();
    server.wait_for("client-1 disconnected\n");
    let log = server.text();
    samples_are(
        "exercise-1",
        &lines_after(
            &log,
            "client-1 registered on_event",
            &sample(GUIDES[0], "exercise-1"),
        ),
    );
    // The upcalls nobody answered, given up when nc left.
    key_says(1, "`client-1 disconnected before answering`");
    for id in [1, 2] {
        assert!(
            log.contains(&format!(
                "Upcall {id} (on_event) given up: client-1 disconnected before answering\n"
            )),
            "{log}"
        );
    }

    // (printf 'REGISTER on_event\nMSG ha'; sleep 3; printf 'ii\n') | nc -q 1 127.0.0.1 4141
    let mut nc = Nc::connect(port);
    nc.send("REGISTER on_event\nMSG ha");
    nc.wait_for("REGISTERED on_event\n");
    let registered = Instant::now();
    thread::sleep(Duration::from_secs(3));
    assert!(
        !server.text().contains("Received from client-2"),
        "a message was logged before its newline came:\n{}",
        server.text()
    );
    nc.send("ii\n");
    server.wait_for("Received from client-2: haii\n");
    let logged_after = registered.elapsed();
    key_says(1, "`haii`");
    assert!(
        logged_after >= Duration::from_secs(3),
        "logged {logged_after:?} after REGISTERED"
    );
    thread::sleep(Duration::from_secs(1));
    nc.quit();
    server.wait_for("client-2 disconnected\n");
    assert_eq!(
        server.text().matches("Received from client-2").count(),
        1,
        "{}",
        server.text()
    );

    // How many segments carried the bytes: one for the first command, two for the second.
    if let Some(capture) = capture {
        let entries = capture.stop(port);
        let first = frame_of(&entries, 1, "REGISTER on_event");
        for line in ["MSG haii", "MSG halo"] {
            assert_eq!(frame_of(&entries, 1, line), first, "{line}: {entries:#?}");
        }
        assert_ne!(
            frame_of(&entries, 2, "REGISTER on_event"),
            frame_of(&entries, 2, "MSG haii"),
            "MSG haii was not completed by a later segment: {entries:#?}"
        );
    }
    server.type_line("quit");
    drop(server.finish());
}

/// Exercise 2: `clientcall --no-reader` reads the socket only after Enter, so it answers each
/// upcall one step late; the console's `call` and the upcall for `halo` are given up, and the
/// late `RETURN`s are answered with `ERR`s the client sees one Enter later.
#[test]
fn exercise_2_answer_key_is_what_a_client_without_its_reader_thread_does() {
    let (mut server, port) = Program::servercall(&["--upcall-timeout", "2"]);
    let mut client = Program::clientcall(port, &["--no-reader"]);
    server.wait_for("client-1 registered hostname\n");
    // While the client sits at `Enter message: `.
    server.type_line("call client-1 uppercase hello");
    server.wait_for("client-1 did not answer within 2 s\n");
    client.type_line("haii");
    client.wait_for("Processing haii\n");
    client.type_line("halo");
    client.wait_for("Server error: unknown upcall id 1");
    // "wait three seconds": past the 2 s in which the upcall for halo had to be answered.
    server.wait_for("Upcall 3 (on_event) given up: client-1 did not answer within 2 s\n");
    thread::sleep(Duration::from_secs(1));
    client.type_line("hoho");
    client.wait_for("Processing hoho\n");
    server.wait_for("client-1 returned for upcall 4: ok\n");
    client.type_line("bye");
    let (status, printed) = client.finish();
    assert!(status.success(), "{status}: {printed}");
    samples_are("exercise-2-client", &printed);
    key_says(2, "`Server error: unknown upcall id 1`");
    let server_block = sample(GUIDES[0], "exercise-2-server");
    samples_are(
        "exercise-2-server",
        &lines_after(
            &server.text(),
            "client-1 registered hostname",
            &server_block,
        ),
    );
    server.type_line("quit");
    drop(server.finish());
}

/// Exercise 3: the student is the client. `nc` sees the server's lines; the console gets the
/// typed `RETURN` as the function's result; after `BYE` the server answers and closes, which a
/// program that only writes notices only when it writes.
#[test]
fn exercise_3_answer_key_is_what_nc_and_the_console_show() {
    let (mut server, port) = Program::servercall(&["--upcall-timeout", "60"]);
    let mut nc = Nc::connect(port);
    nc.send("REGISTER uppercase\n");
    nc.wait_for("REGISTERED uppercase\n");
    server.type_line("call client-1 uppercase hello");
    nc.wait_for("UPCALL 1 uppercase hello\n");
    nc.send("RETURN 1 HELLO\n");
    server.wait_for("client-1 returned: HELLO\n");
    key_says(3, "`client-1 returned: HELLO`");
    nc.send("MSG haii\n");
    nc.wait_for("ERR on_event is not registered (registered: uppercase)\n");
    server.wait_for("Received from client-1: haii\n");
    key_says(3, "`Received from client-1: haii`");
    nc.send("BYE\n");
    nc.wait_for("BYE\n");
    nc.wait_for_close();
    samples_are("exercise-3", &nc.printed());
    // nc notices the close only when it next writes: that write still goes out (the server's
    // kernel answers it with a reset), and only a write after it fails.
    key_says(3, "Ctrl-C");
    nc.stream
        .write_all(b"MSG still there?\n")
        .expect("the first write after the server's close is taken");
    let deadline = Instant::now() + PATIENCE;
    while nc.stream.write_all(b"MSG still there?\n").is_ok() {
        assert!(
            Instant::now() < deadline,
            "writes after the close never fail"
        );
        thread::sleep(Duration::from_millis(20));
    }
    server.type_line("quit");
    drop(server.finish());
}

/// Exercise 4: with the default 5 s, the console gives up; the late `RETURN` gets `ERR`, the
/// server logs it as a bad line, and the connection stays open. The given-up id is not used
/// again: the next call is upcall 2.
#[test]
fn exercise_4_answer_key_is_what_a_late_return_gets() {
    let (mut server, port) = Program::servercall(&[]);
    let mut nc = Nc::connect(port);
    nc.send("REGISTER uppercase\n");
    nc.wait_for("REGISTERED uppercase\n");
    let called = Instant::now();
    server.type_line("call client-1 uppercase hello");
    nc.wait_for("UPCALL 1 uppercase hello\n");
    // "wait ten seconds": that is, until well after the console gave up.
    server.wait_for("client-1 did not answer within 5 s\n");
    let gave_up_after = called.elapsed();
    key_says(4, "`client-1 did not answer within 5 s`");
    assert!(
        gave_up_after >= Duration::from_millis(4500),
        "gave up after {gave_up_after:?}"
    );
    let before_return = nc.printed().len();
    nc.send("RETURN 1 HELLO\n");
    nc.wait_for("ERR unknown upcall id 1");
    nc.wait_for("\n");
    samples_are("exercise-4", &nc.printed()[before_return..]);
    server.wait_for("client-1 sent a bad line: unknown upcall id 1 (");
    key_says(4, "`client-1 sent a bad line: unknown upcall id 1 (...)`");
    // The connection stays open: the next line is served.
    nc.send("REGISTER on_event\n");
    nc.wait_for("REGISTERED on_event\n");
    server.type_line("call client-1 uppercase again");
    nc.wait_for("UPCALL 2 uppercase again\n");
    nc.send("RETURN 2 AGAIN\n");
    server.wait_for("client-1 returned: AGAIN\n");
    nc.quit();
    server.type_line("quit");
    drop(server.finish());
}
