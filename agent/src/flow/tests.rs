//! Hand-built packet sequences whose 78 feature values were worked out by hand, in both
//! modes. Values are listed by feature name; every feature not listed must be 0.

use std::net::{IpAddr, Ipv4Addr};

use gatewatch_proto::features::{position, FEATURES, FEATURE_COUNT};
use gatewatch_proto::flow::{EndReason, FlowRecord};

use super::{FlowConfig, FlowTable, Mode};
use crate::capture::decode::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use crate::capture::PacketMeta;

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
const CPORT: u16 = 40_000;
const SPORT: u16 = 80;
const T0: i64 = 1_700_000_000_000_000_000;

fn packet(us: i64, from_client: bool, protocol: u8, payload: u32) -> PacketMeta {
    let (src, dst, src_port, dst_port) = if from_client {
        (CLIENT, SERVER, CPORT, SPORT)
    } else {
        (SERVER, CLIENT, SPORT, CPORT)
    };
    PacketMeta {
        ts_ns: T0 + us * 1_000,
        src,
        dst,
        src_port,
        dst_port,
        protocol,
        ip_header_len: 20,
        l4_header_len: 0,
        payload_len: payload,
        padded_payload_len: payload,
        tcp_flags: 0,
        tcp_window: None,
    }
}

fn tcp(us: i64, from_client: bool, flags: u8, payload: u32, window: u16) -> PacketMeta {
    PacketMeta {
        l4_header_len: 20,
        tcp_flags: flags,
        tcp_window: Some(window),
        ..packet(us, from_client, 6, payload)
    }
}

fn udp(us: i64, from_client: bool, payload: u32) -> PacketMeta {
    PacketMeta {
        l4_header_len: 8,
        ..packet(us, from_client, 17, payload)
    }
}

fn icmp(us: i64, from_client: bool, payload: u32) -> PacketMeta {
    let mut p = PacketMeta {
        l4_header_len: 8,
        ..packet(us, from_client, 1, payload)
    };
    p.src_port = 0;
    p.dst_port = 0;
    p
}

fn run(mode: Mode, packets: &[PacketMeta]) -> Vec<FlowRecord> {
    run_with(FlowConfig::with_mode(mode), packets)
}

fn run_with(config: FlowConfig, packets: &[PacketMeta]) -> Vec<FlowRecord> {
    let mut table = FlowTable::new(config);
    let mut out = Vec::new();
    for p in packets {
        table.process(p, &mut |r| out.push(r));
    }
    table.flush(&mut |r| out.push(r));
    out
}

/// Builds the full expected vector: the named values, 0 everywhere else.
fn expected(values: &[(&str, f64)]) -> [f64; FEATURE_COUNT] {
    let mut f = [0.0; FEATURE_COUNT];
    for (name, v) in values {
        let i = position(name).unwrap_or_else(|| panic!("no feature {name}"));
        f[i] = *v;
        if *name == "Fwd Header Length" {
            f[55] = *v;
        }
    }
    f
}

