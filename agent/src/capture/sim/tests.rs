use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::*;

fn config(attack: Option<AttackType>, intensity: f64, secs: u64) -> SimConfig {
    SimConfig {
        attack,
        intensity,
        duration: Duration::from_secs(secs),
        ..SimConfig::default()
    }
}

fn run(cfg: &SimConfig) -> Simulation {
    simulate(cfg).expect("simulation")
}

/// Ones'-complement sum of 16-bit words, folded.
fn ones_sum(mut acc: u32, bytes: &[u8]) -> u32 {
    for pair in bytes.chunks(2) {
        acc += u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
    }
    while acc > 0xFFFF {
        acc = (acc & 0xFFFF) + (acc >> 16);
    }
    acc
}

/// The fields the tests look at, parsed by hand from the raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: usize,
}

/// Checks the frame with etherparse and with independent checksum arithmetic.
fn check(data: &[u8]) -> Seg {
    let sliced = SlicedPacket::from_ethernet(data).expect("parses as Ethernet");
    assert!(matches!(sliced.net, Some(NetSlice::Ipv4(_))), "IPv4");
    assert!(
        matches!(
            sliced.transport,
            Some(TransportSlice::Tcp(_) | TransportSlice::Udp(_) | TransportSlice::Icmpv4(_))
        ),
        "transport"
    );
    let ip = &data[14..];
    let ihl = usize::from(ip[0] & 0x0F) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    assert_eq!(total, ip.len(), "IP total length covers the frame");
    assert_eq!(ones_sum(0, &ip[..ihl]), 0xFFFF, "IPv4 header checksum");
    let proto = ip[9];
    let l4 = &ip[ihl..total];
    let sum = if proto == 1 {
        ones_sum(0, l4)
    } else {
        let mut pseudo = Vec::from(&ip[12..20]);
        pseudo.extend_from_slice(&[0, proto]);
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        ones_sum(ones_sum(0, &pseudo), l4)
    };
    assert_eq!(sum, 0xFFFF, "transport checksum of protocol {proto}");
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let port = |i: usize| u16::from_be_bytes([l4[i], l4[i + 1]]);
    let word = |i: usize| u32::from_be_bytes([l4[i], l4[i + 1], l4[i + 2], l4[i + 3]]);
    match proto {
        6 => Seg {
            src,
            dst,
            proto,
            sport: port(0),
            dport: port(2),
            seq: word(4),
            ack: word(8),
            flags: l4[13],
            window: port(14),
            payload: l4.len() - usize::from(l4[12] >> 4) * 4,
        },
        17 => Seg {
            src,
            dst,
            proto,
            sport: port(0),
            dport: port(2),
            seq: 0,
            ack: 0,
            flags: 0,
            window: 0,
            payload: l4.len() - 8,
        },
        _ => Seg {
            src,
            dst,
            proto,
            sport: 0,
            dport: 0,
            seq: 0,
            ack: 0,
            flags: 0,
            window: 0,
            payload: l4.len() - 8,
        },
    }
}

#[test]
fn same_seed_gives_identical_bytes_and_other_seeds_differ() {
    let mut cfg = config(Some(AttackType::Hybrid), 0.2, 20);
    let a = run(&cfg);
    let b = run(&cfg);
    assert!(!a.frames.is_empty());
    assert_eq!(a.frames, b.frames);
    assert_eq!(a.truth, b.truth);
    cfg.seed = 2;
    let c = run(&cfg);
    assert_ne!(a.frames, c.frames);
}

#[test]
fn attack_bytes_do_not_depend_on_background_traffic() {
    let mut cfg = config(Some(AttackType::BruteForceFtp), 0.3, 20);
    let with = run(&cfg);
    cfg.benign = false;
    let without = run(&cfg);
    let attacker = IpAddr::V4(cfg.attacker);
    let attack_only: Vec<_> = with
        .frames
        .iter()
        .filter(|f| {
            let s = check(&f.data);
            IpAddr::V4(s.src) == attacker || IpAddr::V4(s.dst) == attacker
        })
        .cloned()
        .collect();
    assert_eq!(attack_only, without.frames);
}

