//! Packet simulator: synthesises Ethernet/IPv4/TCP|UDP frames of benign IoT traffic and of
//! every attack type, as a gateway's capture would record them, so that the real flow
//! extractor (not a shortcut) turns them into flows. Output is deterministic for a seed and
//! can be written as a nanosecond pcap that Wireshark opens.
//!
//! All addresses are only written into packets; nothing is ever sent.

mod attack;
mod benign;
mod net;
mod payload;
mod tcp;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{LinkType, OwnedFrame, PcapWriter};
use net::{Gen, Net, Out, Span, SEC};

/// Hard ceiling on the frames one simulation may hold in memory.
pub const MAX_PACKETS: u64 = 5_000_000;

/// Longest simulated capture accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most IoT devices besides the target.
pub const MAX_DEVICES: u8 = 20;

/// What a DDoS flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FloodVariant {
    /// TCP SYNs from many source ports to the target's web port.
    Syn,
    /// UDP datagrams of random sizes to random ports.
    Udp,
    /// Complete TCP connections issuing rapid HTTP GETs.
    Http,
}

/// The attack scenarios of the plan, named as on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttackType {
    /// Flood of the target from the attacker and a botnet.
    DdosFlood(FloodVariant),
    /// Slowloris: many connections trickling partial HTTP headers.
    SlowRate,
    /// nmap-style SYN scan of the target's ports.
    PortScan,
    /// Password guessing on port 22.
    BruteForceSsh,
    /// Password guessing on port 21.
    BruteForceFtp,
    /// The infected target calls its C2 server periodically.
    BotnetBeacon,
    /// The infected target uploads a large volume to an external host.
    DataExfiltration,
    /// Cross-site-scripting probes against the target's web UI.
    WebXss,
    /// SQL-injection probes against the target's web UI.
    WebSqli,
    /// Port scan, then SSH brute force, then exfiltration.
    Hybrid,
}

impl AttackType {
    /// Every attack, each flood variant separately, in the plan's order.
    pub const ALL: [AttackType; 12] = [
        AttackType::DdosFlood(FloodVariant::Syn),
        AttackType::DdosFlood(FloodVariant::Udp),
        AttackType::DdosFlood(FloodVariant::Http),
        AttackType::SlowRate,
        AttackType::PortScan,
        AttackType::BruteForceSsh,
        AttackType::BruteForceFtp,
        AttackType::BotnetBeacon,
        AttackType::DataExfiltration,
        AttackType::WebXss,
        AttackType::WebSqli,
        AttackType::Hybrid,
    ];

    /// Parses a scenario name: an attack, or `benign` for none.
    pub fn parse_scenario(name: &str) -> Result<Option<AttackType>, UnknownAttack> {
        if name.trim().eq_ignore_ascii_case("benign") {
            Ok(None)
        } else {
            name.parse().map(Some)
        }
    }

    fn name(self) -> &'static str {
        match self {
            AttackType::DdosFlood(FloodVariant::Syn) => "ddos_flood:syn",
            AttackType::DdosFlood(FloodVariant::Udp) => "ddos_flood:udp",
            AttackType::DdosFlood(FloodVariant::Http) => "ddos_flood:http",
            AttackType::SlowRate => "slow_rate",
            AttackType::PortScan => "port_scan",
            AttackType::BruteForceSsh => "brute_force_ssh",
            AttackType::BruteForceFtp => "brute_force_ftp",
            AttackType::BotnetBeacon => "botnet_beacon",
            AttackType::DataExfiltration => "data_exfiltration",
            AttackType::WebXss => "web_xss",
            AttackType::WebSqli => "web_sqli",
            AttackType::Hybrid => "hybrid",
        }
    }
}

impl fmt::Display for AttackType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for AttackType {
    type Err = UnknownAttack;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        if wanted == "ddos_flood" {
            return Ok(AttackType::DdosFlood(FloodVariant::Syn));
        }
        AttackType::ALL
            .into_iter()
            .find(|a| a.name() == wanted)
            .ok_or_else(|| UnknownAttack { name: s.to_string() })
    }
}

