//! What the checker tells: one line per case, the transcript of each failure, a summary, and
//! the same as JUnit XML for a grader's script or CI.

use std::fmt::Write as _;
use std::time::Duration;

use super::case::Outcome;
use super::wire::Direction;

/// The outcomes of one run, in the order of the rules.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn all_passed(&self) -> bool {
        self.outcomes.iter().all(Outcome::passed)
    }

    /// The names of the failed cases (`server 4.2`), for tests and scripts.
    pub fn failed(&self) -> Vec<String> {
        self.outcomes
            .iter()
            .filter(|outcome| !outcome.passed())
            .map(Outcome::name)
            .collect()
    }

    /// The whole report as it is printed.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for outcome in &self.outcomes {
            out.push_str(&case_text(outcome));
        }
        let failed = self.failed().len();
        let _ = writeln!(
            out,
            "{} passed, {failed} failed, of {} cases.",
            self.outcomes.len() - failed,
            self.outcomes.len()
        );
        out
    }

    /// JUnit XML: one testsuite, one testcase per case, a `<failure>` with the transcript.
    pub fn junit(&self, suite: &str) -> String {
        let total: Duration = self.outcomes.iter().map(|o| o.took).sum();
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites><testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{:.3}\">",
            xml(suite),
            self.outcomes.len(),
            self.failed().len(),
            total.as_secs_f64()
        );
        for outcome in &self.outcomes {
            let _ = write!(
                out,
                "  <testcase classname=\"upcall/1.{}\" name=\"{} {}\" time=\"{:.3}\"",
                outcome.side.name(),
                outcome.rule,
                xml(outcome.title),
                outcome.took.as_secs_f64()
            );
            match &outcome.failure {
                None => out.push_str("/>\n"),
                Some(expected) => {
                    let _ = writeln!(
                        out,
                        ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>",
                        xml(expected),
                        xml(&case_text(outcome))
                    );
                }
            }
        }
        out.push_str("</testsuite></testsuites>\n");
        out
    }
}

/// One case: `PASS 4.2 title`, and for a failure its lines and what was expected.
pub fn case_text(outcome: &Outcome) -> String {
    let mut out = String::new();
    let verdict = if outcome.passed() { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "{verdict}  {} {:<4} {}",
        outcome.side.name(),
        outcome.rule,
        outcome.title
    );
    if let Some(expected) = &outcome.failure {
        let several = outcome
            .transcript
            .iter()
            .any(|entry| entry.connection != 'A');
        for entry in &outcome.transcript {
            let who = if several {
                format!("{} ", entry.connection)
            } else {
                String::new()
            };
            let what = match entry.direction {
                Direction::Sent => "sent:    ",
                Direction::Received => "received:",
                Direction::Note => "         ",
            };
            let _ = writeln!(out, "        {who}{what} {}", entry.text);
        }
        let _ = writeln!(out, "        expected: {expected}");
        let _ = writeln!(out, "        (rule {} in src/upcall-1.md)", outcome.rule);
    }
    out
}

/// Text made safe inside XML attributes and elements.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            // XML 1.0 cannot carry other control characters even escaped; `printable` has
            // already spelled them out, this is a last guard.
            c if c.is_control() && c != '\t' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::wire::Entry;
    use crate::check::Side;

    #[test]
    fn a_failure_shows_its_lines_and_what_was_expected_in_text_and_junit() {
        let report = Report {
            outcomes: vec![Outcome {
                side: Side::Server,
                rule: "3.1",
                title: "REGISTER <callback> is answered",
                failure: Some("REGISTERED on_event".into()),
                transcript: vec![
                    Entry {
                        connection: 'A',
                        direction: Direction::Sent,
                        text: "REGISTER on_event".into(),
                    },
                    Entry {
                        connection: 'A',
                        direction: Direction::Received,
                        text: "ERR <no>".into(),
                    },
                ],
                took: Duration::from_millis(5),
            }],
        };
        let text = report.text();
        assert!(text.contains("FAIL  server 3.1"), "{text}");
        assert!(text.contains("sent:     REGISTER on_event"), "{text}");
        assert!(text.contains("expected: REGISTERED on_event"), "{text}");
        let junit = report.junit("checkcall server");
        assert!(
            junit.contains("failures=\"1\"") && junit.contains("ERR &lt;no&gt;"),
            "{junit}"
        );
    }
}