#[test]
fn frames_are_sorted_and_inside_the_capture() {
    for attack in [
        None,
        Some(AttackType::DdosFlood(FloodVariant::Http)),
        Some(AttackType::SlowRate),
    ] {
        let cfg = config(attack, 0.3, 25);
        let sim = run(&cfg);
        let end = cfg.start_ns + 25 * SEC;
        assert!(
            sim.frames.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns),
            "{attack:?} sorted"
        );
        assert!(sim
            .frames
            .iter()
            .all(|f| f.ts_ns >= cfg.start_ns && f.ts_ns < end && f.link == LinkType::Ethernet));
    }
}

#[test]
fn every_frame_of_every_scenario_parses_with_valid_checksums() {
    let scenarios = std::iter::once(None).chain(AttackType::ALL.into_iter().map(Some));
    for attack in scenarios {
        let sim = run(&config(attack, 0.05, 12));
        assert!(!sim.frames.is_empty(), "{attack:?}");
        for f in &sim.frames {
            let seg = check(&f.data);
            assert!(f.data.len() <= 1514, "{attack:?}: frame of {} bytes", f.data.len());
            assert!(seg.payload <= 1460);
        }
    }
}

/// Replays every TCP conversation: each side's sequence numbers advance exactly by payload
/// (+1 for SYN and FIN), nothing is acknowledged before it was sent, ACKs never go back.
fn assert_tcp_consistent(frames: &[OwnedFrame]) -> usize {
    #[derive(Default)]
    struct Half {
        next: Option<u32>,
        acked: Option<u32>,
        fin: bool,
    }
    let mut convs: HashMap<(Ipv4Addr, u16, Ipv4Addr, u16), Half> = HashMap::new();
    let mut checked = 0;
    for f in frames {
        let s = check(&f.data);
        if s.proto != 6 {
            continue;
        }
        let fwd = (s.src, s.sport, s.dst, s.dport);
        let rev = (s.dst, s.dport, s.src, s.sport);
        let (syn, fin, rst, ackf) = (
            s.flags & 2 != 0,
            s.flags & 1 != 0,
            s.flags & 4 != 0,
            s.flags & 0x10 != 0,
        );
        if syn && !ackf {
            convs.remove(&fwd);
            convs.remove(&rev);
        }
        let peer_next = convs.get(&rev).and_then(|h| h.next);
        let me = convs.entry(fwd).or_default();
        if let Some(next) = me.next {
            assert_eq!(s.seq, next, "sequence continues in {fwd:?}");
        }
        assert!(!(me.fin && s.payload > 0), "data after FIN in {fwd:?}");
        if ackf && !rst {
            if let Some(peer_next) = peer_next {
                assert!(s.ack.wrapping_sub(peer_next) as i32 <= 0, "{fwd:?} acks unsent data");
            }
            if let Some(prev) = me.acked {
                assert!(s.ack.wrapping_sub(prev) as i32 >= 0, "{fwd:?} ack went back");
            }
            me.acked = Some(s.ack);
        }
        me.next = Some(s.seq.wrapping_add(s.payload as u32 + u32::from(syn) + u32::from(fin)));
        me.fin |= fin;
        checked += 1;
    }
    checked
}

#[test]
fn tcp_sequence_and_ack_numbers_are_consistent() {
    for attack in [
        None,
        Some(AttackType::BruteForceSsh),
        Some(AttackType::BruteForceFtp),
        Some(AttackType::DdosFlood(FloodVariant::Http)),
        Some(AttackType::DataExfiltration),
        Some(AttackType::WebSqli),
        Some(AttackType::SlowRate),
        Some(AttackType::PortScan),
    ] {
        let sim = run(&config(attack, 0.2, 30));
        assert!(assert_tcp_consistent(&sim.frames) > 100, "{attack:?}");
    }
}

