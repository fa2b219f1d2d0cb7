//! Link-layer frame → the fields a flow needs, parsed with `etherparse`.
//!
//! Decoding never panics and never allocates per packet. Frames that carry no flow
//! (ARP, unknown link types, garbage) are counted by reason. IPv4 fragments are
//! attributed to their flow: the first fragment carries the ports, later fragments are
//! matched to it by (source, destination, protocol, identification).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TcpHeaderSlice, TransportSlice, UdpHeaderSlice};
use gatewatch_proto::flow::protocol;
use hashbrown::HashMap;

use super::{Frame, LinkType};

/// TCP flag bits as they appear in the header's flag byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// One decoded packet: everything the flow table uses, nothing borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub ts_ns: i64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    /// IP header including options / extension headers.
    pub ip_header_len: u16,
    /// TCP header with options, 8 for UDP and ICMP, 0 otherwise.
    pub l4_header_len: u16,
    /// L4 payload bytes according to the IP length fields.
    pub payload_len: u32,
    /// Bytes after the L4 header up to the end of the frame on the wire, link padding
    /// included (how CICFlowMeter 2017 measured payload).
    pub padded_payload_len: u32,
    /// TCP flag byte (0 for other protocols).
    pub tcp_flags: u8,
    /// Raw TCP window field; `None` for other protocols.
    pub tcp_window: Option<u16>,
}

/// Why a frame produced no packet for the flow table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// ARP and other non-IP frames.
    NotIp,
    /// A link type we do not decode.
    UnsupportedLink,
    /// Headers cut short or inconsistent.
    Malformed,
    /// A non-first IPv4 fragment whose first fragment was never seen, or an IPv6 fragment.
    UnmatchedFragment,
}

/// Per-reason counters of what decoding skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub decoded: u64,
    pub not_ip: u64,
    pub unsupported_link: u64,
    pub malformed: u64,
    pub fragments: u64,
    pub unmatched_fragments: u64,
}

