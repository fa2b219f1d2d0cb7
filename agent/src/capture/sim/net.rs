//! The simulated network as the gateway's capture sees it: hosts with the MAC, TTL and
//! round-trip time their packets show there, frame encoding, and the frame sink.

use std::net::Ipv4Addr;

use etherparse::icmpv4::DestUnreachableHeader;
use etherparse::{IpHeaders, Ipv4Extensions, Ipv4Header, PacketBuilder, TcpHeader};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::SimError;
use crate::capture::{LinkType, OwnedFrame};

pub(crate) const US: i64 = 1_000;
pub(crate) const MS: i64 = 1_000_000;
pub(crate) const SEC: i64 = 1_000_000_000;

/// A time range in ns since the epoch, end exclusive for generators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: i64,
    pub end: i64,
}

impl Span {
    pub fn secs(self) -> f64 {
        (self.end - self.start) as f64 / SEC as f64
    }

    /// The part from fraction `from` to fraction `to` of this span.
    pub fn part(self, from: f64, to: f64) -> Span {
        let len = (self.end - self.start) as f64;
        Span {
            start: self.start + (len * from) as i64,
            end: self.start + (len * to) as i64,
        }
    }
}

/// A host as seen on the captured LAN link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Host {
    pub ip: Ipv4Addr,
    /// Its own MAC on the LAN; the gateway's for hosts beyond it.
    pub mac: [u8; 6],
    /// TTL its packets carry when they pass the capture point.
    pub ttl: u8,
    /// Round trip from the capture point to the host and back.
    pub rtt_ns: i64,
}

#[derive(Debug)]
pub(crate) struct Net {
    gateway: Ipv4Addr,
    gateway_mac: [u8; 6],
}

impl Net {
    pub fn new(gateway: Ipv4Addr) -> Self {
        Net {
            gateway,
            gateway_mac: mac_of(gateway),
        }
    }

    pub fn host(&self, ip: Ipv4Addr) -> Host {
        let h = mix(ip);
        if ip == self.gateway {
            Host {
                ip,
                mac: self.gateway_mac,
                ttl: 64,
                rtt_ns: 120 * US,
            }
        } else if ip.octets()[..3] == self.gateway.octets()[..3] {
            // Wi-Fi and wired LAN devices: 0.4-3 ms.
            Host {
                ip,
                mac: mac_of(ip),
                ttl: 64,
                rtt_ns: 400 * US + (h % 2_600) as i64 * US,
            }
        } else {
            // Beyond the router: 6-15 hops, 15-60 ms.
            Host {
                ip,
                mac: self.gateway_mac,
                ttl: 64 - 6 - (h % 10) as u8,
                rtt_ns: 15 * MS + (h % 45_000) as i64 * US,
            }
        }
    }
}

/// Locally administered MAC carrying the IPv4 address, so Wireshark shows who is who.
fn mac_of(ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = ip.octets();
    [0x02, 0x47, a, b, c, d]
}

/// Stable per-address spread for RTTs and hop counts.
fn mix(ip: Ipv4Addr) -> u32 {
    let x = u32::from(ip).wrapping_mul(0x9E37_79B1);
    x ^ (x >> 15)
}

/// Collects frames; drops those after the capture's end, refuses more than `limit`.
#[derive(Debug)]
pub(crate) struct Out {
    frames: Vec<OwnedFrame>,
    end_ns: i64,
    limit: u64,
}

impl Out {
    pub fn new(end_ns: i64, limit: u64, capacity: u64) -> Self {
        Out {
            frames: Vec::with_capacity(usize::try_from(capacity.min(limit)).unwrap_or(0)),
            end_ns,
            limit,
        }
    }

    pub fn push(&mut self, ts_ns: i64, data: Vec<u8>) -> Result<(), SimError> {
        if ts_ns >= self.end_ns {
            // The capture has stopped; the conversation goes on unseen.
            return Ok(());
        }
        if self.frames.len() as u64 >= self.limit {
            return Err(SimError::TooManyPackets {
                estimated: self.limit + 1,
                limit: self.limit,
            });
        }
        self.frames.push(OwnedFrame {
            ts_ns,
            link: LinkType::Ethernet,
            data,
        });
        Ok(())
    }

    pub fn into_frames(self) -> Vec<OwnedFrame> {
        self.frames
    }
}

/// What a generator works with.
#[derive(Debug)]
pub(crate) struct Gen<'a> {
    pub net: &'a Net,
    pub out: &'a mut Out,
    pub rng: ChaCha8Rng,
}