#[test]
fn a_conversation_handshakes_transfers_and_closes() {
    let mut cfg = config(Some(AttackType::BruteForceFtp), 0.0, 15);
    cfg.benign = false;
    let sim = run(&cfg);
    let first = check(&sim.frames[0].data);
    let conv: Vec<Seg> = sim
        .frames
        .iter()
        .map(|f| check(&f.data))
        .filter(|s| (s.sport == first.sport && s.dport == 21) || (s.dport == first.sport && s.sport == 21))
        .collect();
    let flags: Vec<u8> = conv.iter().map(|s| s.flags).collect();
    assert_eq!(&flags[..3], &[0x02, 0x12, 0x10], "SYN, SYN-ACK, ACK");
    assert_eq!(conv[1].ack, conv[0].seq.wrapping_add(1));
    assert_eq!(conv[2].ack, conv[1].seq.wrapping_add(1));
    let fins = conv.iter().filter(|s| s.flags & 1 != 0).count();
    assert_eq!(fins, 2, "both sides close");
    assert_eq!(conv.last().map(|s| s.flags), Some(0x10), "last ACK");
    assert!(conv.iter().any(|s| s.payload > 0 && s.sport == 21));
    assert!(conv.iter().all(|s| s.flags & 2 != 0 || s.window > 0));
}

#[test]
fn out_of_range_settings_are_refused() {
    for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
        let cfg = config(Some(AttackType::PortScan), bad, 10);
        assert!(matches!(simulate(&cfg), Err(SimError::Intensity(_))), "{bad}");
    }
    assert!(matches!(simulate(&config(None, 0.5, 0)), Err(SimError::Duration(_))));
    let mut cfg = config(None, 0.5, 10);
    cfg.benign = false;
    assert_eq!(simulate(&cfg).err(), Some(SimError::Nothing));
    let mut cfg = config(None, 0.5, 10);
    cfg.target = Ipv4Addr::new(10, 1, 2, 3);
    assert!(matches!(simulate(&cfg), Err(SimError::Addresses(_))));
    let mut cfg = config(None, 0.5, 10);
    cfg.attacker = cfg.target;
    assert!(matches!(simulate(&cfg), Err(SimError::Addresses(_))));
    let mut cfg = config(None, 0.5, 10);
    cfg.start_ns = -1;
    assert_eq!(simulate(&cfg).err(), Some(SimError::Start(-1)));
    cfg.start_ns = i64::MAX - 5;
    assert!(matches!(simulate(&cfg), Err(SimError::Start(_))));
    let mut cfg = config(None, 0.5, 10);
    cfg.devices = MAX_DEVICES + 1;
    assert!(matches!(simulate(&cfg), Err(SimError::Devices { .. })));
}

#[test]
fn every_attack_runs_between_its_attacker_and_the_target() {
    for attack in AttackType::ALL {
        let mut cfg = config(Some(attack), 0.1, 40);
        cfg.benign = false;
        let sim = run(&cfg);
        let target = cfg.target;
        let (mut to_target, mut from_target) = (0, 0);
        for f in &sim.frames {
            let s = check(&f.data);
            let remote = if s.src == target { s.dst } else { s.src };
            assert!(s.src == target || s.dst == target, "{attack}: {s:?}");
            assert!(sim.truth.attackers.contains(&IpAddr::V4(remote)), "{attack}: {s:?}");
            let (from, until) = sim.truth.window_ns.expect("window");
            assert!(f.ts_ns >= from && f.ts_ns <= until);
            if s.dst == target {
                to_target += 1;
            } else {
                from_target += 1;
            }
        }
        assert!(
            to_target > 0 && from_target > 0,
            "{attack}: {to_target} in, {from_target} out"
        );
        assert_eq!(sim.attacker, sim.truth.attackers.first().copied());
    }
}