fn assert_features(actual: &FlowRecord, want: &[f64; FEATURE_COUNT]) {
    let mut wrong = Vec::new();
    for i in 0..FEATURE_COUNT {
        let (a, w) = (actual.features[i], want[i]);
        let same = (a.is_nan() && w.is_nan()) || a == w || (a - w).abs() <= 1e-6 * w.abs().max(1.0);
        if !same {
            wrong.push(format!("{} ({}): got {a}, want {w}", FEATURES[i].name, i + 1));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} features differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// Handshake, one request, one response, FIN from the client, FIN from the server, last ACK.
fn http_exchange() -> Vec<PacketMeta> {
    vec![
        tcp(0, true, SYN, 0, 64240),
        tcp(1000, false, SYN | ACK, 0, 65160),
        tcp(2000, true, ACK, 0, 501),
        tcp(3000, true, PSH | ACK, 100, 501),
        tcp(4000, false, ACK, 0, 502),
        tcp(5000, false, PSH | ACK, 300, 503),
        tcp(6000, true, FIN | ACK, 0, 501),
        tcp(7000, false, FIN | ACK, 0, 504),
        tcp(8000, true, ACK, 0, 501),
    ]
}

#[test]
fn tcp_fin_fin_correct() {
    let flows = run(Mode::Correct, &http_exchange());
    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert_eq!((f.end, f.fwd_packets, f.bwd_packets), (EndReason::Fin, 5, 4));
    let all_var = (100.0f64 * 100.0 + 300.0 * 300.0 - 9.0 * (400.0f64 / 9.0).powi(2)) / 8.0;
    assert_features(
        f,
        &expected(&[
            ("Destination Port", 80.0),
            ("Flow Duration", 8000.0),
            ("Total Fwd Packets", 5.0),
            ("Total Backward Packets", 4.0),
            ("Total Length of Fwd Packets", 100.0),
            ("Total Length of Bwd Packets", 300.0),
            ("Fwd Packet Length Max", 100.0),
            ("Fwd Packet Length Mean", 20.0),
            ("Fwd Packet Length Std", 2000f64.sqrt()),
            ("Bwd Packet Length Max", 300.0),
            ("Bwd Packet Length Mean", 75.0),
            ("Bwd Packet Length Std", 150.0),
            ("Flow Bytes/s", 50_000.0),
            ("Flow Packets/s", 1125.0),
            ("Flow IAT Mean", 1000.0),
            ("Flow IAT Max", 1000.0),
            ("Flow IAT Min", 1000.0),
            ("Fwd IAT Total", 8000.0),
            ("Fwd IAT Mean", 2000.0),
            ("Fwd IAT Std", (2.0e6f64 / 3.0).sqrt()),
            ("Fwd IAT Max", 3000.0),
            ("Fwd IAT Min", 1000.0),
            ("Bwd IAT Total", 6000.0),
            ("Bwd IAT Mean", 2000.0),
            ("Bwd IAT Std", 1000.0),
            ("Bwd IAT Max", 3000.0),
            ("Bwd IAT Min", 1000.0),
            ("Fwd PSH Flags", 1.0),
            ("Bwd PSH Flags", 1.0),
            ("Fwd Header Length", 200.0),
            ("Bwd Header Length", 160.0),
            ("Fwd Packets/s", 625.0),
            ("Bwd Packets/s", 500.0),
            ("Max Packet Length", 300.0),
            ("Packet Length Mean", 400.0 / 9.0),
            ("Packet Length Std", all_var.sqrt()),
            ("Packet Length Variance", all_var),
            ("FIN Flag Count", 2.0),
            ("SYN Flag Count", 2.0),
            ("PSH Flag Count", 2.0),
            ("ACK Flag Count", 8.0),
            ("Down/Up Ratio", 0.8),
            ("Average Packet Size", 400.0 / 9.0),
            ("Avg Fwd Segment Size", 20.0),
            ("Avg Bwd Segment Size", 75.0),
            ("Subflow Fwd Packets", 5.0),
            ("Subflow Fwd Bytes", 100.0),
            ("Subflow Bwd Packets", 4.0),
            ("Subflow Bwd Bytes", 300.0),
            ("Init_Win_bytes_forward", 64240.0),
            ("Init_Win_bytes_backward", 65160.0),
            ("act_data_pkt_fwd", 1.0),
            ("min_seg_size_forward", 20.0),
            ("Active Mean", 8000.0),
            ("Active Max", 8000.0),
            ("Active Min", 8000.0),
        ]),
    );
}

#[test]
fn tcp_fin_fin_cic2017_splits_off_the_appendix() {
    let flows = run(Mode::Cic2017, &http_exchange());
    assert_eq!(flows.len(), 2, "{flows:?}");
    let (main, appendix) = (&flows[0], &flows[1]);
    assert_eq!((main.end, main.fwd_packets, main.bwd_packets), (EndReason::Fin, 4, 3));
    let all_var = (100.0f64 * 100.0 + 300.0 * 300.0 - 8.0 * 50.0 * 50.0) / 7.0;
    assert_features(
        main,
        &expected(&[
            ("Destination Port", 80.0),
            ("Flow Duration", 6000.0),
            ("Total Fwd Packets", 4.0),
            ("Total Backward Packets", 3.0),
            ("Total Length of Fwd Packets", 100.0),
            ("Total Length of Bwd Packets", 300.0),
            ("Fwd Packet Length Max", 100.0),
            ("Fwd Packet Length Mean", 25.0),
            ("Fwd Packet Length Std", 50.0),
            ("Bwd Packet Length Max", 300.0),
            ("Bwd Packet Length Mean", 100.0),
            ("Bwd Packet Length Std", 30_000f64.sqrt()),
            ("Flow Bytes/s", 400.0 / 0.006),
            ("Flow Packets/s", 7.0 / 0.006),
            ("Flow IAT Mean", 1000.0),
            ("Flow IAT Max", 1000.0),
            ("Flow IAT Min", 1000.0),
            ("Fwd IAT Total", 6000.0),
            ("Fwd IAT Mean", 2000.0),
            ("Fwd IAT Std", 1000.0),
            ("Fwd IAT Max", 3000.0),
            ("Fwd IAT Min", 1000.0),
            ("Bwd IAT Total", 4000.0),
            ("Bwd IAT Mean", 2000.0),
            ("Bwd IAT Std", 2.0e6f64.sqrt()),
            ("Bwd IAT Max", 3000.0),
            ("Bwd IAT Min", 1000.0),
            ("Fwd Header Length", 80.0),
            ("Bwd Header Length", 60.0),
            ("Fwd Packets/s", 4.0 / 0.006),
            ("Bwd Packets/s", 500.0),
            ("Max Packet Length", 300.0),
            ("Packet Length Mean", 50.0),
            ("Packet Length Std", all_var.sqrt()),
            ("Packet Length Variance", all_var),
            // Q3: the first packet's SYN bit lands under "PSH Flag Count".
            ("PSH Flag Count", 1.0),
            ("Average Packet Size", 400.0 / 7.0),
            ("Avg Fwd Segment Size", 25.0),
            ("Avg Bwd Segment Size", 100.0),
            ("Subflow Fwd Packets", 4.0),
            ("Subflow Fwd Bytes", 100.0),
            ("Subflow Bwd Packets", 3.0),
            ("Subflow Bwd Bytes", 300.0),
            ("Init_Win_bytes_forward", 64240.0),
            // Q9: the window of the last backward packet.
            ("Init_Win_bytes_backward", 503.0),
            ("act_data_pkt_fwd", 1.0),
            ("min_seg_size_forward", 20.0),
        ]),
    );
    assert_eq!((appendix.fwd_packets, appendix.bwd_packets), (1, 1));
    assert_eq!(appendix.key.src, SERVER, "the appendix starts with the server's FIN");
    assert_features(
        appendix,
        &expected(&[
            ("Destination Port", f64::from(CPORT)),
            ("Flow Duration", 1000.0),
            ("Total Fwd Packets", 1.0),
            ("Total Backward Packets", 1.0),
            ("Flow Bytes/s", 0.0),
            ("Flow Packets/s", 2000.0),
            ("Flow IAT Mean", 1000.0),
            ("Flow IAT Max", 1000.0),
            ("Flow IAT Min", 1000.0),
            ("Fwd Header Length", 20.0),
            ("Bwd Header Length", 20.0),
            ("Fwd Packets/s", 1000.0),
            ("Bwd Packets/s", 1000.0),
            ("ACK Flag Count", 1.0),
            // Q3: the FIN bit lands under "URG Flag Count".
            ("URG Flag Count", 1.0),
            ("Down/Up Ratio", 1.0),
            ("Subflow Fwd Packets", 1.0),
            ("Subflow Bwd Packets", 1.0),
            ("Init_Win_bytes_forward", 504.0),
            ("Init_Win_bytes_backward", 501.0),
            ("min_seg_size_forward", 20.0),
        ]),
    );
}

/// A SYN answered by RST, then the client tries again 1 ms later.
fn refused_connection() -> Vec<PacketMeta> {
    vec![
        tcp(0, true, SYN, 0, 1024),
        tcp(500, false, RST | ACK, 0, 0),
        tcp(1500, true, SYN, 0, 1024),
    ]
}

#[test]
fn rst_ends_the_flow_in_correct_mode() {
    let flows = run(Mode::Correct, &refused_connection());
    assert_eq!(flows.len(), 2);
    assert_eq!(
        (flows[0].end, flows[0].fwd_packets, flows[0].bwd_packets),
        (EndReason::Rst, 1, 1)
    );
    assert_features(
        &flows[0],
        &expected(&[
            ("Destination Port", 80.0),
            ("Flow Duration", 500.0),
            ("Total Fwd Packets", 1.0),
            ("Total Backward Packets", 1.0),
            ("Flow Bytes/s", 0.0),
            ("Flow Packets/s", 4000.0),
            ("Flow IAT Mean", 500.0),
            ("Flow IAT Max", 500.0),
            ("Flow IAT Min", 500.0),
            ("Fwd Header Length", 40.0),
            ("Bwd Header Length", 40.0),
            ("Fwd Packets/s", 2000.0),
            ("Bwd Packets/s", 2000.0),
            ("SYN Flag Count", 1.0),
            ("RST Flag Count", 1.0),
            ("ACK Flag Count", 1.0),
            ("Down/Up Ratio", 1.0),
            ("Subflow Fwd Packets", 1.0),
            ("Subflow Bwd Packets", 1.0),
            ("Init_Win_bytes_forward", 1024.0),
            ("Init_Win_bytes_backward", 0.0),
            ("min_seg_size_forward", 20.0),
            ("Active Mean", 500.0),
            ("Active Max", 500.0),
            ("Active Min", 500.0),
        ]),
    );
    // The retry is a connection of its own: a single SYN, kept because min_packets is 1.
    assert_eq!(
        (flows[1].fwd_packets, flows[1].bwd_packets, flows[1].first_ts_ns),
        (1, 0, T0 + 1_500_000)
    );
    assert_features(
        &flows[1],
        &expected(&[
            ("Destination Port", 80.0),
            ("Total Fwd Packets", 1.0),
            ("Fwd Header Length", 40.0),
            ("SYN Flag Count", 1.0),
            ("Subflow Fwd Packets", 1.0),
            ("Init_Win_bytes_forward", 1024.0),
            ("Init_Win_bytes_backward", -1.0),
            ("min_seg_size_forward", 20.0),
        ]),
    );
}

#[test]
fn rst_does_not_end_the_flow_in_cic2017() {
    let flows = run(Mode::Cic2017, &refused_connection());
    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert_eq!((f.end, f.fwd_packets, f.bwd_packets), (EndReason::EndOfInput, 2, 1));
    assert_features(
        f,
        &expected(&[
            ("Destination Port", 80.0),
            ("Flow Duration", 1500.0),
            ("Total Fwd Packets", 2.0),
            ("Total Backward Packets", 1.0),
            ("Flow Bytes/s", 0.0),
            ("Flow Packets/s", 2000.0),
            ("Flow IAT Mean", 750.0),
            ("Flow IAT Std", 125_000f64.sqrt()),
            ("Flow IAT Max", 1000.0),
            ("Flow IAT Min", 500.0),
            ("Fwd IAT Total", 1500.0),
            ("Fwd IAT Mean", 1500.0),
            ("Fwd IAT Max", 1500.0),
            ("Fwd IAT Min", 1500.0),
            ("Fwd Header Length", 40.0),
            ("Bwd Header Length", 20.0),
            ("Fwd Packets/s", 2.0 / 0.0015),
            ("Bwd Packets/s", 1.0 / 0.0015),
            ("PSH Flag Count", 1.0),
            ("Subflow Fwd Packets", 2.0),
            ("Subflow Bwd Packets", 1.0),
            ("Init_Win_bytes_forward", 1024.0),
            ("Init_Win_bytes_backward", 0.0),
            ("min_seg_size_forward", 20.0),
        ]),
    );
}

#[test]
fn udp_request_response_in_both_modes() {
    let packets = [udp(0, true, 40), udp(300, false, 120)];
    for mode in [Mode::Correct, Mode::Cic2017] {
        let flows = run(mode, &packets);
        assert_eq!(flows.len(), 1, "{mode:?}");
        let header = if mode == Mode::Correct { 28.0 } else { 8.0 };
        let (len_mean, len_var, avg_size) = match mode {
            // lengths 40, 120
            Mode::Correct => (80.0, 3200.0, 80.0),
            // Q6: lengths 40, 40, 120
            Mode::Cic2017 => (
                200.0 / 3.0,
                (40.0f64 * 40.0 * 2.0 + 120.0 * 120.0 - 3.0 * (200.0f64 / 3.0).powi(2)) / 2.0,
                100.0,
            ),
        };
        assert_eq!(flows[0].end, EndReason::EndOfInput);
        assert_features(
            &flows[0],
            &expected(&[
                ("Destination Port", 80.0),
                ("Flow Duration", 300.0),
                ("Total Fwd Packets", 1.0),
                ("Total Backward Packets", 1.0),
                ("Total Length of Fwd Packets", 40.0),
                ("Total Length of Bwd Packets", 120.0),
                ("Fwd Packet Length Max", 40.0),
                ("Fwd Packet Length Min", 40.0),
                ("Fwd Packet Length Mean", 40.0),
                ("Bwd Packet Length Max", 120.0),
                ("Bwd Packet Length Min", 120.0),
                ("Bwd Packet Length Mean", 120.0),
                ("Flow Bytes/s", 160.0 / 0.0003),
                ("Flow Packets/s", 2.0 / 0.0003),
                ("Flow IAT Mean", 300.0),
                ("Flow IAT Max", 300.0),
                ("Flow IAT Min", 300.0),
                ("Fwd Header Length", header),
                ("Bwd Header Length", header),
                ("Fwd Packets/s", 1.0 / 0.0003),
                ("Bwd Packets/s", 1.0 / 0.0003),
                ("Min Packet Length", 40.0),
                ("Max Packet Length", 120.0),
                ("Packet Length Mean", len_mean),
                ("Packet Length Std", len_var.sqrt()),
                ("Packet Length Variance", len_var),
                ("Down/Up Ratio", 1.0),
                ("Average Packet Size", avg_size),
                ("Avg Fwd Segment Size", 40.0),
                ("Avg Bwd Segment Size", 120.0),
                ("Subflow Fwd Packets", 1.0),
                ("Subflow Fwd Bytes", 40.0),
                ("Subflow Bwd Packets", 1.0),
                ("Subflow Bwd Bytes", 120.0),
                ("Init_Win_bytes_forward", -1.0),
                ("Init_Win_bytes_backward", -1.0),
                // Q10: the first packet's payload is not counted in 2017.
                ("act_data_pkt_fwd", if mode == Mode::Correct { 1.0 } else { 0.0 }),
                ("min_seg_size_forward", 8.0),
                // 2017 never closed the last active period.
                ("Active Mean", if mode == Mode::Correct { 300.0 } else { 0.0 }),
                ("Active Max", if mode == Mode::Correct { 300.0 } else { 0.0 }),
                ("Active Min", if mode == Mode::Correct { 300.0 } else { 0.0 }),
            ]),
        );
    }
}

#[test]
fn icmp_echo_pairs_two_seconds_apart() {
    let packets = [
        icmp(0, true, 56),
        icmp(100, false, 56),
        icmp(2_000_000, true, 56),
        icmp(2_000_100, false, 56),
    ];
    for mode in [Mode::Correct, Mode::Cic2017] {
        let flows = run(mode, &packets);
        assert_eq!(flows.len(), 1);
        let iat_mean = 2_000_100.0 / 3.0;
        let iat_var = (2.0 * (100.0f64 - iat_mean).powi(2) + (1_999_900.0f64 - iat_mean).powi(2)) / 2.0;
        let correct = mode == Mode::Correct;
        // Two subflows in correct mode (a gap over 1 s); 2017 always had one.
        let sub = if correct { 2.0 } else { 1.0 };
        let all_len_count = if correct { 4.0 } else { 5.0 };
        assert_features(
            &flows[0],
            &expected(&[
                ("Flow Duration", 2_000_100.0),
                ("Total Fwd Packets", 2.0),
                ("Total Backward Packets", 2.0),
                ("Total Length of Fwd Packets", 112.0),
                ("Total Length of Bwd Packets", 112.0),
                ("Fwd Packet Length Max", 56.0),
                ("Fwd Packet Length Min", 56.0),
                ("Fwd Packet Length Mean", 56.0),
                ("Bwd Packet Length Max", 56.0),
                ("Bwd Packet Length Min", 56.0),
                ("Bwd Packet Length Mean", 56.0),
                ("Flow Bytes/s", 224.0 / 2.0001),
                ("Flow Packets/s", 4.0 / 2.0001),
                ("Flow IAT Mean", iat_mean),
                ("Flow IAT Std", iat_var.sqrt()),
                ("Flow IAT Max", 1_999_900.0),
                ("Flow IAT Min", 100.0),
                ("Fwd IAT Total", 2_000_000.0),
                ("Fwd IAT Mean", 2_000_000.0),
                ("Fwd IAT Max", 2_000_000.0),
                ("Fwd IAT Min", 2_000_000.0),
                ("Bwd IAT Total", 2_000_000.0),
                ("Bwd IAT Mean", 2_000_000.0),
                ("Bwd IAT Max", 2_000_000.0),
                ("Bwd IAT Min", 2_000_000.0),
                ("Fwd Header Length", if correct { 56.0 } else { 16.0 }),
                ("Bwd Header Length", if correct { 56.0 } else { 16.0 }),
                ("Fwd Packets/s", 2.0 / 2.0001),
                ("Bwd Packets/s", 2.0 / 2.0001),
                ("Min Packet Length", 56.0),
                ("Max Packet Length", 56.0),
                ("Packet Length Mean", 56.0),
                ("Down/Up Ratio", 1.0),
                ("Average Packet Size", 56.0 * all_len_count / 4.0),
                ("Avg Fwd Segment Size", 56.0),
                ("Avg Bwd Segment Size", 56.0),
                ("Subflow Fwd Packets", 2.0 / sub),
                ("Subflow Fwd Bytes", 112.0 / sub),
                ("Subflow Bwd Packets", 2.0 / sub),
                ("Subflow Bwd Bytes", 112.0 / sub),
                ("Init_Win_bytes_forward", -1.0),
                ("Init_Win_bytes_backward", -1.0),
                ("act_data_pkt_fwd", if correct { 2.0 } else { 1.0 }),
                ("min_seg_size_forward", 8.0),
                ("Active Mean", if correct { 2_000_100.0 } else { 0.0 }),
                ("Active Max", if correct { 2_000_100.0 } else { 0.0 }),
                ("Active Min", if correct { 2_000_100.0 } else { 0.0 }),
            ]),
        );
    }
}

#[test]
fn flow_timeout_cuts_at_120_seconds() {
    // One UDP packet every 50 s: the fourth arrives 150 s after the first. The idle timeout,
    // which would end the flow after every packet, is off here.
    let packets: Vec<PacketMeta> = (0..4).map(|i| udp(i * 50_000_000, true, 10)).collect();
    let no_idle = FlowConfig {
        idle_timeout_ns: 0,
        ..FlowConfig::with_mode(Mode::Correct)
    };
    let correct = run_with(no_idle, &packets);
    assert_eq!(correct.len(), 2);
    assert_eq!((correct[0].end, correct[0].fwd_packets), (EndReason::FlowTimeout, 3));
    assert_eq!((correct[1].end, correct[1].fwd_packets), (EndReason::EndOfInput, 1));
    // 2017 never wrote the single-packet remainder.
    let cic = run(Mode::Cic2017, &packets);
    assert_eq!(cic.len(), 1);
    for (mode, f) in [(Mode::Correct, &correct[0]), (Mode::Cic2017, &cic[0])] {
        let c = mode == Mode::Correct;
        assert_features(
            f,
            &expected(&[
                ("Destination Port", 80.0),
                ("Flow Duration", 100_000_000.0),
                ("Total Fwd Packets", 3.0),
                ("Total Length of Fwd Packets", 30.0),
                ("Fwd Packet Length Max", 10.0),
                ("Fwd Packet Length Min", 10.0),
                ("Fwd Packet Length Mean", 10.0),
                ("Flow Bytes/s", 0.3),
                ("Flow Packets/s", 0.03),
                ("Flow IAT Mean", 50_000_000.0),
                ("Flow IAT Max", 50_000_000.0),
                ("Flow IAT Min", 50_000_000.0),
                ("Fwd IAT Total", 100_000_000.0),
                ("Fwd IAT Mean", 50_000_000.0),
                ("Fwd IAT Max", 50_000_000.0),
                ("Fwd IAT Min", 50_000_000.0),
                ("Fwd Header Length", if c { 84.0 } else { 24.0 }),
                ("Fwd Packets/s", 0.03),
                ("Min Packet Length", 10.0),
                ("Max Packet Length", 10.0),
                ("Packet Length Mean", 10.0),
                ("Average Packet Size", if c { 10.0 } else { 40.0 / 3.0 }),
                ("Avg Fwd Segment Size", 10.0),
                // Three subflows: both gaps exceed 1 s.
                ("Subflow Fwd Packets", if c { 1.0 } else { 3.0 }),
                ("Subflow Fwd Bytes", if c { 10.0 } else { 30.0 }),
                ("Init_Win_bytes_forward", -1.0),
                ("Init_Win_bytes_backward", -1.0),
                ("act_data_pkt_fwd", if c { 3.0 } else { 2.0 }),
                ("min_seg_size_forward", 8.0),
                // Every packet stands alone: no active period longer than 0, two idle gaps.
                ("Idle Mean", 50_000_000.0),
                ("Idle Max", 50_000_000.0),
                ("Idle Min", 50_000_000.0),
            ]),
        );
    }
}

#[test]
fn idle_gap_over_five_seconds_splits_activity() {
    // Active 0–2 s, idle 8 s, active 10–11 s; all client → server, no payload.
    let packets: Vec<PacketMeta> = [0, 1_000_000, 2_000_000, 10_000_000, 11_000_000]
        .iter()
        .map(|us| udp(*us, true, 0))
        .collect();
    for mode in [Mode::Correct, Mode::Cic2017] {
        let flows = run(mode, &packets);
        assert_eq!(flows.len(), 1);
        let c = mode == Mode::Correct;
        let iat_var = (3.0 * (1_000_000.0f64 - 2_750_000.0).powi(2) + (8_000_000.0f64 - 2_750_000.0).powi(2)) / 3.0;
        assert_features(
            &flows[0],
            &expected(&[
                ("Destination Port", 80.0),
                ("Flow Duration", 11_000_000.0),
                ("Total Fwd Packets", 5.0),
                ("Flow Packets/s", 5.0 / 11.0),
                ("Flow IAT Mean", 2_750_000.0),
                ("Flow IAT Std", iat_var.sqrt()),
                ("Flow IAT Max", 8_000_000.0),
                ("Flow IAT Min", 1_000_000.0),
                ("Fwd IAT Total", 11_000_000.0),
                ("Fwd IAT Mean", 2_750_000.0),
                ("Fwd IAT Std", iat_var.sqrt()),
                ("Fwd IAT Max", 8_000_000.0),
                ("Fwd IAT Min", 1_000_000.0),
                ("Fwd Header Length", if c { 140.0 } else { 40.0 }),
                ("Fwd Packets/s", 5.0 / 11.0),
                // Gaps of exactly 1 s do not split subflows; the 8 s gap does.
                ("Subflow Fwd Packets", if c { 2.5 } else { 5.0 }),
                ("Init_Win_bytes_forward", -1.0),
                ("Init_Win_bytes_backward", -1.0),
                ("min_seg_size_forward", 8.0),
                // Periods of 2 s and 1 s; 2017 records only the one closed by the gap.
                ("Active Mean", if c { 1_500_000.0 } else { 2_000_000.0 }),
                ("Active Std", if c { 500_000f64.sqrt() * 1000.0 } else { 0.0 }),
                ("Active Max", 2_000_000.0),
                ("Active Min", if c { 1_000_000.0 } else { 2_000_000.0 }),
                ("Idle Mean", 8_000_000.0),
                ("Idle Max", 8_000_000.0),
                ("Idle Min", 8_000_000.0),
            ]),
        );
    }
}

#[test]
fn bulk_of_five_payload_packets_in_correct_mode() {
    let mut packets: Vec<PacketMeta> = (0..5).map(|i| udp(i * 100_000, true, 1000)).collect();
    packets.push(udp(500_000, false, 0));
    let flows = run(Mode::Correct, &packets);
    let f = &flows[0].features;
    let i = |name| position(name).expect("feature");
    assert_eq!(f[i("Fwd Avg Bytes/Bulk")], 5000.0);
    assert_eq!(f[i("Fwd Avg Packets/Bulk")], 5.0);
    assert!((f[i("Fwd Avg Bulk Rate")] - 12_500.0).abs() < 1e-6);
    assert_eq!((f[i("Bwd Avg Bytes/Bulk")], f[i("Bwd Avg Bulk Rate")]), (0.0, 0.0));
    let cic = run(Mode::Cic2017, &packets);
    assert_eq!(
        cic[0].features[i("Fwd Avg Bytes/Bulk")],
        0.0,
        "Q5: bulks are always 0 in 2017"
    );
}

#[test]
fn zero_duration_rates_follow_java_in_cic2017_only() {
    let packets = [udp(0, true, 10), udp(0, false, 10)];
    let cic = run(Mode::Cic2017, &packets);
    assert!(cic[0].features[14].is_infinite() && cic[0].features[15].is_infinite());
    let empty = [udp(0, true, 0), udp(0, false, 0)];
    assert!(run(Mode::Cic2017, &empty)[0].features[14].is_nan());
    let correct = run(Mode::Correct, &packets);
    assert_eq!((correct[0].features[14], correct[0].features[15]), (0.0, 0.0));
}

#[test]
fn full_table_evicts_the_oldest_flow_and_counts_it() {
    let config = FlowConfig {
        max_live_flows: 2,
        ..FlowConfig::default()
    };
    let mut table = FlowTable::new(config);
    let mut out = Vec::new();
    for port in 0..3u16 {
        let mut p = udp(i64::from(port), true, 1);
        p.src_port = 1000 + port;
        table.process(&p, &mut |r| out.push(r));
    }
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].end, out[0].key.src_port), (EndReason::Evicted, 1000));
    assert_eq!(table.stats().evicted, 1);
    assert_eq!(table.stats().live, 2);
}