impl DecodeStats {
    pub fn skipped(&self) -> u64 {
        self.not_ip + self.unsupported_link + self.malformed + self.unmatched_fragments
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FragmentKey {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    protocol: u8,
    id: u16,
}

/// Fragment trains remembered at most; beyond that the oldest knowledge is dropped.
const MAX_FRAGMENT_TRAINS: usize = 4096;

/// Stateful decoder (fragment matching and counters).
#[derive(Debug, Default)]
pub struct Decoder {
    fragments: HashMap<FragmentKey, (u16, u16), foldhash::fast::RandomState>,
    stats: DecodeStats,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Decodes one frame, counting it under a reason when it carries no flow packet.
    pub fn decode(&mut self, frame: &Frame<'_>) -> Result<PacketMeta, SkipReason> {
        let result = self.decode_inner(frame);
        match result {
            Ok(_) => self.stats.decoded += 1,
            Err(SkipReason::NotIp) => self.stats.not_ip += 1,
            Err(SkipReason::UnsupportedLink) => self.stats.unsupported_link += 1,
            Err(SkipReason::Malformed) => self.stats.malformed += 1,
            Err(SkipReason::UnmatchedFragment) => self.stats.unmatched_fragments += 1,
        }
        result
    }

    fn decode_inner(&mut self, frame: &Frame<'_>) -> Result<PacketMeta, SkipReason> {
        let data = frame.data;
        let sliced = match frame.link {
            LinkType::Ethernet => LaxSlicedPacket::from_ethernet(data).map_err(|_| SkipReason::Malformed)?,
            LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => {
                LaxSlicedPacket::from_ip(data).map_err(|_| SkipReason::Malformed)?
            }
            LinkType::Null => {
                let family = data.get(..4).ok_or(SkipReason::Malformed)?;
                // The family is in the capturing host's byte order; both orders are unambiguous.
                let family = u32::from_le_bytes([family[0], family[1], family[2], family[3]])
                    .min(u32::from_be_bytes([family[0], family[1], family[2], family[3]]));
                match family {
                    2 | 24 | 28 | 30 => LaxSlicedPacket::from_ip(&data[4..]).map_err(|_| SkipReason::Malformed)?,
                    _ => return Err(SkipReason::NotIp),
                }
            }
            LinkType::LinuxSll => {
                let proto = data.get(14..16).ok_or(SkipReason::Malformed)?;
                LaxSlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([proto[0], proto[1]])), &data[16..])
            }
            LinkType::LinuxSll2 => {
                let proto = data.get(0..2).ok_or(SkipReason::Malformed)?;
                let rest = data.get(20..).ok_or(SkipReason::Malformed)?;
                LaxSlicedPacket::from_ether_type(EtherType(u16::from_be_bytes([proto[0], proto[1]])), rest)
            }
            LinkType::Other(_) => return Err(SkipReason::UnsupportedLink),
        };
        let net = match &sliced.net {
            Some(LaxNetSlice::Ipv4(_)) | Some(LaxNetSlice::Ipv6(_)) => {
                sliced.net.as_ref().ok_or(SkipReason::Malformed)?
            }
            Some(LaxNetSlice::Arp(_)) => return Err(SkipReason::NotIp),
            None => {
                return Err(if sliced.stop_err.is_some() {
                    SkipReason::Malformed
                } else {
                    SkipReason::NotIp
                });
            }
        };
        let ip_payload = net.ip_payload_ref().ok_or(SkipReason::NotIp)?;
        // The IP payload's length as the header declares it: a capture cut by its snap length
        // (tcpdump -s 256) holds fewer bytes than the packet had.
        let (src, dst, ip_header_len, declared_len, fragment) = match net {
            LaxNetSlice::Ipv4(v4) => {
                let h = v4.header();
                let frag = if v4.is_payload_fragmented() {
                    Some((
                        FragmentKey {
                            src: h.source_addr(),
                            dst: h.destination_addr(),
                            protocol: h.protocol().0,
                            id: h.identification(),
                        },
                        h.fragments_offset().value(),
                    ))
                } else {
                    None
                };
                (
                    IpAddr::V4(h.source_addr()),
                    IpAddr::V4(h.destination_addr()),
                    u16::from(h.ihl()) * 4,
                    u32::from(h.total_len()).saturating_sub(u32::from(h.ihl()) * 4),
                    frag,
                )
            }
            LaxNetSlice::Ipv6(v6) => {
                let h = v6.header();
                if ip_payload.fragmented {
                    self.stats.fragments += 1;
                    return Err(SkipReason::UnmatchedFragment);
                }
                let ext_len = v6.extensions().slice().len() as u16;
                (
                    IpAddr::V6(Ipv6Addr::from(h.source())),
                    IpAddr::V6(Ipv6Addr::from(h.destination())),
                    40 + ext_len,
                    u32::from(h.payload_length()).saturating_sub(u32::from(ext_len)),
                    None,
                )
            }
            LaxNetSlice::Arp(_) => return Err(SkipReason::NotIp),
        };
        let proto = ip_payload.ip_number.0;
        // Where the IP payload starts in the frame, to measure link padding after it.
        let ip_payload_offset = (ip_payload.payload.as_ptr() as usize).saturating_sub(data.as_ptr() as usize);
        // A whole payload's slice is exact (a header's length can be 0 under segmentation offload).
        let captured_len = ip_payload.payload.len() as u32;
        let ip_payload_len_declared = if ip_payload.incomplete {
            declared_len.max(captured_len)
        } else {
            captured_len
        };
        let wire_after_ip = (frame.wire_len as usize).saturating_sub(ip_payload_offset) as u32;

        let mut meta = PacketMeta {
            ts_ns: frame.ts_ns,
            src,
            dst,
            src_port: 0,
            dst_port: 0,
            protocol: proto,
            ip_header_len,
            l4_header_len: 0,
            payload_len: ip_payload_len_declared,
            padded_payload_len: wire_after_ip.max(ip_payload_len_declared),
            tcp_flags: 0,
            tcp_window: None,
        };

        if let Some((key, offset)) = fragment {
            self.stats.fragments += 1;
            if offset != 0 {
                let (sport, dport) = *self.fragments.get(&key).ok_or(SkipReason::UnmatchedFragment)?;
                meta.src_port = sport;
                meta.dst_port = dport;
                return Ok(meta);
            }
            // First fragment: the transport header is at the start of the payload.
            let payload = ip_payload.payload;
            match proto {
                protocol::TCP => {
                    let tcp = TcpHeaderSlice::from_slice(payload).map_err(|_| SkipReason::Malformed)?;
                    fill_tcp(&mut meta, &tcp);
                }
                protocol::UDP => {
                    let udp = UdpHeaderSlice::from_slice(payload).map_err(|_| SkipReason::Malformed)?;
                    fill_ports(&mut meta, udp.source_port(), udp.destination_port(), 8);
                }
                _ => {}
            }
            if self.fragments.len() >= MAX_FRAGMENT_TRAINS {
                self.fragments.clear();
            }
            self.fragments.insert(key, (meta.src_port, meta.dst_port));
            return Ok(meta);
        }

        match &sliced.transport {
            Some(TransportSlice::Tcp(tcp)) => {
                meta.src_port = tcp.source_port();
                meta.dst_port = tcp.destination_port();
                let header_len = u16::from(tcp.data_offset()) * 4;
                set_l4_header(&mut meta, header_len);
                meta.tcp_flags = tcp.header_slice().get(13).copied().unwrap_or(0);
                meta.tcp_window = Some(tcp.window_size());
            }
            Some(TransportSlice::Udp(udp)) => fill_ports(&mut meta, udp.source_port(), udp.destination_port(), 8),
            Some(TransportSlice::Icmpv4(_)) | Some(TransportSlice::Icmpv6(_)) => set_l4_header(&mut meta, 8),
            Some(_) => {}
            None => {
                if matches!(proto, protocol::TCP | protocol::UDP) {
                    // Transport header cut short or invalid: no ports, so no flow.
                    return Err(SkipReason::Malformed);
                }
                if matches!(proto, protocol::ICMP | protocol::ICMPV6) && ip_payload_len_declared >= 8 {
                    set_l4_header(&mut meta, 8);
                }
            }
        }
        Ok(meta)
    }
}

