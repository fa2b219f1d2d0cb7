//! Property-based fuzzing of everything that reads outside input: the capture file
//! reader, frame decoding for every link type, and the flow table behind them. Inputs
//! are random bytes and mutated real frames/files; the property is "no panic, and the
//! counters add up". `GATEWATCH_FUZZ_CASES` raises the case count for long runs.

use std::path::Path;
use std::sync::OnceLock;

use gatewatch_agent::capture::{CaptureFile, Decoder, Frame, LinkType};
use gatewatch_agent::flow::{FlowConfig, FlowTable, Mode};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("GATEWATCH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

const LINKS: [LinkType; 8] = [
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Null,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Other(9),
];

/// Real frames from the shared captures, as seeds for mutation.
fn corpus() -> &'static Vec<(LinkType, Vec<u8>)> {
    static CORPUS: OnceLock<Vec<(LinkType, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps/ndpi");
        let mut frames = Vec::new();
        for name in [
            "ssh.pcap",
            "ip_fragmented_garbage.pcap",
            "nats.pcap",
            "6in4tunnel.pcap",
            "rtsp.pcap",
            "quic-fuzz-overflow.pcapng",
        ] {
            let mut file = CaptureFile::open(dir.join(name)).expect("shared capture");
            let mut n = 0;
            file.for_each(|f| {
                frames.push((f.link, f.data.to_vec()));
                n += 1;
                n < 300
            })
            .expect("reads");
        }
        frames
    })
}

fn feed(frames: &[(LinkType, Vec<u8>, i64)], mode: Mode) {
    let mut decoder = Decoder::new();
    let mut table = FlowTable::new(FlowConfig {
        mode,
        max_live_flows: 64,
        ..FlowConfig::default()
    });
    let mut emitted = 0u64;
    for (link, data, ts) in frames {
        let frame = Frame {
            ts_ns: *ts,
            link: *link,
            data,
            wire_len: data.len() as u32,
        };
        if let Ok(pkt) = decoder.decode(&frame) {
            table.process(&pkt, &mut |r| {
                assert!(r.features.iter().take(14).all(|v| !v.is_nan()));
                emitted += 1;
            });
        }
    }
    table.flush(&mut |_| emitted += 1);
    let d = decoder.stats();
    assert_eq!(d.decoded + d.skipped(), frames.len() as u64);
    let t = table.stats();
    assert_eq!(t.live, 0);
    assert_eq!(t.flows_emitted + t.below_min_packets, t.flows_started);
    assert_eq!(t.flows_emitted, emitted);
}

fn mutate(seed: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut data = seed.to_vec();
    for (pos, byte) in edits {
        if !data.is_empty() {
            let i = pos % data.len();
            data[i] ^= byte;
        }
    }
    data.truncate(cut.min(data.len()));
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_frames_never_panic(
        frames in prop::collection::vec((0usize..LINKS.len(), prop::collection::vec(any::<u8>(), 0..200), -5_000_000i64..5_000_000_000), 1..40),
        cic in any::<bool>(),
    ) {
        let frames: Vec<(LinkType, Vec<u8>, i64)> = frames.into_iter().map(|(l, d, t)| (LINKS[l], d, t)).collect();
        feed(&frames, if cic { Mode::Cic2017 } else { Mode::Correct });
    }

    #[test]
    fn mutated_real_frames_never_panic(
        picks in prop::collection::vec((any::<prop::sample::Index>(), prop::collection::vec((any::<usize>(), 1u8..), 0..6), 0usize..2000, 0i64..200_000_000_000), 1..60),
        cic in any::<bool>(),
    ) {
        let corpus = corpus();
        let frames: Vec<(LinkType, Vec<u8>, i64)> = picks
            .iter()
            .map(|(i, edits, cut, ts)| {
                let (link, seed) = &corpus[i.index(corpus.len())];
                (*link, mutate(seed, edits, *cut), *ts)
            })
            .collect();
        feed(&frames, if cic { Mode::Cic2017 } else { Mode::Correct });
    }

    #[test]
    fn mutated_capture_files_never_panic(
        which in 0usize..4,
        edits in prop::collection::vec((any::<usize>(), 1u8..), 0..8),
        cut in 0usize..6000,
    ) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps");
        let name = ["formats/dhcp.pcapng", "formats/dhcp-nanosecond.pcap", "ndpi/mqtt.pcap", "ndpi/nats.pcap"][which];
        let seed = std::fs::read(dir.join(name)).expect("shared capture");
        let data = mutate(&seed, &edits, cut);
        let tmp = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(tmp.path(), &data).expect("write");
        if let Ok(mut file) = CaptureFile::open(tmp.path()) {
            let mut decoder = Decoder::new();
            let mut table = FlowTable::new(FlowConfig::default());
            let _ = file.for_each(|f| {
                if let Ok(pkt) = decoder.decode(f) {
                    table.process(&pkt, &mut |_| {});
                }
                true
            });
            table.flush(&mut |_| {});
        }
    }
}
