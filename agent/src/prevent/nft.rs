//! Enforcement with nftables: one table of our own (`inet gatewatch`) whose sets hold the
//! blocked peers, quarantined devices and rate-limited devices, each element with a timeout
//! so that every block expires in the kernel even if the agent dies. Protected addresses (the
//! hub, management networks) are accepted before any of it. The table is replaced at start
//! and removed at a clean stop: a stopped agent enforces nothing.
//!
//! The `nft` program does the work (`nft -f -`, one atomic transaction per call).

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use gatewatch_models::data::Network;

/// The table's name in the `inet` family.
pub const TABLE: &str = "gatewatch";

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run {program}: {source}. Install nftables or set prevent.nft")]
    Spawn { program: String, source: std::io::Error },
    #[error("nft refused the change: {0}")]
    Refused(String),
}

/// What a set element does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Traffic to and from the address is dropped.
    Block,
    /// Same as a block, for a device of ours.
    Quarantine,
    /// The address keeps this many packets per second in each direction.
    RateLimit { pps: u32 },
}

#[derive(Debug)]
pub struct Nft {
    /// The program and its leading arguments, e.g. `["nft"]`, or `["ip", "netns", "exec",
    /// "ns1", "nft"]` in tests.
    command: Vec<String>,
    /// Rates whose sets and rules exist already.
    rates: BTreeSet<u32>,
}

fn family(ip: IpAddr) -> (&'static str, char) {
    if ip.is_ipv4() {
        ("ip", '4')
    } else {
        ("ip6", '6')
    }
}

/// The networks of `nets` that no other one covers (a duplicate counts once): nftables
/// refuses an interval set whose elements overlap, e.g. the broker's 127.0.0.1 and loopback.
fn disjoint(nets: &[Network]) -> Vec<&Network> {
    nets.iter()
        .enumerate()
        .filter(|(i, n)| {
            !nets
                .iter()
                .enumerate()
                .any(|(j, m)| j != *i && m.covers(n) && (!n.covers(m) || j < *i))
        })
        .map(|(_, n)| n)
        .collect()
}