/// A scenario name that is not one of the plan's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown attack type `{name}`; valid: benign, ddos_flood (= ddos_flood:syn), ddos_flood:syn, ddos_flood:udp, \
     ddos_flood:http, slow_rate, port_scan, brute_force_ssh, brute_force_ftp, botnet_beacon, data_exfiltration, \
     web_xss, web_sqli, hybrid"
)]
pub struct UnknownAttack {
    /// The name as given.
    pub name: String,
}

/// Why a simulation was refused or failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    /// Intensity outside 0..=1 (or not a number).
    #[error("intensity must be a number from 0 to 1, got {0}")]
    Intensity(f64),
    /// Zero or longer than [`MAX_DURATION`].
    #[error("duration must be more than 0 and at most 7 days, got {0:?}")]
    Duration(Duration),
    /// A capture starting before 1970 or ending after 2106 (what pcap can hold).
    #[error("the capture must lie between 1970 and 2106 (start {0} ns)")]
    Start(i64),
    /// More than [`MAX_DEVICES`] extra devices.
    #[error("at most {max} IoT devices besides the target, got {got}", max = MAX_DEVICES)]
    Devices {
        /// The number asked for.
        got: u8,
    },
    /// Addresses that collide, are not unicast, or lie off the LAN where they must be on it.
    #[error("bad addresses: {0}")]
    Addresses(String),
    /// No attack and no benign traffic.
    #[error("nothing to simulate: no attack and benign traffic switched off")]
    Nothing,
    /// The simulation would hold more than [`MAX_PACKETS`] frames.
    #[error(
        "the simulation would produce about {estimated} packets, more than the limit of {limit}; \
         lower the intensity or the duration"
    )]
    TooManyPackets { estimated: u64, limit: u64 },
    /// A frame could not be encoded (a bug, not an input problem).
    #[error("could not build a packet: {0}")]
    Build(String),
}

/// What to simulate. `SimConfig::default()` is 30 s of benign traffic around 192.168.1.20.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// The attack, or `None` for benign traffic only.
    pub attack: Option<AttackType>,
    /// 0 (mildest) to 1 (strongest): scales the attack's rate or volume.
    pub intensity: f64,
    /// Length of the capture; the attack starts after a tenth of it (at most 5 s).
    pub duration: Duration,
    /// The attacked IoT device; must be on the gateway's /24.
    pub target: Ipv4Addr,
    /// Same seed and config, byte-identical frames.
    pub seed: u64,
    /// Time of the capture's start, ns since the Unix epoch.
    pub start_ns: i64,
    /// Include background IoT traffic (MQTT, CoAP, camera pulls, DNS, NTP).
    pub benign: bool,
    /// Source of scans, brute force, slowloris and web attacks; the first of the DDoS
    /// sources (the other bots get addresses in 10.128.0.0/9).
    pub attacker: Ipv4Addr,
    /// The router the capture runs on; also the DNS resolver. Its /24 is the LAN.
    pub gateway: Ipv4Addr,
    /// Local hub/NVR that polls sensors over CoAP and pulls camera snapshots.
    pub hub: Ipv4Addr,
    /// MQTT broker the devices publish to.
    pub broker: Ipv4Addr,
    /// NTP server the devices sync with.
    pub ntp_server: Ipv4Addr,
    /// Command-and-control / drop host of botnet_beacon, data_exfiltration and hybrid.
    pub c2: Ipv4Addr,
    /// IoT devices besides the target (addresses follow the target's).
    pub devices: u8,
}

/// Classic pcap keeps seconds in 32 bits.
const LAST_PCAP_NS: i64 = u32::MAX as i64 * SEC;

/// 2026-01-01T00:00:00Z, a fixed default so output does not depend on the clock.
const DEFAULT_START_NS: i64 = 1_767_225_600 * SEC;

