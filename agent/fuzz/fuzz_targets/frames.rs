//! Frames of any link type, with any timestamps, through decode and the flow table.
#![no_main]

use gatewatch_agent::capture::{Decoder, Frame, LinkType};
use gatewatch_agent::flow::{FlowConfig, FlowTable, Mode};
use libfuzzer_sys::fuzz_target;

const LINKS: [LinkType; 8] = [
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Null,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Other(147),
];

// Input: [mode][per frame: link (1) | ts delta µs (2) | len (2) | bytes]...
fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mode = if mode & 1 == 0 { Mode::Correct } else { Mode::Cic2017 };
    let mut decoder = Decoder::new();
    let mut table = FlowTable::new(FlowConfig { mode, max_live_flows: 32, ..FlowConfig::default() });
    let mut ts: i64 = 1_600_000_000_000_000_000;
    while rest.len() >= 5 {
        let link = LINKS[usize::from(rest[0]) % LINKS.len()];
        ts += i64::from(u16::from_le_bytes([rest[1], rest[2]])) * 50_000 - 100_000;
        let len = usize::from(u16::from_le_bytes([rest[3], rest[4]])).min(rest.len() - 5);
        let bytes = &rest[5..5 + len];
        rest = &rest[5 + len..];
        let frame = Frame { ts_ns: ts, link, data: bytes, wire_len: (len as u32).wrapping_add(u32::from(rest.first().copied().unwrap_or(0))) };
        if let Ok(pkt) = decoder.decode(&frame) {
            table.process(&pkt, &mut |_| {});
        }
    }
    table.flush(&mut |_| {});
    let stats = table.stats();
    assert_eq!(stats.live, 0);
    assert_eq!(stats.flows_emitted + stats.below_min_packets, stats.flows_started);
});