impl Nft {
    /// Replaces our table with an empty one protecting `protected`.
    pub fn install(command: Vec<String>, protected: &[Network]) -> Result<Nft, NftError> {
        let nft = Nft {
            command,
            rates: BTreeSet::new(),
        };
        let (v4, v6): (Vec<&Network>, Vec<&Network>) = disjoint(protected).into_iter().partition(|n| n.is_ipv4());
        let elements = |nets: &[&Network]| {
            if nets.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
                format!(" elements = {{ {} }};", list.join(", "))
            }
        };
        let script = format!(
            "table inet {TABLE} {{}}\n\
             delete table inet {TABLE}\n\
             table inet {TABLE} {{\n\
             set protected4 {{ type ipv4_addr; flags interval;{} }}\n\
             set protected6 {{ type ipv6_addr; flags interval;{} }}\n\
             set blocked4 {{ type ipv4_addr; flags timeout; }}\n\
             set blocked6 {{ type ipv6_addr; flags timeout; }}\n\
             set quarantined4 {{ type ipv4_addr; flags timeout; }}\n\
             set quarantined6 {{ type ipv6_addr; flags timeout; }}\n\
             chain enforce {{\n\
             ip saddr @protected4 accept\n ip daddr @protected4 accept\n\
             ip6 saddr @protected6 accept\n ip6 daddr @protected6 accept\n\
             ip saddr @blocked4 drop\n ip daddr @blocked4 drop\n\
             ip6 saddr @blocked6 drop\n ip6 daddr @blocked6 drop\n\
             ip saddr @quarantined4 drop\n ip daddr @quarantined4 drop\n\
             ip6 saddr @quarantined6 drop\n ip6 daddr @quarantined6 drop\n\
             }}\n\
             chain input {{ type filter hook input priority filter - 5; policy accept; jump enforce; }}\n\
             chain forward {{ type filter hook forward priority filter - 5; policy accept; jump enforce; }}\n\
             }}\n",
            elements(&v4),
            elements(&v6),
        );
        nft.run(&script)?;
        Ok(nft)
    }

    /// Applies `measure` to `ip` for `duration` (a running one starts over).
    pub fn apply(&mut self, measure: Measure, ip: IpAddr, duration: Duration) -> Result<(), NftError> {
        let (_, v) = family(ip);
        let secs = duration.as_secs().max(1);
        let mut script = String::new();
        let set = match measure {
            Measure::Block => format!("blocked{v}"),
            Measure::Quarantine => format!("quarantined{v}"),
            Measure::RateLimit { pps } => {
                if !self.rates.contains(&pps) {
                    script.push_str(&rate_sets(pps));
                }
                format!("limited{v}_{pps}")
            }
        };
        // add (a no-op if present), delete, add: the timeout starts over either way.
        script.push_str(&format!(
            "add element inet {TABLE} {set} {{ {ip} timeout {secs}s }}\n\
             delete element inet {TABLE} {set} {{ {ip} }}\n\
             add element inet {TABLE} {set} {{ {ip} timeout {secs}s }}\n"
        ));
        self.run(&script)?;
        if let Measure::RateLimit { pps } = measure {
            self.rates.insert(pps);
        }
        Ok(())
    }

    /// Removes our table (and so every block).
    pub fn remove(&mut self) -> Result<(), NftError> {
        self.rates.clear();
        self.run(&format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n"))
    }

    fn run(&self, script: &str) -> Result<(), NftError> {
        let (program, args) = self
            .command
            .split_first()
            .map_or(("nft", &[][..]), |(p, a)| (p.as_str(), a));
        let spawn_error = |source| NftError::Spawn {
            program: program.to_string(),
            source,
        };
        let mut child = Command::new(program)
            .args(args)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).map_err(spawn_error)?;
        }
        let out = child.wait_with_output().map_err(spawn_error)?;
        if out.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(NftError::Refused(stderr.trim().chars().take(500).collect()))
        }
    }
}

/// The sets and rules of one rate: members keep `pps` packets per second each way; the
/// meters remember each member's rate for a minute after its last packet.
fn rate_sets(pps: u32) -> String {
    let mut s = String::new();
    for (v, ip, addr) in [('4', "ip", "ipv4_addr"), ('6', "ip6", "ipv6_addr")] {
        s.push_str(&format!(
            "add set inet {TABLE} limited{v}_{pps} {{ type {addr}; flags timeout; }}\n\
             add set inet {TABLE} meter{v}s_{pps} {{ type {addr}; flags dynamic,timeout; timeout 1m; }}\n\
             add set inet {TABLE} meter{v}d_{pps} {{ type {addr}; flags dynamic,timeout; timeout 1m; }}\n\
             add rule inet {TABLE} enforce {ip} saddr @limited{v}_{pps} update @meter{v}s_{pps} {{ {ip} saddr limit rate over {pps}/second }} drop\n\
             add rule inet {TABLE} enforce {ip} daddr @limited{v}_{pps} update @meter{v}d_{pps} {{ {ip} daddr limit rate over {pps}/second }} drop\n"
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_sets_hold_no_overlapping_intervals() {
        let nets: Vec<Network> = [
            "127.0.0.1/32",
            "10.0.0.1/32",
            "127.0.0.1/32",
            "127.0.0.0/8",
            "::1/128",
            "fd00::/8",
        ]
        .iter()
        .map(|s| s.parse().expect("network"))
        .collect();
        let kept: Vec<String> = disjoint(&nets).iter().map(|n| n.to_string()).collect();
        assert_eq!(kept, ["10.0.0.1/32", "127.0.0.0/8", "::1/128", "fd00::/8"]);
    }
}
