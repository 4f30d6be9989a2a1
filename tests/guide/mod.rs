//! What the tests of the two guides share: their names, reading a file of the repository, the
//! samples marked in them, and GitHub's anchor for a heading. (`pub mod guide;` in each test
//! file: a test file that uses only some of these is not warned about the rest.)

/// The two guides, held to the same commands, samples and answer keys.
pub const GUIDES: [&str; 2] = ["README.md", "README.id.md"];

/// A file of the repository, by its path from the root.
pub fn read(file: &str) -> String {
    let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The text of the fenced block right after `<!-- sample: NAME -->` in `file`.
pub fn sample(file: &str, name: &str) -> String {
    let text = read(file);
    let marker = format!("<!-- sample: {name} -->\n```text\n");
    let start = text
        .find(&marker)
        .unwrap_or_else(|| panic!("{file} has no sample {name}"))
        + marker.len();
    let end = start + text[start..].find("```").expect("the block ends");
    text[start..end].to_string()
}

/// GitHub's anchor for a heading: lower case, spaces to `-`, punctuation dropped.
pub fn anchor(heading: &str) -> String {
    heading
        .trim_start_matches('#')
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The samples' addresses without their ports, which differ from run to run:
/// `127.0.0.1:43291` and `127.0.0.1:4141` both become `127.0.0.1:PORT`.
pub fn without_ports(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("127.0.0.1:") {
        out.push_str(&rest[..at + "127.0.0.1:".len()]);
        rest = rest[at + "127.0.0.1:".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push_str("PORT");
    }
    out.push_str(rest);
    out
}
