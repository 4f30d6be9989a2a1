//! The numbered rules of `upcall/1`, as `src/upcall-1.md` states them, one line each.
//!
//! The spec is the text a student reads; this table is what the checker and the tests hold it
//! to. A test checks that both guides' spec files number exactly these rules, and that every rule
//! has a checker case and is cited by a test.

/// Who must keep a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Server,
    Client,
    Both,
}

/// One rule: its number, who keeps it, and its gist.
pub struct Rule {
    pub number: &'static str,
    pub who: Who,
    pub gist: &'static str,
}

const fn rule(number: &'static str, who: Who, gist: &'static str) -> Rule {
    Rule { number, who, gist }
}

/// Every rule, in the spec's order.
pub const RULES: &[Rule] = &[
    rule(
        "1.1",
        Who::Both,
        "a line ends with LF; a CR right before it is dropped",
    ),
    rule(
        "1.2",
        Who::Both,
        "an empty line is ignored and never answered",
    ),
    rule(
        "1.3",
        Who::Both,
        "verbs are read in any case and sent in upper case",
    ),
    rule(
        "1.4",
        Who::Server,
        "a line over 4096 bytes gets ERR and is skipped to its newline",
    ),
    rule(
        "1.5",
        Who::Client,
        "a client takes lines of up to 4096 bytes",
    ),
    rule(
        "1.6",
        Who::Server,
        "a line that is not valid text (UTF-8, no control characters) gets ERR",
    ),
    rule(
        "1.7",
        Who::Client,
        "UTF-8 text arrives and goes back intact",
    ),
    rule(
        "2.1",
        Who::Server,
        "the server's first line is WELCOME <client-id> upcall/1",
    ),
    rule(
        "2.2",
        Who::Server,
        "connections open at the same time get different client ids",
    ),
    rule(
        "2.3",
        Who::Server,
        "lines sent before WELCOME arrives are handled, in order",
    ),
    rule(
        "2.4",
        Who::Client,
        "a client registers its callbacks with REGISTER",
    ),
    rule(
        "3.1",
        Who::Server,
        "REGISTER <callback> is answered REGISTERED <callback>",
    ),
    rule("3.2", Who::Server, "a bad callback name gets ERR"),
    rule(
        "3.3",
        Who::Server,
        "registering a name again is answered REGISTERED again",
    ),
    rule("3.4", Who::Server, "past 64 callbacks, REGISTER gets ERR"),
    rule(
        "4.1",
        Who::Server,
        "MSG <text> upcalls on_event on the sender: Upcall event: Processing <text>",
    ),
    rule(
        "4.2",
        Who::Server,
        "MSG <text> upcalls on_event on the others: Upcall event: <client-id> says <text>",
    ),
    rule(
        "4.3",
        Who::Server,
        "MSG from a client without on_event gets ERR and no upcall",
    ),
    rule(
        "5.1",
        Who::Server,
        "upcall ids count 1, 2, 3, ... on each connection",
    ),
    rule(
        "5.2",
        Who::Client,
        "UPCALL <id> <callback> without an argument is valid",
    ),
    rule(
        "5.3",
        Who::Client,
        "every UPCALL is answered once, with its own id",
    ),
    rule(
        "5.4",
        Who::Client,
        "upcalls may come several at a time; each is answered",
    ),
    rule(
        "5.5",
        Who::Client,
        "an upcall of a callback the client does not have is answered FAIL",
    ),
    rule(
        "5.6",
        Who::Client,
        "the lab's callbacks: uppercase returns its argument in upper case",
    ),
    rule(
        "6.1",
        Who::Server,
        "an accepted RETURN or FAIL gets no reply",
    ),
    rule(
        "6.2",
        Who::Server,
        "RETURN <id> with no value and FAIL <id> with no reason are valid",
    ),
    rule(
        "6.3",
        Who::Server,
        "RETURN/FAIL for an id not pending gets ERR",
    ),
    rule(
        "6.4",
        Who::Server,
        "RETURN/FAIL with a malformed id gets ERR",
    ),
    rule(
        "6.5",
        Who::Server,
        "an upcall not answered within the upcall timeout is given up",
    ),
    rule(
        "7.1",
        Who::Server,
        "a refused line gets exactly one ERR, and the connection stays",
    ),
    rule(
        "7.2",
        Who::Server,
        "lines are answered in the order they came",
    ),
    rule(
        "7.3",
        Who::Client,
        "a client never answers an ERR and stays connected",
    ),
    rule(
        "7.4",
        Who::Client,
        "a client ignores a server line it cannot use",
    ),
    rule(
        "8.1",
        Who::Server,
        "BYE is answered BYE, then the server closes",
    ),
    rule(
        "8.2",
        Who::Client,
        "after the server's BYE a client sends nothing but BYE and closes",
    ),
    rule(
        "9.1",
        Who::Server,
        "no complete line within the line timeout: ERR and close",
    ),
    rule(
        "9.2",
        Who::Server,
        "no callback registered within the line timeout: ERR and close",
    ),
    rule(
        "9.3",
        Who::Server,
        "a line unfinished for the line timeout: ERR and close",
    ),
    rule(
        "9.4",
        Who::Server,
        "a registered client that is quiet stays connected",
    ),
    rule(
        "9.5",
        Who::Server,
        "MSGs past the message rate get ERR and are not passed on",
    ),
    rule(
        "9.6",
        Who::Server,
        "refused lines past the rate close the connection",
    ),
];

/// The rule with this number.
pub fn find(number: &str) -> Option<&'static Rule> {
    RULES.iter().find(|rule| rule.number == number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_numbers_are_unique_and_in_order() {
        let numbers: Vec<(u32, u32)> = RULES
            .iter()
            .map(|rule| {
                let (section, item) = rule.number.split_once('.').unwrap();
                (section.parse().unwrap(), item.parse().unwrap())
            })
            .collect();
        let mut sorted = numbers.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(numbers, sorted);
    }
}