fn set_l4_header(meta: &mut PacketMeta, header_len: u16) {
    meta.l4_header_len = header_len;
    meta.payload_len = meta.payload_len.saturating_sub(u32::from(header_len));
    meta.padded_payload_len = meta.padded_payload_len.saturating_sub(u32::from(header_len));
}

fn fill_ports(meta: &mut PacketMeta, src_port: u16, dst_port: u16, header_len: u16) {
    meta.src_port = src_port;
    meta.dst_port = dst_port;
    set_l4_header(meta, header_len);
}

fn fill_tcp(meta: &mut PacketMeta, tcp: &TcpHeaderSlice<'_>) {
    fill_ports(
        meta,
        tcp.source_port(),
        tcp.destination_port(),
        u16::from(tcp.data_offset()) * 4,
    );
    meta.tcp_flags = tcp.slice().get(13).copied().unwrap_or(0);
    meta.tcp_window = Some(tcp.window_size());
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    fn tcp_frame(v6: bool, payload: usize) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let ip = if v6 {
            eth.ipv6([0xfd; 16], [0xfe; 16], 64)
        } else {
            eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        };
        let builder = ip.tcp(40_000, 443, 1, 64_000).ack(1);
        let mut out = Vec::new();
        builder
            .write(&mut out, &vec![0xab; payload])
            .expect("a frame written to memory");
        out
    }

    fn frame(data: &[u8], wire_len: usize) -> Frame<'_> {
        Frame {
            ts_ns: 0,
            link: LinkType::Ethernet,
            data,
            wire_len: wire_len as u32,
        }
    }

    #[test]
    fn snap_length_does_not_shorten_payloads() {
        for v6 in [false, true] {
            let whole = tcp_frame(v6, 1200);
            let mut decoder = Decoder::new();
            let full = decoder
                .decode(&frame(&whole, whole.len()))
                .expect("whole frame decodes");
            let cut = decoder
                .decode(&frame(&whole[..256], whole.len()))
                .expect("frame cut at 256 bytes decodes");
            assert_eq!(full.payload_len, 1200, "v6={v6}");
            assert_eq!(
                cut.payload_len, 1200,
                "v6={v6}: the IP header's length, not the captured bytes"
            );
            assert_eq!(
                (cut.ip_header_len, cut.l4_header_len),
                (full.ip_header_len, full.l4_header_len)
            );
        }
    }
}