impl SimConfig {
    /// Defaults around `target`: gateway .1, hub .10 and attacker .66 of its /24.
    pub fn new(target: Ipv4Addr) -> Self {
        let [a, b, c, _] = target.octets();
        SimConfig {
            attack: None,
            intensity: 0.5,
            duration: Duration::from_secs(30),
            target,
            seed: 1,
            start_ns: DEFAULT_START_NS,
            benign: true,
            attacker: Ipv4Addr::new(a, b, c, 66),
            gateway: Ipv4Addr::new(a, b, c, 1),
            hub: Ipv4Addr::new(a, b, c, 10),
            broker: Ipv4Addr::new(10, 20, 0, 5),
            ntp_server: Ipv4Addr::new(10, 20, 0, 123),
            c2: Ipv4Addr::new(10, 99, 0, 66),
            devices: 4,
        }
    }

    fn validate(&self) -> Result<(), SimError> {
        if !(0.0..=1.0).contains(&self.intensity) {
            return Err(SimError::Intensity(self.intensity));
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(SimError::Duration(self.duration));
        }
        if self.start_ns < 0 || self.span().end > LAST_PCAP_NS {
            return Err(SimError::Start(self.start_ns));
        }
        if self.devices > MAX_DEVICES {
            return Err(SimError::Devices { got: self.devices });
        }
        if self.attack.is_none() && !self.benign {
            return Err(SimError::Nothing);
        }
        let named = [
            ("target", self.target),
            ("attacker", self.attacker),
            ("gateway", self.gateway),
            ("hub", self.hub),
            ("broker", self.broker),
            ("ntp_server", self.ntp_server),
            ("c2", self.c2),
        ];
        for (i, (name, ip)) in named.iter().enumerate() {
            if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
                return Err(SimError::Addresses(format!(
                    "{name} {ip} is not a unicast host address"
                )));
            }
            if let Some((other, _)) = named[..i].iter().find(|(_, o)| o == ip) {
                return Err(SimError::Addresses(format!("{other} and {name} are both {ip}")));
            }
        }
        let lan = &self.gateway.octets()[..3];
        for (name, ip) in [("target", self.target), ("hub", self.hub)] {
            if &ip.octets()[..3] != lan || matches!(ip.octets()[3], 0 | 255) {
                return Err(SimError::Addresses(format!(
                    "{name} {ip} is not a host on the gateway's LAN {}.{}.{}.0/24",
                    lan[0], lan[1], lan[2]
                )));
            }
        }
        Ok(())
    }

    /// The other IoT devices: the addresses after the target's on its /24, skipping taken ones.
    fn other_devices(&self) -> Vec<Ipv4Addr> {
        let [a, b, c, d] = self.target.octets();
        let taken = [
            self.target,
            self.attacker,
            self.gateway,
            self.hub,
            self.broker,
            self.ntp_server,
            self.c2,
        ];
        (1..=253u16)
            .map(|k| Ipv4Addr::new(a, b, c, ((u16::from(d) + k - 1) % 254 + 1) as u8))
            .filter(|ip| !taken.contains(ip))
            .take(usize::from(self.devices))
            .collect()
    }

    fn span(&self) -> Span {
        let len = i64::try_from(self.duration.as_nanos()).unwrap_or(i64::MAX);
        Span {
            start: self.start_ns,
            end: self.start_ns.saturating_add(len),
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig::new(Ipv4Addr::new(192, 168, 1, 20))
    }
}

/// One stage of an attack (hybrid has three, the others one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttackPhase {
    /// What runs in this phase.
    pub attack: AttackType,
    /// Addresses at one end of every flow of this phase.
    pub attackers: Vec<IpAddr>,
    /// Inclusive, ns since the epoch.
    pub window_ns: (i64, i64),
}

