//! The two golden rows of the published CIC-IDS2017 CSVs, rebuilt from real Ethernet
//! frames and run through decode + flow table in `cic2017` mode.

use etherparse::PacketBuilder;
use gatewatch_agent::capture::{Decoder, Frame, LinkType};
use gatewatch_agent::flow::{FlowConfig, FlowTable, Mode};
use gatewatch_proto::features::{idx, FEATURES};
use gatewatch_proto::FlowRecord;

/// First row of Friday-WorkingHours-Afternoon-DDos.pcap_ISCX.csv.
const GOLDEN_ACKS: &str = "54865,3,2,0,12,0,6,6,6.0,0.0,0,0,0.0,0.0,4000000.0,666666.6667,3.0,0.0,3,3,3,3.0,0.0,3,3,0,0.0,0.0,0,0,0,0,0,0,40,0,666666.6667,0.0,6,6,6.0,0.0,0.0,0,0,0,0,1,0,0,0,0,9.0,6.0,0.0,40,0,0,0,0,0,0,2,12,0,0,33,-1,1,20,0.0,0.0,0,0,0.0,0.0,0,0";

fn padded(mut frame: Vec<u8>) -> Vec<u8> {
    // Ethernet pads short frames to 60 bytes (without FCS); 2017 counted that as payload.
    frame.resize(frame.len().max(60), 0);
    frame
}

fn flows(frames: &[(i64, Vec<u8>)]) -> Vec<FlowRecord> {
    let mut decoder = Decoder::new();
    let mut table = FlowTable::new(FlowConfig::with_mode(Mode::Cic2017));
    let mut out = Vec::new();
    for (ts_ns, data) in frames {
        let frame = Frame {
            ts_ns: *ts_ns,
            link: LinkType::Ethernet,
            data,
            wire_len: data.len() as u32,
        };
        let pkt = decoder.decode(&frame).expect("decodes");
        table.process(&pkt, &mut |r| out.push(r));
    }
    table.flush(&mut |r| out.push(r));
    out
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-4 * b.abs().max(1.0)
}

#[test]
fn golden_row_two_pure_acks() {
    let ack = |seq: u32| {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([192, 168, 10, 50], [172, 16, 0, 1], 64)
            .tcp(80, 54865, seq, 33)
            .ack(1);
        let mut buf = Vec::new();
        builder.write(&mut buf, &[]).expect("build");
        padded(buf)
    };
    let t0 = 1_499_443_200_000_000_000;
    let out = flows(&[(t0, ack(1)), (t0 + 3_000, ack(1))]);
    assert_eq!(out.len(), 1);
    let want: Vec<f64> = GOLDEN_ACKS.split(',').map(|v| v.parse().expect("number")).collect();
    assert_eq!(want.len(), 78);
    let wrong: Vec<String> = (0..78)
        .filter(|i| !close(out[0].features[*i], want[*i]))
        .map(|i| format!("{}: got {}, want {}", FEATURES[i].name, out[0].features[i], want[i]))
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn golden_row_port_scan_probe() {
    let t0 = 1_499_443_200_000_000_000;
    let syn = {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([172, 16, 0, 1], [192, 168, 10, 50], 41)
            .tcp(47_000, 84, 1000, 1024)
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .expect("options");
        let mut buf = Vec::new();
        builder.write(&mut buf, &[]).expect("build");
        assert_eq!(buf.len(), 58);
        padded(buf)
    };
    let rst = {
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
            .ipv4([192, 168, 10, 50], [172, 16, 0, 1], 64)
            .tcp(84, 47_000, 0, 0)
            .rst()
            .ack(1001);
        let mut buf = Vec::new();
        builder.write(&mut buf, &[]).expect("build");
        padded(buf)
    };
    let out = flows(&[(t0, syn), (t0 + 25_000, rst)]);
    assert_eq!(out.len(), 1, "Q2: the RST does not split the flow");
    let f = &out[0].features;
    assert_eq!(f[idx::DESTINATION_PORT], 84.0);
    assert_eq!(f[idx::FLOW_DURATION], 25.0);
    assert_eq!(f[idx::TOTAL_LENGTH_OF_FWD_PACKETS], 2.0, "Q7: padding is payload");
    assert_eq!(f[idx::TOTAL_LENGTH_OF_BWD_PACKETS], 6.0);
    assert!(close(f[idx::PACKET_LENGTH_MEAN], 10.0 / 3.0), "Q6: mean of 2, 2, 6");
    assert_eq!(f[idx::AVERAGE_PACKET_SIZE], 5.0);
    assert_eq!(f[idx::INIT_WIN_BYTES_FORWARD], 1024.0);
    assert_eq!(f[idx::INIT_WIN_BYTES_BACKWARD], 0.0);
    assert_eq!(f[idx::MIN_SEG_SIZE_FORWARD], 24.0);
    assert_eq!(f[idx::PSH_FLAG_COUNT], 1.0, "Q3: the SYN bit sits under PSH");
    assert_eq!(f[idx::SYN_FLAG_COUNT], 0.0);
    assert_eq!(f[idx::RST_FLAG_COUNT], 0.0);
}