#[test]
fn ground_truth_describes_the_hybrid_stages() {
    let cfg = config(Some(AttackType::Hybrid), 0.3, 60);
    let sim = run(&cfg);
    let t = &sim.truth;
    assert_eq!(t.attack, Some(AttackType::Hybrid));
    assert_eq!(t.victim, IpAddr::V4(cfg.target));
    assert_eq!(t.attackers, vec![IpAddr::V4(cfg.attacker), IpAddr::V4(cfg.c2)]);
    let stages: Vec<AttackType> = t.phases.iter().map(|p| p.attack).collect();
    assert_eq!(
        stages,
        [
            AttackType::PortScan,
            AttackType::BruteForceSsh,
            AttackType::DataExfiltration
        ]
    );
    let (from, until) = t.window_ns.expect("window");
    assert!(from > cfg.start_ns && until == cfg.start_ns + 60 * SEC);
    assert!(t.phases.windows(2).all(|w| w[0].window_ns.1 <= w[1].window_ns.0));
    for phase in &t.phases {
        let remote = phase.attackers[0];
        let mut seen = 0;
        for f in &sim.frames {
            let s = check(&f.data);
            let involved = IpAddr::V4(s.src) == remote || IpAddr::V4(s.dst) == remote;
            let port_of_phase = match phase.attack {
                AttackType::PortScan => s.sport != 22 && s.dport != 22,
                AttackType::BruteForceSsh => s.sport == 22 || s.dport == 22,
                _ => true,
            };
            if involved && port_of_phase {
                assert!(f.ts_ns >= phase.window_ns.0 && f.ts_ns <= phase.window_ns.1 + 10 * SEC);
                seen += 1;
            }
        }
        assert!(seen > 0, "{:?}", phase.attack);
    }
    let benign = run(&config(None, 0.3, 10)).truth;
    assert_eq!(
        (benign.attack, benign.window_ns, benign.attackers.len()),
        (None, None, 0)
    );
}

#[test]
fn port_scan_probes_are_one_or_two_packet_exchanges() {
    let mut cfg = config(Some(AttackType::PortScan), 0.5, 20);
    cfg.benign = false;
    let sim = run(&cfg);
    let mut flows: HashMap<(u16, u16), Vec<u8>> = HashMap::new();
    for f in &sim.frames {
        let s = check(&f.data);
        let key = if s.src == cfg.attacker {
            (s.sport, s.dport)
        } else {
            (s.dport, s.sport)
        };
        flows.entry(key).or_default().push(s.flags);
    }
    assert!(flows.len() > 10_000, "{} probes", flows.len());
    for ((_, port), flags) in &flows {
        let want: &[u8] = if attack::OPEN_PORTS.contains(port) {
            &[0x02, 0x12, 0x04]
        } else {
            &[0x02, 0x14]
        };
        // The last probe's reply may fall after the capture's end.
        assert!(want.starts_with(flags), "port {port}: {flags:?}");
    }
}

#[test]
fn benign_traffic_has_every_iot_protocol_over_the_whole_capture() {
    let cfg = config(None, 0.5, 90);
    let sim = run(&cfg);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut late = 0;
    for f in &sim.frames {
        let s = check(&f.data);
        let body = &f.data[f.data.len() - s.payload..];
        let name = match (s.proto, s.sport.min(s.dport)) {
            (6, 1883) if body.first() == Some(&0x32) => "mqtt publish",
            (6, 1883) if body == [0xC0, 0] => "mqtt pingreq",
            (6, 80) if body.starts_with(b"GET /snapshot.jpg") => "snapshot get",
            (17, 5683) => "coap",
            (17, 53) => "dns",
            (17, 123) if s.payload == 48 => "ntp",
            _ => "other",
        };
        *seen.entry(name).or_default() += 1;
        if f.ts_ns > cfg.start_ns + 80 * SEC {
            late += 1;
        }
    }
    for name in ["mqtt publish", "mqtt pingreq", "snapshot get", "coap", "dns", "ntp"] {
        assert!(seen.get(name).copied().unwrap_or(0) > 0, "{name} missing: {seen:?}");
    }
    assert!(late > 50, "traffic continues to the end");
}

