//! The files of `src/` use each other in one direction only: no import circle between two files,
//! or around several (DEVELOPERS.md). Each folder's `mod.rs` (or `protocol.rs` for `protocol/`,
//! ...) is the top of its folder: it declares its files and uses them, so they never name it; they
//! name each other, below it, in layers (the layering of `server/` and `client/` is written in
//! their `mod.rs`).
//!
//! This test reads every file of the library, finds what each one names of the crate
//! (`use super::peer::Peer`, `crate::log::seconds(...)`, `super::Server`, `mod peer;`), and fails
//! with the circle if the files that name each other go round.
//!
//! What it sees: paths. A file names a sibling through `super::file::Item` or
//! `crate::folder::file::Item`; naming `super::Item` names the folder's top file, whatever that
//! file re-exports, so a file below the top never reaches up through it. What it cannot see is a
//! method called on a value (`server.forget(peer)`); that is why the top file counts as using every
//! file it declares: the methods a file adds to a type are called from above.
//!
//! `lib.rs` is the crate's table of contents: its `pub mod` lines are not uses, and its one
//! function, `lock`, is a leaf every file may use. Every folder is held to the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A file's module path from the crate's root: `["server", "peer"]` for `src/server/peer.rs`.
type ModulePath = Vec<String>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    PathSep,
    Open,
    Close,
    Comma,
    Semicolon,
    Star,
    Other,
}

/// The library's files and their module paths (`src/bin/` holds programs, not the library).
fn library_files(src: &Path) -> BTreeMap<ModulePath, PathBuf> {
    let mut files = BTreeMap::new();
    let mut folders = vec![src.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in fs::read_dir(&folder).expect("src/ is readable") {
            let path = entry.expect("src/ is readable").path();
            if path.is_dir() {
                if path != src.join("bin") {
                    folders.push(path);
                }
                continue;
            }
            if path.extension().and_then(|extension| extension.to_str()) != Some("rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src/");
            let mut module: ModulePath = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            let last = module.pop().expect("a file name");
            let stem = last.strip_suffix(".rs").expect("a .rs file");
            if stem != "mod" && stem != "lib" {
                module.push(stem.to_string());
            }
            files.insert(module, path);
        }
    }
    files
}

/// The code of a file without its comments, string and character literals, and unit tests
/// (`#[cfg(test)] mod tests`, which may use anything of the file it tests).
fn code_of(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut code = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            code.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !word_before(&chars, i) {
            // A raw string: r"..." or r#"..."#.
            let mut hashes = 0;
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                code.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            code.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            code.push_str("\"\"");
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{200d}'), or a lifetime ('a), which is kept.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                code.push_str("' '");
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                code.push_str("' '");
            } else {
                code.push(c);
                i += 1;
            }
        } else {
            code.push(c);
            i += 1;
        }
    }
    match find_unit_tests(&code) {
        Some(start) => code[..start].to_string(),
        None => code,
    }
}

fn word_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Where `#[cfg(test)]` followed by `mod` begins, if anywhere.
fn find_unit_tests(code: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = code[from..].find("#[cfg(test)]") {
        let start = from + found;
        let after = code[start + "#[cfg(test)]".len()..].trim_start();
        if after.starts_with("mod ") {
            return Some(start);
        }
        from = start + 1;
    }
    None
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
            continue;
        }
        tokens.push(match c {
            ':' if chars.get(i + 1) == Some(&':') => {
                i += 1;
                Token::PathSep
            }
            '{' => Token::Open,
            '}' => Token::Close,
            ',' => Token::Comma,
            ';' => Token::Semicolon,
            '*' => Token::Star,
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            _ => Token::Other,
        });
        i += 1;
    }
    tokens
}

/// What one file names of the crate: the modules its paths end in (`super::peer::Peer` names
/// `server::peer`, `super::Server` names `server`), and the files it declares (`mod peer;`).
struct Names {
    named: BTreeSet<ModulePath>,
    declared: BTreeSet<ModulePath>,
}

