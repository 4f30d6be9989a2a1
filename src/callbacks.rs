//! The functions a client offers to the server: the "up" end of an upcall.
//!
//! When `clientcall` connects, it sends `REGISTER <name>` for every entry of [`CALLBACKS`]. From then
//! on, the server may send `UPCALL <id> <name> <argument>`, and the client runs the function *here*,
//! on the client's machine, and sends its result back as `RETURN <id> <value>` (or `FAIL <id>
//! <reason>`). `hostname` shows this best: called from the server's console, it answers with the
//! name of the machine (in the Docker lab, the container) where the client runs.
//!
//! Adding a callback is one function and one line in [`CALLBACKS`]. Nothing else changes: the client
//! registers every entry and dispatches by name.

use crate::protocol::ON_EVENT;

/// A callback takes the upcall's argument and returns the value for `RETURN`, or the reason for
/// `FAIL`. What it wants the user to see it hands to `show`: the client decides how to print it
/// (keeping the user's prompt intact), so this table knows nothing about terminals.
pub type Callback = fn(argument: &str, show: &dyn Fn(&str)) -> Result<String, String>;

/// Every callback the client registers, by the name the server calls it by.
pub const CALLBACKS: &[(&str, Callback)] = &[
    (ON_EVENT, on_event),
    ("uppercase", uppercase),
    ("hostname", hostname),
];

/// The callback registered under `name`, if any.
pub fn find(name: &str) -> Option<Callback> {
    CALLBACKS
        .iter()
        .find(|(registered, _)| *registered == name)
        .map(|&(_, callback)| callback)
}

/// A notification: the server tells the client that something happened. It prints the old lab's
/// line and acknowledges with `ok`.
fn on_event(text: &str, show: &dyn Fn(&str)) -> Result<String, String> {
    show(&format!("Received upcall from server: {text}"));
    Ok("ok".to_string())
}

/// A function with a result: the server hands over data, the client computes, the server gets
/// the answer. (`to_uppercase` is Unicode-aware: `straße` becomes `STRASSE`.)
fn uppercase(text: &str, _show: &dyn Fn(&str)) -> Result<String, String> {
    Ok(text.to_uppercase())
}

/// A function only the client can answer: the name of the machine it runs on.
///
/// Std has no `gethostname`, so each system is asked the way it publishes the name: Linux in
/// `/proc` (in a container, that is the container's host name) and `/etc/hostname`; Windows in
/// the `COMPUTERNAME` variable every Windows process gets; then the `HOSTNAME` variable some shells
/// set; and last the `hostname` program, which Linux, macOS and Windows all have. Each source is
/// tried only where that system has it: on Windows, `/proc/...` would mean `C:\proc\...`.
fn hostname(_argument: &str, _show: &dyn Fn(&str)) -> Result<String, String> {
    let linux_files = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter(|_| cfg!(target_os = "linux"))
        .filter_map(|path| std::fs::read_to_string(path).ok());
    let variables = ["COMPUTERNAME", "HOSTNAME"]
        .iter()
        .filter(|name| cfg!(windows) || **name != "COMPUTERNAME")
        .filter_map(|name| std::env::var(name).ok());
    linux_files
        .chain(variables)
        .map(|name| name.trim().to_string())
        .find(|name| is_host_name(name))
        .or_else(hostname_program)
        .ok_or_else(|| "cannot tell the host name on this system".to_string())
}

/// What the `hostname` program prints (macOS has no `/proc` and sets no variable; it is also the
/// last resort elsewhere). Run with no arguments: with one, it would try to *set* the name.
fn hostname_program() -> Option<String> {
    let output = std::process::Command::new("hostname")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let name = String::from_utf8_lossy(&output.stdout).trim().to_string();
    (output.status.success() && is_host_name(&name)).then_some(name)
}

/// A name worth answering with: one line, not empty (an empty `/etc/hostname`, or one hidden as
/// an empty file, means "not here").
fn is_host_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_callback_name_is_valid_on_the_wire() {
        for (name, _) in CALLBACKS {
            assert_eq!(crate::protocol::check_callback_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn callbacks_are_found_by_name() {
        let uppercase = find("uppercase").expect("uppercase is registered");
        assert_eq!(uppercase("haii", &|_| {}), Ok("HAII".to_string()));
        assert!(find("format_disk").is_none());
    }

    #[test]
    fn hostname_names_this_machine() {
        let name = find("hostname").unwrap()("", &|_| {}).unwrap();
        assert!(is_host_name(&name), "{name:?}");
        // The name the system's own `hostname` program prints, on every system. (Windows writes
        // COMPUTERNAME in capitals and cuts it at 15 characters, the NetBIOS limit.)
        let program = hostname_program().expect("the hostname program answers");
        assert!(
            program.to_uppercase().starts_with(&name.to_uppercase()),
            "{name:?} vs {program:?}"
        );
    }
}
