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