fn names_in(file_module: &ModulePath, code: &str, modules: &BTreeSet<ModulePath>) -> Names {
    let tokens = tokens(code);
    let mut names = Names {
        named: BTreeSet::new(),
        declared: BTreeSet::new(),
    };
    // The module each brace belongs to: an inline `mod sys { ... }` is a module of its own.
    let mut scopes: Vec<(ModulePath, usize)> = Vec::new();
    let mut here = file_module.clone();
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Open => depth += 1,
            Token::Close => {
                depth = depth.saturating_sub(1);
                if scopes.last().is_some_and(|(_, at)| *at == depth) {
                    here = scopes.pop().expect("a scope").0;
                }
            }
            Token::Word(word) if word == "mod" => {
                if let (Some(Token::Word(name)), Some(after)) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    let mut inner = here.clone();
                    inner.push(name.clone());
                    if *after == Token::Semicolon {
                        names.declared.insert(inner);
                        i += 3;
                        continue;
                    }
                    if *after == Token::Open {
                        scopes.push((std::mem::replace(&mut here, inner), depth));
                        depth += 1;
                        i += 3;
                        continue;
                    }
                }
            }
            Token::Word(word) => {
                let starts_path = tokens.get(i + 1) == Some(&Token::PathSep)
                    && (i == 0 || tokens[i - 1] != Token::PathSep);
                if starts_path {
                    let start = match word.as_str() {
                        "crate" => Some(Vec::new()),
                        "super" => here.split_last().map(|(_, parent)| parent.to_vec()),
                        "self" => Some(here.clone()),
                        child => {
                            let mut inner = here.clone();
                            inner.push(child.to_string());
                            modules.contains(&inner).then_some(inner)
                        }
                    };
                    if let Some(start) = start {
                        i = follow_path(&tokens, i + 1, start, modules, &mut names.named);
                        continue;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    names.named.remove(file_module);
    names
}

/// Follows a path from `::` at `i`, in module `module`; records the module it ends in (for a
/// group, `{a, b::C}`, each branch's). Returns where the path ends.
fn follow_path(
    tokens: &[Token],
    mut i: usize,
    mut module: ModulePath,
    modules: &BTreeSet<ModulePath>,
    named: &mut BTreeSet<ModulePath>,
) -> usize {
    while tokens.get(i) == Some(&Token::PathSep) {
        match tokens.get(i + 1) {
            Some(Token::Word(word)) if word == "super" => {
                module.pop();
                i += 2;
            }
            Some(Token::Word(word)) if word == "self" => i += 2,
            Some(Token::Word(word)) => {
                let mut inner = module.clone();
                inner.push(word.clone());
                if modules.contains(&inner) {
                    module = inner;
                    i += 2;
                } else {
                    break; // an item of `module`
                }
            }
            Some(Token::Open) => {
                i += 2;
                loop {
                    match tokens.get(i) {
                        Some(Token::Close) | None => return i + 1,
                        Some(Token::Comma) => i += 1,
                        Some(Token::Word(word)) if word == "self" => {
                            named.insert(module.clone());
                            i += 1;
                        }
                        Some(Token::Word(word)) => {
                            let mut inner = module.clone();
                            inner.push(word.clone());
                            if modules.contains(&inner)
                                && tokens.get(i + 1) == Some(&Token::PathSep)
                            {
                                i = follow_path(tokens, i + 1, inner, modules, named);
                            } else {
                                named.insert(if modules.contains(&inner) {
                                    inner
                                } else {
                                    module.clone()
                                });
                                i += 1;
                                // Skip `as name`, or the rest of a path into an item.
                                while !matches!(
                                    tokens.get(i),
                                    Some(Token::Comma | Token::Close) | None
                                ) {
                                    i += 1;
                                }
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            Some(Token::Star) => break,
            _ => break,
        }
    }
    named.insert(module);
    i
}

/// Which file uses which, by their names under `src/` (`server/peer.rs`).
fn file_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = library_files(&src);
    let modules: BTreeSet<ModulePath> = files.keys().cloned().collect();
    let name = |module: &ModulePath| {
        let path = &files[module];
        path.strip_prefix(&src)
            .expect("under src/")
            .to_string_lossy()
            .replace('\\', "/")
    };
    let mut graph = BTreeMap::new();
    for (module, path) in &files {
        let text = fs::read_to_string(path).expect("a source file is readable");
        let names = names_in(module, &code_of(&text), &modules);
        let mut uses: BTreeSet<String> = names.named.iter().map(&name).collect();
        if !module.is_empty() {
            uses.extend(
                names
                    .declared
                    .iter()
                    .filter(|m| files.contains_key(*m))
                    .map(&name),
            );
        }
        uses.remove("lib.rs");
        uses.remove(&name(module));
        graph.insert(name(module), uses);
    }
    graph
}

/// A circle in `graph`, as the files around it (the first again at the end), if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        file: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        trail: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(file) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = trail.iter().position(|f| f == file).expect("on the trail");
                let mut around = trail[from..].to_vec();
                around.push(file.to_string());
                return Some(around);
            }
            None => {}
        }
        marks.insert(file.to_string(), Mark::Open);
        trail.push(file.to_string());
        for used in graph.get(file).into_iter().flatten() {
            if let Some(around) = visit(used, graph, marks, trail) {
                return Some(around);
            }
        }
        trail.pop();
        marks.insert(file.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for file in graph.keys() {
        if let Some(around) = visit(file, graph, &mut marks, &mut Vec::new()) {
            return Some(around);
        }
    }
    None
}

/// The graph, one line a file, for a failure message.
fn drawn(graph: &BTreeMap<String, BTreeSet<String>>) -> String {
    let mut drawing = String::new();
    for (file, uses) in graph {
        let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
        drawing.push_str(&format!("  {file} -> {}\n", uses.join(", ")));
    }
    drawing
}

#[test]
fn no_two_files_of_the_library_use_each_other_even_through_others() {
    let graph = file_graph();
    if let Some(around) = circle(&graph) {
        panic!(
            "an import circle: {}\nEach folder's files use each other in one direction, the top \
             file (mod.rs) above them all; see the layering in server/mod.rs and \
             client/mod.rs.\nWhich file uses which:\n{}",
            around.join(" -> "),
            drawn(&graph)
        );
    }
}

#[test]
fn the_check_sees_what_a_file_names_and_finds_a_circle() {
    let modules: BTreeSet<ModulePath> = [
        vec![],
        vec!["server".to_string()],
        vec!["server".to_string(), "peer".to_string()],
        vec!["server".to_string(), "pending".to_string()],
        vec!["log".to_string()],
    ]
    .into_iter()
    .collect();
    let peer: ModulePath = vec!["server".into(), "peer".into()];
    let code = code_of(
        "//! Uses super::nothing in a comment.\n\
         use super::pending::{self, CallResult};\n\
         use super::{Server, limits};\n\
         use crate::lock;\n\
         fn f() { let _ = \"super::not_this\"; crate::log::seconds(d); 'a'; }\n\
         #[cfg(test)]\nmod tests { use super::*; use crate::server::pending; }\n",
    );
    let names = names_in(&peer, &code, &modules);
    let named: Vec<String> = names.named.iter().map(|m| m.join("::")).collect();
    assert_eq!(named, ["", "log", "server", "server::pending"]);

    let declared = names_in(
        &vec!["server".into()],
        &code_of("mod peer;\nmod pending;\nuse peer::Peer;\n"),
        &modules,
    );
    assert_eq!(declared.declared.len(), 2);
    assert!(declared.named.contains(&peer));

    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    graph.insert("a.rs".into(), ["b.rs".into()].into());
    graph.insert("b.rs".into(), ["c.rs".into()].into());
    graph.insert("c.rs".into(), BTreeSet::new());
    assert_eq!(circle(&graph), None);
    graph.insert("c.rs".into(), ["a.rs".into()].into());
    assert_eq!(
        circle(&graph),
        Some(vec![
            "a.rs".into(),
            "b.rs".into(),
            "c.rs".into(),
            "a.rs".into()
        ])
    );
}