#[test]
fn expired_flows_come_out_in_time_order() {
    let mut packets = Vec::new();
    for i in 0..50i64 {
        let mut p = udp(i * 1_000_000, true, 1);
        p.src_port = 2000 + i as u16;
        packets.push(p);
    }
    packets.push(udp(400_000_000, true, 1));
    let flows = run(Mode::Correct, &packets);
    assert_eq!(flows.len(), 51);
    assert!(flows.windows(2).all(|w| w[0].first_ts_ns <= w[1].first_ts_ns));
    assert!(flows[..50].iter().all(|f| f.end == EndReason::IdleTimeout));
}

/// A connectionless exchange (CoAP, DNS) that ends is written once it has been quiet for
/// the idle timeout, among the flows of that moment, not two minutes later.
#[test]
fn quiet_udp_flows_end_at_the_idle_timeout_in_time_order_with_tcp() {
    let mut get = vec![udp(0, true, 20), udp(2_000, false, 150)];
    let mut later = udp(1_000_000, true, 20); // another request, 1 s later, from a new port
    later.src_port = CPORT + 1;
    get.push(later);
    // A TCP connection 20-21 s later, closed both ways.
    let mut tcp_conn = vec![
        tcp(20_000_000, true, SYN, 0, 1000),
        tcp(20_000_100, false, SYN | ACK, 0, 1000),
        tcp(20_000_200, true, ACK, 0, 1000),
        tcp(21_000_000, true, FIN | ACK, 0, 1000),
        tcp(21_000_100, false, FIN | ACK, 0, 1000),
        tcp(21_000_200, true, ACK, 0, 1000),
    ];
    for p in &mut tcp_conn {
        if p.src == CLIENT {
            p.src_port = 50_000;
        } else {
            p.dst_port = 50_000;
        }
    }
    let mut packets = get.clone();
    packets.extend(tcp_conn);
    packets.push(udp(60_000_000, true, 20)); // time moves on

    let flows = run(Mode::Correct, &packets);
    let ends: Vec<(u8, EndReason)> = flows.iter().map(|f| (f.key.protocol, f.end)).collect();
    assert_eq!(
        ends[..3],
        [
            (17, EndReason::IdleTimeout),
            (17, EndReason::IdleTimeout),
            (6, EndReason::Fin)
        ],
        "both exchanges end 15 s after their last packet, before the connection of 20 s"
    );
    assert_eq!((flows[0].fwd_packets, flows[0].bwd_packets), (1, 1));
    assert_eq!(flows[0].last_ts_ns - flows[0].first_ts_ns, 2_000_000);

    // Without it (and in cic2017) they wait for the flow timeout and come after.
    let no_idle = FlowConfig {
        idle_timeout_ns: 0,
        ..FlowConfig::with_mode(Mode::Correct)
    };
    let ends: Vec<u8> = run_with(no_idle, &packets).iter().map(|f| f.key.protocol).collect();
    assert_eq!(ends[..3], [6, 17, 17]);
}

