//! Who is connected: the registry of peers, and the door rules that keep a class's slots for its
//! students (`--max-clients`, `--max-per-address`, addresses the operator kicked out), with a log
//! that says each refusal once a second per source, not once per connection.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::ServerConfig;
use super::limits::Expired;
use super::peer::Peer;

/// How long an address the operator kicked out is refused.
pub const KICK_BAN: Duration = Duration::from_secs(10 * 60);

/// Sources whose refusals are being counted at once; past it, one line counts all the others.
const SOURCES_COUNTED: usize = 1024;

/// Where a connection comes from, as the per-address rules see it: an IPv4 address, or the /64
/// an IPv6 address belongs to. One machine gets a whole /64 on most networks and may pick any
/// address in it, so counting IPv6 addresses one by one would be no limit at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source(IpAddr);

impl Source {
    pub fn of(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(v4) => Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let mut segments = v6.segments();
                    segments[4..].fill(0);
                    Source(IpAddr::V6(segments.into()))
                }
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// The connected clients, and the door's memory.
#[derive(Default)]
pub(super) struct Registry {
    /// Keyed by number (`client-7` is 7), so that `list` shows them in the order they came.
    pub(super) peers: BTreeMap<u64, Arc<Peer>>,
    /// How many connections each source has, for `--max-per-address`.
    per_source: HashMap<Source, usize>,
    /// Sources the operator kicked out, and until when they are refused.
    banned: HashMap<Source, Instant>,
    refusals: Refusals,
}

/// Why a connection is turned away: what the client is told, and what the log says.
pub(super) struct Refusal {
    pub(super) told: String,
    pub(super) why: String,
}

impl Registry {
    /// Puts a peer in the registry, unless the server is full, its source has its share, or
    /// its source was kicked out.
    pub(super) fn enter(&mut self, peer: &Arc<Peer>, config: &ServerConfig) -> Result<(), Refusal> {
        let source = Source::of(peer.address.ip());
        if let Some(&until) = self.banned.get(&source) {
            let now = Instant::now();
            if now < until {
                let left = minutes(until - now);
                return Err(Refusal {
                    told: format!("your address is refused for {left} (kicked by the operator)"),
                    why: format!("{source} was kicked out (refused for {left} more)"),
                });
            }
            self.banned.remove(&source);
        }
        if self.peers.len() >= config.max_clients {
            return Err(Refusal {
                told: "server full".into(),
                why: format!("server full ({} clients)", config.max_clients),
            });
        }
        let from_here = self.per_source.get(&source).copied().unwrap_or(0);
        if config.max_per_address > 0 && from_here >= config.max_per_address {
            let most = config.max_per_address;
            return Err(Refusal {
                told: format!("too many connections from your address (at most {most})"),
                why: format!(
                    "{source} already has {from_here} connections (--max-per-address {most})"
                ),
            });
        }
        self.per_source.insert(source, from_here + 1);
        self.peers.insert(peer.number, peer.clone());
        Ok(())
    }

    /// Takes a peer out (once; a second call does nothing).
    pub(super) fn leave(&mut self, peer: &Peer) {
        if self.peers.remove(&peer.number).is_some() {
            let source = Source::of(peer.address.ip());
            match self.per_source.get(&source).copied() {
                Some(count) if count > 1 => {
                    self.per_source.insert(source, count - 1);
                }
                _ => {
                    self.per_source.remove(&source);
                }
            }
        }
    }

    /// Refuses `source` for [`KICK_BAN`]; returns its connected peers, for the caller to drop.
    pub(super) fn ban(&mut self, source: Source) -> Vec<Arc<Peer>> {
        self.banned.insert(source, Instant::now() + KICK_BAN);
        self.peers
            .values()
            .filter(|peer| Source::of(peer.address.ip()) == source)
            .cloned()
            .collect()
    }