impl Gen<'_> {
    pub fn host(&self, ip: Ipv4Addr) -> Host {
        self.net.host(ip)
    }

    /// `base` scaled by a uniform factor in 1 ± `frac`.
    pub fn jitter(&mut self, base_ns: i64, frac: f64) -> i64 {
        (base_ns as f64 * self.rng.gen_range(1.0 - frac..=1.0 + frac)) as i64
    }

    /// Uniform in `lo..=hi` ns.
    pub fn between(&mut self, lo_ns: i64, hi_ns: i64) -> i64 {
        self.rng.gen_range(lo_ns..=hi_ns)
    }

    /// Exponential gap (Poisson arrivals) with `rate` events per second; at least 1 ns.
    pub fn exp_gap(&mut self, rate: f64) -> i64 {
        let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
        ((-u.ln() / rate) * SEC as f64).max(1.0) as i64
    }

    /// Builds and records one UDP datagram.
    pub fn push_udp(&mut self, at: i64, u: Udp<'_>, payload: &[u8]) -> Result<(), SimError> {
        let frame = udp_frame(u, payload)?;
        self.out.push(at, frame)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.rng.fill(v.as_mut_slice());
        v
    }
}

/// Linear interpolation of a rate between intensity 0 and 1.
pub(crate) fn lerp(lo: f64, hi: f64, intensity: f64) -> f64 {
    lo + (hi - lo) * intensity
}

/// Linux-style ephemeral port sequence of one host.
#[derive(Debug)]
pub(crate) struct Ephemeral(u16);

impl Ephemeral {
    pub fn new(rng: &mut ChaCha8Rng) -> Self {
        Ephemeral(rng.gen_range(32_768..=60_999))
    }

    pub fn next_port(&mut self) -> u16 {
        let p = self.0;
        self.0 = if p >= 60_999 { 32_768 } else { p + 1 };
        p
    }
}

fn ip_header(src: &Host, dst: &Host, ip_id: u16, dont_fragment: bool) -> IpHeaders {
    IpHeaders::Ipv4(
        Ipv4Header {
            identification: ip_id,
            dont_fragment,
            time_to_live: src.ttl,
            source: src.ip.octets(),
            destination: dst.ip.octets(),
            ..Default::default()
        },
        Ipv4Extensions::default(),
    )
}

pub(crate) fn build_err(e: impl std::fmt::Display) -> SimError {
    SimError::Build(e.to_string())
}

/// Ethernet/IPv4/TCP frame with lengths and checksums filled in.
pub(crate) fn tcp_frame(
    src: &Host,
    dst: &Host,
    ip_id: u16,
    dont_fragment: bool,
    tcp: TcpHeader,
    payload: &[u8],
) -> Result<Vec<u8>, SimError> {
    let b = PacketBuilder::ethernet2(src.mac, dst.mac)
        .ip(ip_header(src, dst, ip_id, dont_fragment))
        .tcp_header(tcp);
    let mut buf = Vec::with_capacity(b.size(payload.len()));
    b.write_to_vec(&mut buf, payload).map_err(build_err)?;
    Ok(buf)
}

/// A UDP datagram between two ports of two hosts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Udp<'a> {
    pub src: &'a Host,
    pub dst: &'a Host,
    pub sport: u16,
    pub dport: u16,
    pub ip_id: u16,
    pub dont_fragment: bool,
}

pub(crate) fn udp_frame(u: Udp<'_>, payload: &[u8]) -> Result<Vec<u8>, SimError> {
    let b = PacketBuilder::ethernet2(u.src.mac, u.dst.mac)
        .ip(ip_header(u.src, u.dst, u.ip_id, u.dont_fragment))
        .udp(u.sport, u.dport);
    let mut buf = Vec::with_capacity(b.size(payload.len()));
    b.write_to_vec(&mut buf, payload).map_err(build_err)?;
    Ok(buf)
}

/// ICMP port unreachable quoting the offending frame's IP datagram (as Linux does, up to
/// 576 bytes in all).
pub(crate) fn icmp_port_unreachable(
    src: &Host,
    dst: &Host,
    ip_id: u16,
    offending_frame: &[u8],
) -> Result<Vec<u8>, SimError> {
    const ETH: usize = 14;
    let quoted = &offending_frame[ETH.min(offending_frame.len())..];
    let quoted = &quoted[..quoted.len().min(576 - 28)];
    let b = PacketBuilder::ethernet2(src.mac, dst.mac)
        .ip(ip_header(src, dst, ip_id, false))
        .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Port,
        ));
    let mut buf = Vec::with_capacity(b.size(quoted.len()));
    b.write_to_vec(&mut buf, quoted).map_err(build_err)?;
    Ok(buf)
}
