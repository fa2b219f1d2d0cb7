//! Every shared capture runs through in both modes with stable flow counts, and every
//! kind of bad input gives a one-line error naming the file, through the real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use gatewatch_agent::flow::{FlowConfig, Mode};
use gatewatch_agent::pipeline::{run_file, Pace};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/pcaps")
        .join(rel)
}

/// (file, flows in correct mode, flows in cic2017 mode). A change here is a change in
/// flow semantics: look at why before updating a number. (The 15 s idle timeout of
/// non-TCP flows split the multicast streams, coap_mqtt's and netbeui's UDP in `correct`.)
const COUNTS: &[(&str, u64, u64)] = &[
    ("formats/dhcp-nanosecond.pcap", 2, 2),
    ("formats/dhcp-nanosecond.pcapng", 2, 2),
    ("formats/dhcp.pcap", 2, 2),
    ("formats/dhcp.pcapng", 2, 2),
    ("formats/dns+icmp.pcapng.gz", 9, 9),
    ("formats/logistics_multicast.pcapng", 203, 86),
    ("ndpi/4in4tunnel.pcap", 5, 0),
    ("ndpi/6in4tunnel.pcap", 1, 1),
    ("ndpi/IEC104.pcap", 2, 2),
    ("ndpi/WebattackXSS.pcap", 661, 1318),
    ("ndpi/amqp.pcap", 3, 3),
    ("ndpi/bad-dns-traffic.pcap", 3, 3),
    ("ndpi/coap_mqtt.pcap", 18, 11),
    ("ndpi/dlt_ppp.pcap", 0, 0),
    ("ndpi/dnp3.pcap", 12, 20),
    ("ndpi/dns_exfiltration.pcap", 1, 1),
    ("ndpi/dos_win98_smb_netbeui.pcap", 9, 5),
    ("ndpi/ftp_failed.pcap", 1, 2),
    ("ndpi/iec60780-5-104.pcap", 9, 15),
    ("ndpi/ip_fragmented_garbage.pcap", 0, 0),
    ("ndpi/malware.pcap", 5, 4),
    ("ndpi/modbus.pcap", 1, 1),
    ("ndpi/mqtt.pcap", 2, 1),
    ("ndpi/nats.pcap", 2, 3),
    ("ndpi/quic-fuzz-overflow.pcapng", 1, 0),
    ("ndpi/quic-mvfst-22_decryption_error.pcap", 1, 1),
    ("ndpi/rdp.pcap", 1, 2),
    ("ndpi/reddit.pcap", 60, 88),
    ("ndpi/rtsp.pcap", 8, 11),
    ("ndpi/s7comm.pcap", 1, 1),
    ("ndpi/ssdp-m-search.pcap", 1, 1),
    ("ndpi/ssh.pcap", 2, 3),
    ("ndpi/upnp.pcap", 2, 2),
    ("ndpi/websocket.pcap", 1, 1),
    ("ndpi/zoom2.pcap", 5, 7),
];

#[test]
fn every_shared_capture_runs_with_stable_flow_counts() {
    let listed: Vec<&str> = COUNTS.iter().map(|c| c.0).collect();
    for dir in ["formats", "ndpi"] {
        for entry in std::fs::read_dir(shared(dir)).expect("shared/pcaps beside the repository") {
            let name = entry.expect("entry").file_name().into_string().expect("utf8");
            if name.contains(".pcap") {
                assert!(
                    listed.contains(&format!("{dir}/{name}").as_str()),
                    "{dir}/{name} has no expected count"
                );
            }
        }
    }
    for (file, correct, cic) in COUNTS {
        for (mode, want) in [(Mode::Correct, correct), (Mode::Cic2017, cic)] {
            let mut flows = Vec::new();
            let (summary, result) = run_file(
                &shared(file),
                FlowConfig::with_mode(mode),
                Pace::Fastest,
                &mut |f| flows.push(f),
                |_| {},
            );
            result.unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(flows.len() as u64, *want, "{file} in {mode:?}");
            assert_eq!(summary.table.flows_emitted, *want);
            assert!(summary.read.frames > 0, "{file}: no frames");
            for f in &flows {
                assert!(f.packets() >= if mode == Mode::Cic2017 { 2 } else { 1 });
                assert!(f.first_ts_ns <= f.last_ts_ns || mode == Mode::Cic2017);
            }
        }
    }
}