/// Ground truth for labelling: a flow is attack traffic iff it has one of `attackers` at
/// either end and overlaps `window_ns` (exactly what `flow::label::Labeler` checks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroundTruth {
    /// The simulated attack, `None` for benign only.
    pub attack: Option<AttackType>,
    /// Every address that only attack traffic uses (empty without an attack).
    pub attackers: Vec<IpAddr>,
    /// The attacked (or infected) device.
    pub victim: IpAddr,
    /// The whole attack, inclusive, ns since the epoch; `None` without an attack.
    pub window_ns: Option<(i64, i64)>,
    /// The stages in time order (three for hybrid, one otherwise, none without attack).
    pub phases: Vec<AttackPhase>,
}

/// Result of [`simulate`].
#[derive(Debug, Clone)]
pub struct Simulation {
    /// Ethernet frames sorted by time (ties keep generation order).
    pub frames: Vec<OwnedFrame>,
    /// The attack's main remote party: the attacker, or the C2 for beacon and exfiltration.
    pub attacker: Option<IpAddr>,
    /// Which flows are attack traffic.
    pub truth: GroundTruth,
}

/// Runs the simulation. Deterministic: the same config gives byte-identical frames.
///
/// # Errors
/// Invalid settings, or a simulation larger than [`MAX_PACKETS`] (refused before any
/// packet is built when the estimate is over).
pub fn simulate(cfg: &SimConfig) -> Result<Simulation, SimError> {
    cfg.validate()?;
    let span = cfg.span();
    let devices = cfg.other_devices();
    let attack_span = attack::span(span);
    let estimated = cfg
        .attack
        .map_or(0, |a| attack::estimate(a, cfg.intensity, attack_span))
        + if cfg.benign {
            benign::estimate(devices.len(), span)
        } else {
            0
        };
    if estimated > MAX_PACKETS {
        return Err(SimError::TooManyPackets {
            estimated,
            limit: MAX_PACKETS,
        });
    }
    let net = Net::new(cfg.gateway);
    // Reserve what the estimate expects so the vector does not double past the need.
    let mut out = Out::new(span.end, MAX_PACKETS, estimated + estimated / 8);
    if cfg.benign {
        let mut gen = Gen {
            net: &net,
            out: &mut out,
            rng: stream(cfg.seed, 1),
        };
        benign::generate(&mut gen, cfg, &devices, span)?;
    }
    let mut truth = GroundTruth {
        attack: cfg.attack,
        attackers: Vec::new(),
        victim: IpAddr::V4(cfg.target),
        window_ns: None,
        phases: Vec::new(),
    };
    if let Some(kind) = cfg.attack {
        // Its own stream, so the attack's bytes do not depend on the benign settings.
        let mut gen = Gen {
            net: &net,
            out: &mut out,
            rng: stream(cfg.seed, 2),
        };
        truth.phases = attack::generate(&mut gen, cfg, kind, attack_span)?;
        for phase in &truth.phases {
            for a in &phase.attackers {
                if !truth.attackers.contains(a) {
                    truth.attackers.push(*a);
                }
            }
        }
        truth.window_ns = Some((attack_span.start, attack_span.end));
    }
    let mut frames = out.into_frames();
    frames.sort_by_key(|f| f.ts_ns);
    Ok(Simulation {
        frames,
        attacker: truth.attackers.first().copied(),
        truth,
    })
}

fn stream(seed: u64, id: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(id);
    rng
}

/// Writes `frames` as a classic pcap with nanosecond timestamps (magic a1b23c4d), snap
/// length 65535, link type of the first frame (Ethernet when empty). Pass a buffered writer.
///
/// # Errors
/// I/O errors, frames of mixed link types, timestamps outside 1970..2106.
pub fn write_pcap<W: Write>(w: W, frames: &[OwnedFrame]) -> io::Result<()> {
    let link = frames.first().map_or(LinkType::Ethernet, |f| f.link);
    let mut pcap = PcapWriter::new(w, link, 65_535)?;
    for frame in frames {
        pcap.write(&frame.as_frame())?;
    }
    pcap.into_inner().flush()
}