/// Packets keep a connectionless flow alive: only a gap over the idle timeout splits it.
#[test]
fn a_udp_flow_with_packets_closer_than_the_idle_timeout_stays_one_flow() {
    let mut packets: Vec<PacketMeta> = (0..7).map(|i| udp(i * 10_000_000, true, 10)).collect();
    packets.push(udp(60_000_000 + 16_000_000, true, 10)); // 16 s after the last one
    let flows = run(Mode::Correct, &packets);
    assert_eq!(flows.len(), 2);
    assert_eq!((flows[0].end, flows[0].fwd_packets), (EndReason::IdleTimeout, 7));
    assert_eq!((flows[1].end, flows[1].fwd_packets), (EndReason::EndOfInput, 1));
    let cic = run(Mode::Cic2017, &packets);
    assert_eq!((cic.len(), cic[0].fwd_packets), (1, 8), "cic2017 has no idle timeout");
    let mut table = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    for p in &packets[..7] {
        table.process(p, &mut |r| out.push(r));
    }
    table.advance(T0 + 75_000_000_000, &mut |r| out.push(r));
    assert!(out.is_empty(), "15 s after the last packet is not yet past the timeout");
    table.advance(T0 + 75_000_000_001, &mut |r| out.push(r));
    assert_eq!(out.len(), 1);
}

#[test]
fn live_flow_state_stays_small() {
    // 100 k live flows must fit in 64 MB with the index and queues (see the benchmark).
    assert!(std::mem::size_of::<super::state::FlowState>() <= 480);
}