    /// The counts of a second of refusals that ended, if no refusal came since to print them.
    pub(super) fn refusal_summaries_due(&mut self) -> Vec<String> {
        let refusals = &mut self.refusals;
        if refusals
            .started
            .is_none_or_expired(Instant::now(), Duration::from_secs(1))
        {
            refusals.started = None;
            return refusals.summaries();
        }
        Vec::new()
    }

    /// Refusals were counted that no summary has printed yet.
    pub(super) fn refusals_owed(&self) -> bool {
        self.refusals.started.is_some()
    }

    /// Decides whether a refusal of `source` gets a log line of its own now. Returns the lines
    /// to print: nothing while this source was already refused this second, else this
    /// refusal's line, after the counts of the second that ended.
    pub(super) fn log_refusal(&mut self, source: Source, line: String) -> Vec<String> {
        self.refusals.note(source, line, Instant::now())
    }
}

/// The log's memory of refused connections: the first of each source in a second is printed,
/// the rest counted and summarised when the second is over.
#[derive(Default)]
struct Refusals {
    started: Option<Instant>,
    counted: HashMap<Source, u64>,
    /// Refusals of sources past [`SOURCES_COUNTED`] in this second.
    others: u64,
}

impl Refusals {
    fn note(&mut self, source: Source, line: String, now: Instant) -> Vec<String> {
        let mut lines = Vec::new();
        if self.started.is_none_or_expired(now, Duration::from_secs(1)) {
            lines.extend(self.summaries());
            self.started = Some(now);
        }
        let sources = self.counted.len();
        match self.counted.get_mut(&source) {
            Some(count) => *count += 1,
            None if sources >= SOURCES_COUNTED => self.others += 1,
            None => {
                self.counted.insert(source, 0);
                lines.push(line);
            }
        }
        lines
    }

    /// One line per source that was refused more than once in the second that ended.
    fn summaries(&mut self) -> Vec<String> {
        let mut sources: Vec<(Source, u64)> = self.counted.drain().collect();
        sources.sort();
        let mut lines: Vec<String> = sources
            .into_iter()
            .filter(|&(_, more)| more > 0)
            .map(|(source, more)| {
                format!("[log] {more} more connections from {source} refused in that second")
            })
            .collect();
        if self.others > 0 {
            lines.push(format!(
                "[log] {} more connections refused from other addresses in that second",
                self.others
            ));
            self.others = 0;
        }
        lines
    }
}

/// `10 min`, `3 min`, `45 s`: how long a ban has left.
fn minutes(left: Duration) -> String {
    if left >= Duration::from_secs(60) {
        format!("{} min", left.as_secs().div_ceil(60))
    } else {
        format!("{} s", left.as_secs().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_slash_64_is_one_source_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(Source::of(mapped).to_string(), "10.0.0.7");
    }

    #[test]
    fn refusals_are_one_line_per_source_per_second_then_a_count() {
        let start = Instant::now();
        let mut refusals = Refusals::default();
        let one = Source::of("10.0.0.1".parse().unwrap());
        let two = Source::of("10.0.0.2".parse().unwrap());
        let mut printed = Vec::new();
        for _ in 0..500 {
            printed.extend(refusals.note(one, "refused one".into(), start));
            printed.extend(refusals.note(two, "refused two".into(), start));
        }
        assert_eq!(printed, vec!["refused one", "refused two"]);
        let next = start + Duration::from_secs(1);
        assert_eq!(
            refusals.note(one, "refused one".into(), next),
            vec![
                "[log] 499 more connections from 10.0.0.1 refused in that second",
                "[log] 499 more connections from 10.0.0.2 refused in that second",
                "refused one",
            ]
        );
    }

    #[test]
    fn a_ban_says_how_long_it_has_left() {
        assert_eq!(minutes(KICK_BAN), "10 min");
        assert_eq!(minutes(Duration::from_secs(61)), "2 min");
        assert_eq!(minutes(Duration::from_millis(300)), "1 s");
    }
}