#[test]
fn big_simulations_stay_bounded() {
    for attack in AttackType::ALL {
        let window = attack::span(SimConfig::default().span());
        let n = attack::estimate(attack, 1.0, window);
        assert!(n < 2_000_000, "{attack} at full intensity for 30 s: {n} packets");
    }
    let mut cfg = config(Some(AttackType::DdosFlood(FloodVariant::Syn)), 1.0, 30);
    let sim = run(&cfg);
    assert!(
        sim.frames.len() < 2_000_000 && sim.frames.len() > 500_000,
        "{}",
        sim.frames.len()
    );
    cfg.duration = Duration::from_secs(600);
    assert!(matches!(simulate(&cfg), Err(SimError::TooManyPackets { .. })));
}

#[test]
fn estimates_cover_what_is_generated() {
    for attack in AttackType::ALL {
        let mut cfg = config(Some(attack), 0.3, 40);
        cfg.benign = false;
        let actual = run(&cfg).frames.len() as u64;
        let estimate = attack::estimate(attack, 0.3, attack::span(cfg.span()));
        assert!(
            actual <= estimate + estimate / 4,
            "{attack}: {actual} generated, {estimate} estimated"
        );
    }
    let cfg = config(None, 0.5, 120);
    let actual = run(&cfg).frames.len() as u64;
    assert!(actual <= benign::estimate(cfg.other_devices().len(), cfg.span()));
}

#[test]
fn attack_names_parse_and_print_as_in_the_plan() {
    for a in AttackType::ALL {
        assert_eq!(a.to_string().parse::<AttackType>(), Ok(a));
    }
    assert_eq!("ddos_flood".parse(), Ok(AttackType::DdosFlood(FloodVariant::Syn)));
    assert_eq!("DDOS_FLOOD:UDP".parse(), Ok(AttackType::DdosFlood(FloodVariant::Udp)));
    assert_eq!(AttackType::parse_scenario("benign"), Ok(None));
    assert_eq!(AttackType::parse_scenario("web_xss"), Ok(Some(AttackType::WebXss)));
    let err = "ping_of_death".parse::<AttackType>().expect_err("unknown");
    let msg = err.to_string();
    assert!(
        msg.contains("ping_of_death") && msg.contains("port_scan") && msg.contains("benign"),
        "{msg}"
    );
}

#[test]
fn pcap_output_has_the_nanosecond_magic_and_reads_back() {
    let sim = run(&config(Some(AttackType::WebXss), 0.2, 10));
    let mut buf = Vec::new();
    write_pcap(&mut buf, &sim.frames).expect("write");
    assert_eq!(&buf[..4], &0xa1b2_3c4du32.to_le_bytes());
    let cap = pcap_parser::PcapCapture::from_file(&buf).expect("pcap-parser reads it");
    assert_eq!(cap.header.magic_number, 0xa1b2_3c4d);
    assert_eq!(cap.header.snaplen, 65_535);
    assert_eq!(cap.header.network, pcap_parser::Linktype::ETHERNET);
    assert_eq!(cap.blocks.len(), sim.frames.len());
    for (block, frame) in cap.blocks.iter().zip(&sim.frames) {
        let ts = i64::from(block.ts_sec) * SEC + i64::from(block.ts_usec);
        assert_eq!(ts, frame.ts_ns);
        assert_eq!(block.data, frame.data.as_slice());
        assert_eq!(block.origlen as usize, frame.data.len());
    }
    let mut empty = Vec::new();
    write_pcap(&mut empty, &[]).expect("empty");
    assert_eq!(empty.len(), 24);
}

#[test]
fn stacks_negotiate_linux_and_lwip_options() {
    let sim = run(&config(None, 0.5, 20));
    let syns: Vec<&OwnedFrame> = sim
        .frames
        .iter()
        .filter(|f| {
            let s = check(&f.data);
            s.proto == 6 && s.flags == 0x02
        })
        .collect();
    let header_len = |f: &OwnedFrame| usize::from(f.data[14 + 20 + 12] >> 4) * 4;
    // Linux: MSS, SACK-permitted, timestamps, window scale; lwIP: MSS only.
    assert!(syns
        .iter()
        .any(|f| header_len(f) == 40 && check(&f.data).window == 64_240));
    assert!(syns
        .iter()
        .any(|f| header_len(f) == 24 && check(&f.data).window == 5_760));
}

const SEC: i64 = net::SEC;