#[test]
fn nanosecond_and_microsecond_files_agree() {
    let read = |rel: &str| {
        let mut flows = Vec::new();
        let (_, result) = run_file(
            &shared(rel),
            FlowConfig::default(),
            Pace::Fastest,
            &mut |f| flows.push(f),
            |_| {},
        );
        result.expect("reads");
        flows
    };
    let us = read("formats/dhcp.pcap");
    for rel in [
        "formats/dhcp-nanosecond.pcap",
        "formats/dhcp-nanosecond.pcapng",
        "formats/dhcp.pcapng",
    ] {
        let other = read(rel);
        assert_eq!(other.len(), us.len());
        for (a, b) in us.iter().zip(&other) {
            assert_eq!(a.key, b.key, "{rel}");
            // Same capture at a finer resolution: within a microsecond.
            assert!((a.first_ts_ns - b.first_ts_ns).abs() < 1_000, "{rel}");
        }
    }
}

#[test]
fn nanosecond_digits_are_kept() {
    // A nanosecond pcap (magic a1b23c4d) with one UDP frame at 5 s + 123,456,789 ns.
    let frame = {
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5000, 53);
        let mut buf = Vec::new();
        builder.write(&mut buf, b"query").expect("build");
        buf
    };
    let mut file = Vec::new();
    file.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65_535, 1] {
        file.extend_from_slice(&word.to_le_bytes());
    }
    for word in [5u32, 123_456_789, frame.len() as u32, frame.len() as u32] {
        file.extend_from_slice(&word.to_le_bytes());
    }
    file.extend_from_slice(&frame);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ns.pcap");
    std::fs::write(&path, &file).expect("write");
    let mut flows = Vec::new();
    let (_, result) = run_file(
        &path,
        FlowConfig::default(),
        Pace::Fastest,
        &mut |f| flows.push(f),
        |_| {},
    );
    result.expect("reads");
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].first_ts_ns, 5_123_456_789);
}

fn agent(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch-agent"))
        .args(args)
        .output()
        .expect("run gatewatch-agent");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_error(args: &[&str], names: &str, problem: &str) {
    let (ok, _, stderr) = agent(args);
    assert!(!ok, "{args:?} should fail");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(lines.len(), 1, "one error line for {args:?}: {stderr}");
    assert!(
        lines[0].contains(names) && lines[0].contains(problem),
        "{args:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn old_pcap_versions_that_libpcap_reads_are_read() {
    // nfsv2.pcap is a version 2.1 file (tcpdump reads its 156 packets).
    let mut file = gatewatch_agent::capture::CaptureFile::open(shared("corpus/benign/nfsv2.pcap")).expect("opens");
    let mut frames = 0;
    file.for_each(|_| {
        frames += 1;
        true
    })
    .expect("reads");
    assert_eq!(frames, 156);
}

#[test]
fn invalid_captures_give_one_line_errors() {
    let cases = [
        ("invalid/pcap-invalid-version-1.pcap", "unsupported pcap version 1.4"),
        ("invalid/pcap-invalid-version-2.pcap", "unsupported pcap version 2.5"),
        (
            "invalid/pcapng-invalid-vers-1.pcapng",
            "unsupported pcapng section version 0.1",
        ),
        (
            "invalid/pcapng-invalid-vers-2.pcapng",
            "unsupported pcapng section version 1.1",
        ),
        ("invalid/shb-option-too-long.pcapng", "malformed"),
    ];
    for (rel, problem) in cases {
        let path = shared(rel);
        assert_one_line_error(
            &["features", "--pcap", path.to_str().expect("utf8")],
            rel.rsplit('/').next().expect("name"),
            problem,
        );
    }
}

#[test]
fn truncated_gzip_text_and_missing_inputs_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = std::fs::read(shared("ndpi/ssh.pcap")).expect("read");
    let truncated = dir.path().join("cut.pcap");
    std::fs::write(&truncated, &whole[..whole.len() - 37]).expect("write");
    let text = dir.path().join("notes.pcap");
    std::fs::write(&text, "this is not a capture\n").expect("write");
    let gz = dir.path().join("notes.gz");
    {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).expect("create"),
            flate2::Compression::default(),
        );
        enc.write_all(b"plain text, gzip-compressed").expect("write");
        enc.finish().expect("finish");
    }
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").expect("write");
    let s = |p: &Path| p.to_str().expect("utf8").to_string();
    assert_one_line_error(&["features", "--pcap", &s(&truncated)], "cut.pcap", "truncated");
    assert_one_line_error(
        &["features", "--pcap", &s(&text)],
        "notes.pcap",
        "not a pcap or pcapng file",
    );
    assert_one_line_error(
        &["features", "--pcap", &s(&gz)],
        "notes.gz",
        "gzip-compressed, but the content is not",
    );
    assert_one_line_error(&["features", "--pcap", &s(&empty)], "empty.pcap", "empty file");
    assert_one_line_error(
        &["features", "--pcap", "/no/such/file.pcap"],
        "/no/such/file.pcap",
        "cannot open",
    );
}

