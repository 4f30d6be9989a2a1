//! The two guides are one guide in two languages, and their figures have one source.
//!
//! README.id.md is first-class: section by section it has README.md's headings, in the same
//! order, the same fenced blocks (commands, output, diagrams), the same code in its sentences
//! (commands, file names, messages), the same figures (written the Indonesian way: `1.024`,
//! `0,07`) and links to the same places (a section link to its own heading of the same rank, a
//! file link to the same file, or to its Indonesian twin `*.id.md`). The protocol's numbered
//! rules, `src/upcall-1.md` and `src/upcall-1.id.md`, are held to the same. Every link of the
//! guides and of the pages they lead to goes to a file or heading that exists. Every output block
//! is a sample that a test compares with the programs. And the Limits tables and the protocol's
//! figures are the code's, so that the code, the English page and the Indonesian one cannot drift
//! apart.
//!
//! (`tests/readme.rs` runs the samples; `tests/exercises.rs` and `tests/reading_the_capture.rs`
//! check the exercises' keys; the Performance figures are checked against the benchmark's page in
//! `tests/readme.rs`.)

use std::path::{Path, PathBuf};

pub mod guide;

use guide::{anchor, read};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One `##` or `###` section of a guide: its heading line, its fenced blocks, and the rest (its
/// prose, tables and lists) with the heading, each run of white space made one space.
#[derive(Debug)]
struct Section {
    heading: String,
    blocks: Vec<String>,
    prose: String,
}

/// The sections of a Markdown text from its first `##` on, fences respected (a `#` line inside a
/// block is not a heading).
fn sections(markdown: &str) -> Vec<Section> {
    let mut sections: Vec<Section> = Vec::new();
    let mut block: Option<String> = None;
    let mut prose = String::new();
    for line in markdown.lines() {
        if let Some(text) = block.as_mut() {
            text.push_str(line);
            text.push('\n');
            if line.starts_with("```") {
                if let Some(section) = sections.last_mut() {
                    section.blocks.push(block.take().unwrap());
                }
                block = None;
            }
            continue;
        }
        if line.starts_with("```") {
            block = Some(format!("{line}\n"));
            // A block ends a sentence: text around it must not run together.
            prose.push('\n');
        } else if line.starts_with("## ") || line.starts_with("### ") {
            if let Some(section) = sections.last_mut() {
                section.prose = words(&prose);
            }
            sections.push(Section {
                heading: line.to_string(),
                blocks: Vec::new(),
                prose: String::new(),
            });
            prose = format!("{line}\n");
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    assert!(block.is_none(), "a fenced block is not closed");
    if let Some(section) = sections.last_mut() {
        section.prose = words(&prose);
    }
    sections
}

fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The heading's rank (`##` 2, `###` 3).
fn rank(heading: &str) -> usize {
    heading.chars().take_while(|&c| c == '#').count()
}

/// The headings of a Markdown text, fences respected.
fn headings(markdown: &str) -> Vec<String> {
    let mut inside = false;
    let mut headings = Vec::new();
    for line in markdown.lines() {
        if line.starts_with("```") {
            inside = !inside;
        } else if !inside && line.starts_with('#') {
            headings.push(line.to_string());
        }
    }
    headings
}

/// The code spans of a section's prose, but for those with a placeholder that a translation
/// translates (`<text>`, `<teks>`).
fn code(prose: &str) -> Vec<String> {
    prose
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|span| !span.contains('<'))
        .map(str::to_string)
        .collect()
}

/// The targets of the links of a section's prose, in order (`](target)`).
fn links(prose: &str) -> Vec<String> {
    prose
        .match_indices("](")
        .map(|(at, _)| {
            let rest = &prose[at + 2..];
            rest[..rest.find(')').expect("a link ends")].to_string()
        })
        .collect()
}

/// The figures of a section's prose, outside code and link targets, in order, written one way:
/// `thousands` and `decimal` are the guide's separators (`,` and `.` in English, `.` and `,` in
/// Indonesian); `1,024` and `1.024` are both `1024`, `0.07` and `0,07` both `0.07`.
fn figures(prose: &str, thousands: char, decimal: char) -> Vec<String> {
    let mut text = String::new();
    for (at, part) in prose.split('`').enumerate() {
        if at % 2 == 0 {
            text.push_str(part);
        }
        text.push(' ');
    }
    for target in links(&text) {
        text = text.replace(&format!("]({target})"), "]");
    }
    let mut figures = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_ascii_digit() {
            continue;
        }
        let mut run = c.to_string();
        while let Some(&next) = chars.peek() {
            if next.is_ascii_digit() || next == thousands || next == decimal {
                run.push(next);
                chars.next();
            } else {
                break;
            }
        }
        let run = run.trim_end_matches([thousands, decimal]);
        let groups: Vec<&str> = run.split(thousands).collect();
        let grouped = groups.len() > 1 && groups[1..].iter().all(|g| g.len() == 3);
        let figure = if grouped {
            groups.concat()
        } else {
            run.to_string()
        };
        figures.push(figure.replace(decimal, "."));
    }
    figures
}

/// A file of README.id.md in README.md's terms: an Indonesian twin (`src/upcall-1.id.md`) stands
/// for the English page.
fn twin(file: &str) -> String {
    match file.strip_suffix(".id.md") {
        Some(english) => format!("{english}.md"),
        None => file.to_string(),
    }
}

/// Where a link leads, comparable between the guides: a section link is the number of its
/// heading in its own guide, a file link the file (an Indonesian twin the English page).
fn place(target: &str, headings: &[String]) -> String {
    match target.strip_prefix('#') {
        Some(anchor_name) => match headings.iter().position(|h| anchor(h) == anchor_name) {
            Some(at) => format!("heading {at}"),
            None => format!("no heading for #{anchor_name}"),
        },
        None => twin(target),
    }
}

/// The pages written in both languages: the guide, and the protocol's numbered rules.
const TWINS: [(&str, &str); 2] = [
    ("README.md", "README.id.md"),
    ("src/upcall-1.md", "src/upcall-1.id.md"),
];

#[test]
fn each_indonesian_page_has_the_sections_of_the_english_one_in_the_same_order() {
    for (english, indonesian) in TWINS {
        let english = sections(&read(english));
        let indonesian = sections(&read(indonesian));
        let list = |sections: &[Section]| {
            sections
                .iter()
                .map(|s| s.heading.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            english.len(),
            indonesian.len(),
            "{:#?}\n{:#?}",
            list(&english),
            list(&indonesian)
        );
        assert!(english.len() >= 10, "{:#?}", list(&english));
        for (en, id) in english.iter().zip(&indonesian) {
            assert_eq!(
                rank(&en.heading),
                rank(&id.heading),
                "{} | {}",
                en.heading,
                id.heading
            );
            // Numbered sections (exercises, rules) keep their numbers: others refer to them.
            let number = |heading: &str| {
                heading
                    .trim_start_matches('#')
                    .trim()
                    .split_once(". ")
                    .map(|(n, _)| n.to_string())
            };
            assert_eq!(number(&en.heading), number(&id.heading), "{}", id.heading);
        }
    }
}

#[test]
fn each_section_of_an_indonesian_page_has_the_english_ones_blocks_code_figures_and_links() {
    for (english, indonesian) in TWINS {
        let (english_text, indonesian_text) = (read(english), read(indonesian));
        let (english_headings, indonesian_headings) =
            (headings(&english_text), headings(&indonesian_text));
        for (en, id) in sections(&english_text)
            .iter()
            .zip(&sections(&indonesian_text))
        {
            let what = format!("{indonesian}: {} | {}", en.heading, id.heading);
            assert_eq!(en.blocks, id.blocks, "fenced blocks of {what}");
            let english_code = code(&en.prose);
            let indonesian_code: Vec<String> = code(&id.prose).iter().map(|s| twin(s)).collect();
            assert_eq!(english_code, indonesian_code, "code in the text of {what}");
            assert_eq!(
                figures(&en.prose, ',', '.'),
                figures(&id.prose, '.', ','),
                "figures of {what}"
            );
            let english_links: Vec<String> = links(&en.prose)
                .iter()
                .map(|target| place(target, &english_headings))
                .collect();
            let indonesian_links: Vec<String> = links(&id.prose)
                .iter()
                .map(|target| place(target, &indonesian_headings))
                .collect();
            assert_eq!(english_links, indonesian_links, "links of {what}");
        }
    }
}

/// The Markdown pages a student reads: the guides, the pages they lead to, the protocol's rules.
const PAGES: [&str; 6] = [
    "README.md",
    "README.id.md",
    "pcaps/README.md",
    "examples/bench/README.md",
    "src/upcall-1.md",
    "src/upcall-1.id.md",
];

#[test]
fn every_link_of_the_guides_and_their_pages_leads_to_a_file_or_heading_that_exists() {
    for page in PAGES {
        let text = read(page);
        let mut checked = 0;
        let prose: String = sections(&format!("## {page}\n{text}"))
            .iter()
            .map(|s| s.prose.clone() + " ")
            .collect();
        let here = Path::new(page).parent().unwrap();
        for target in links(&prose) {
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, anchor_name) = match target.split_once('#') {
                Some((file, anchor_name)) => (file, Some(anchor_name)),
                None => (target.as_str(), None),
            };
            let file = if file.is_empty() {
                PathBuf::from(page)
            } else {
                here.join(file)
            };
            let path = root().join(&file);
            assert!(path.exists(), "{page}: the link {target} leads to nothing");
            if let Some(anchor_name) = anchor_name {
                let headings = headings(&read(file.to_str().unwrap()));
                assert!(
                    headings.iter().any(|h| anchor(h) == anchor_name),
                    "{page}: the link {target}: {file:?} has no heading #{anchor_name}"
                );
            }
            checked += 1;
        }
        assert!(checked > 0, "{page}: no link checked");
    }
}

/// Every output block (fenced as `text`) of the guides is a sample marked `<!-- sample: NAME -->`,
/// and some test or the lab check compares it with the programs: it names the sample.
#[test]
fn every_output_block_of_the_guides_is_a_sample_that_a_test_checks() {
    let mut checkers = String::new();
    for entry in std::fs::read_dir(root().join("tests")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            checkers.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    let lab_check = read("compose/lab-check.sh");
    for guide in ["README.md", "README.id.md"] {
        let text = read(guide);
        let lines: Vec<&str> = text.lines().collect();
        for (at, line) in lines.iter().enumerate() {
            if *line != "```text" {
                continue;
            }
            let name = at
                .checked_sub(1)
                .and_then(|before| lines[before].strip_prefix("<!-- sample: "))
                .and_then(|rest| rest.strip_suffix(" -->"))
                .unwrap_or_else(|| {
                    panic!("{guide}:{}: an output block that is not a sample", at + 1)
                });
            let named = checkers.contains(&format!("\"{name}\""))
                || checkers.contains(&format!("sample: {name} "))
                || lab_check.split_whitespace().any(|word| word == name);
            assert!(named, "{guide}: no test checks the sample {name}");
        }
    }
}

/// `1024` as the guide writes it: `1,024`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (at, digit) in digits.chars().enumerate() {
        if at > 0 && (digits.len() - at) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The rows of the tables in README.md's section `heading`: each row's cells, trimmed.
fn table_rows(heading: &str) -> Vec<Vec<String>> {
    let text = read("README.md");
    let start = text.find(&format!("\n{heading}\n")).expect("the section");
    let end = start + 1 + text[start + 1..].find("\n## ").expect("the next section");
    text[start..end]
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| What |"))
        .map(|line| {
            line.trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_string())
                .collect()
        })
        .collect()
}

/// The Limits tables give the figures of the code (the server's defaults and constants, the
/// client's), so that the code stays their one source; the Indonesian tables follow from the test
/// above, which holds them to the same figures.
#[test]
fn the_limits_tables_give_the_figures_of_the_code() {
    use upcall::server::limits::{
        CLIENT_THREAD_STACK, KEEPALIVE_GIVE_UP, KEEPALIVE_IDLE, LOG_LINES_PER_SECOND,
        MAX_CALLBACKS, OUTBOX_LIMIT,
    };
    let defaults = upcall::server::ServerConfig::default();
    let secs = |d: std::time::Duration| format!("{} s", d.as_secs());
    let rate = defaults.max_msg_rate;
    let per_second = format!("{rate} a second, bursts of {}", 2 * rate);
    let bytes = format!("{} bytes", grouped(defaults.max_line));
    assert_eq!(defaults.max_per_address, 0, "the table says: no limit");
    let server: Vec<(&str, String)> = vec![
        ("Connections", grouped(defaults.max_clients)),
        ("Connections from one IP address", "no limit".into()),
        (
            "Addresses the operator kicked out",
            format!("{} min", upcall::server::KICK_BAN.as_secs() / 60),
        ),
        (
            "Registering a callback after connecting",
            secs(defaults.line_timeout),
        ),
        ("A line left unfinished", secs(defaults.line_timeout)),
        ("A registered client that is just quiet", "no limit".into()),
        (
            "A client whose computer vanished",
            format!(
                "{} without an answer from its computer (TCP keepalive probes start after {} of \
                 silence)",
                secs(KEEPALIVE_GIVE_UP),
                secs(KEEPALIVE_IDLE)
            ),
        ),
        ("Lines per client", per_second.clone()),
        ("Refused lines per client", per_second),
        (
            "A `MSG` too long to pass on",
            format!("{bytes} for that upcall's line"),
        ),
        ("Line length", format!("{bytes} with the newline")),
        ("Callbacks per client", MAX_CALLBACKS.to_string()),
        (
            "Upcalls unanswered at once, per client",
            grouped(defaults.max_pending),
        ),
        ("Time for an upcall's answer", secs(defaults.upcall_timeout)),
        (
            "Lines waiting for a client that does not read",
            format!("{} KiB", OUTBOX_LIMIT / 1024),
        ),
        (
            "Time a line may wait to be written",
            format!("{}, per line", secs(defaults.write_timeout)),
        ),
        (
            "Log lines of one kind about one client",
            format!("{LOG_LINES_PER_SECOND} a second"),
        ),
        (
            "Log lines waiting for a slow or paused terminal",
            grouped(upcall::log::LOG_QUEUE),
        ),
        (
            "Console `call`s and `broadcast`s waiting at once",
            upcall::console::MAX_CALLS_IN_FLIGHT.to_string(),
        ),
        (
            "New connections waiting for `accept`",
            grouped(upcall::os::LISTEN_BACKLOG as usize),
        ),
    ];
    let client: Vec<(&str, String)> = vec![
        ("Line length", format!("{bytes} with the newline")),
        (
            "A server that stops reading",
            format!("{} per line", secs(upcall::client::WAIT)),
        ),
        ("Leaving", secs(upcall::client::FAREWELL)),
    ];
    let rows = table_rows("## Limits");
    for (what, limit) in server.iter().chain(&client) {
        let row = rows
            .iter()
            .find(|row| row[0].starts_with(what) && row[1].starts_with(limit.as_str()))
            .unwrap_or_else(|| {
                panic!("README.md's Limits has no row {what:?} with the limit {limit:?}: {rows:#?}")
            });
        assert!(row.len() >= 4, "{row:?}");
    }
    // Around the tables.
    let text = words(&read("README.md"));
    for words in [
        format!(
            "Every client's thread has a {} KiB stack.",
            CLIENT_THREAD_STACK / 1024
        ),
        format!(
            "the console's own lines wait {} at most",
            secs(upcall::log::CONSOLE_PATIENCE)
        ),
    ] {
        assert!(text.contains(&words), "README.md does not say {words:?}");
    }
    // The benchmark's page gives a slow client's limits too, with a link to the table.
    let words = format!(
        "dropped past {} KiB waiting or a line unsent for {} ([Limits](../../README.md#limits))",
        OUTBOX_LIMIT / 1024,
        secs(defaults.write_timeout)
    );
    assert!(
        words_of("examples/bench/README.md").contains(&words),
        "examples/bench/README.md does not say {words:?}"
    );
}

fn words_of(file: &str) -> String {
    words(&read(file))
}

/// The protocol's figures, where the guide's Protocol section and the numbered rules give them,
/// are the code's: the longest line and the longest callback name (the id's 20 digits are the
/// grammar's, checked by the parser's own tests).
#[test]
fn the_protocol_figures_of_the_guide_and_the_rules_are_the_codes() {
    use upcall::protocol::{DEFAULT_MAX_LINE, MAX_CALLBACK_NAME};
    let line = grouped(DEFAULT_MAX_LINE);
    let readme = words(&read("README.md"));
    let rules = words(&read("src/upcall-1.md"));
    for (page, text, words) in [
        (
            "README.md",
            &readme,
            format!("Longest accepted line: {line} bytes with its newline"),
        ),
        (
            "README.md",
            &readme,
            format!("Callback names: `[a-z][a-z0-9_]*`, at most {MAX_CALLBACK_NAME} characters."),
        ),
        (
            "src/upcall-1.md",
            &rules,
            format!("A line is at most {line} bytes, its LF included."),
        ),
        (
            "src/upcall-1.md",
            &rules,
            format!("(`[a-z][a-z0-9_]*`, at most {MAX_CALLBACK_NAME} characters)"),
        ),
        (
            "src/upcall-1.md",
            &rules,
            format!("{} characters", MAX_CALLBACK_NAME + 1),
        ),
    ] {
        assert!(text.contains(&words), "{page} does not say {words:?}");
    }
}