/// Named `live_capture_*` so that runs under qemu-user can skip it: libpcap's interface
/// ioctls (ethtool) are not emulated there.
#[test]
fn live_capture_of_a_missing_interface_is_refused() {
    assert_one_line_error(
        &["capture", "--interface", "gw-no-such-if0", "--count", "1"],
        "gw-no-such-if0",
        "no such interface",
    );
}

#[test]
fn truncated_file_still_writes_the_flows_before_the_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = std::fs::read(shared("ndpi/WebattackXSS.pcap")).expect("read");
    let cut = dir.path().join("half.pcap");
    std::fs::write(&cut, &whole[..whole.len() / 2 + 3]).expect("write");
    let out = dir.path().join("flows.csv");
    let (ok, _, stderr) = agent(&[
        "features",
        "--pcap",
        cut.to_str().expect("utf8"),
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert!(!ok);
    assert!(stderr.contains("wrote the"), "{stderr}");
    let rows = std::fs::read_to_string(&out).expect("csv").lines().count();
    assert!(rows > 100, "flows before the cut are kept: {rows} rows");
}

#[test]
fn features_cli_writes_published_layout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("flows.csv");
    let (ok, _, stderr) = agent(&[
        "features",
        "--pcap",
        shared("ndpi/WebattackXSS.pcap").to_str().expect("utf8"),
        "--mode",
        "cic2017",
        "--out",
        out.to_str().expect("utf8"),
        "--attacker",
        "172.16.0.1",
        "--attack-label",
        "Web Attack - XSS",
    ]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("done: packets 9374"), "{stderr}");
    let text = std::fs::read_to_string(&out).expect("csv");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with(" Destination Port, Flow Duration,"));
    assert_eq!(header.split(',').count(), 79);
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 1318);
    assert!(rows
        .iter()
        .all(|r| r.split(',').count() == 79 && r.ends_with(",Web Attack - XSS")));
}

#[test]
fn replay_keeps_the_capture_timing() {
    // ftp_failed.pcap spans 7.2 s; at 20x it must take at least 0.36 s, and give the same flows.
    let path = shared("ndpi/ftp_failed.pcap");
    let started = std::time::Instant::now();
    let mut paced = Vec::new();
    let (_, result) = run_file(
        &path,
        FlowConfig::default(),
        Pace::Original { speed: 20.0 },
        &mut |f| paced.push(f),
        |_| {},
    );
    result.expect("reads");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(340),
        "{:?}",
        started.elapsed()
    );
    let mut fast = Vec::new();
    let (_, result) = run_file(
        &path,
        FlowConfig::default(),
        Pace::Fastest,
        &mut |f| fast.push(f),
        |_| {},
    );
    result.expect("reads");
    assert_eq!(paced, fast);
}
