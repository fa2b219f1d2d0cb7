//! Packets per CPU-second through file read + decode + flow table + all 78 features,
//! next to the raw libpcap read rate of the same file in the same run (the ceiling),
//! and peak RSS with 100 k live flows. Run: `cargo bench -p gatewatch-agent --bench throughput`.
//!
//! The capture is built from the shared real captures, replicated with shifted IPv4
//! addresses until it holds at least 1.2 M packets (snap length 128: headers are what
//! flow features read; wire lengths are kept). It is cached outside the repository.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use gatewatch_agent::capture::{CaptureFile, Frame, LinkType, PacketMeta, PcapWriter};
use gatewatch_agent::flow::{FlowConfig, FlowTable, Mode};
use gatewatch_agent::pipeline::{run_file, Pace};

const TARGET_PACKETS: u64 = 1_200_000;
const CICFLOWMETER_ANCHOR: f64 = 97_000.0;
const NFSTREAM_ANCHOR: f64 = 60_000.0;
const LIBPCAP_ANCHOR: f64 = 13_800_000.0;
const SOURCES: &[&str] = &[
    "ndpi/reddit.pcap",
    "ndpi/zoom2.pcap",
    "ndpi/WebattackXSS.pcap",
    "ndpi/coap_mqtt.pcap",
    "ndpi/ip_fragmented_garbage.pcap",
    "ndpi/rdp.pcap",
    "ndpi/ssh.pcap",
    "ndpi/dnp3.pcap",
    "ndpi/bad-dns-traffic.pcap",
    "ndpi/quic-mvfst-22_decryption_error.pcap",
    "formats/logistics_multicast.pcapng",
];

/// CPU time of the calling thread, from the scheduler's own accounting.
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()))
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

fn build_capture(path: &Path) -> u64 {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps");
    let out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).expect("create bench capture"));
    let mut writer = PcapWriter::new(out, LinkType::Ethernet, 128).expect("header");
    let mut written = 0u64;
    let mut clock: i64 = 1_700_000_000_000_000_000;
    let mut replica: u32 = 0;
    while written < TARGET_PACKETS {
        for rel in SOURCES {
            let mut file = CaptureFile::open(shared.join(rel)).expect("shared capture");
            let mut last: Option<i64> = None;
            file.for_each(|f| {
                if f.link != LinkType::Ethernet {
                    return true;
                }
                // Keep the capture's rhythm, but squeeze pauses over a minute (one file jumps years).
                let gap = last.map_or(0, |l| (f.ts_ns - l).clamp(0, 60_000_000_000));
                last = Some(f.ts_ns);
                clock += gap;
                let mut data = f.data.to_vec();
                // Shift IPv4 addresses per replica so replicas are distinct flows.
                if data.len() >= 34 && data[12..14] == [0x08, 0x00] {
                    let r = replica.to_be_bytes();
                    data[28] ^= r[3];
                    data[27] ^= r[2];
                    data[32] ^= r[3];
                    data[31] ^= r[2];
                }
                writer
                    .write(&Frame {
                        ts_ns: clock,
                        link: LinkType::Ethernet,
                        data: &data,
                        wire_len: f.wire_len,
                    })
                    .expect("write");
                written += 1;
                true
            })
            .expect("read shared capture");
            clock += 1_000_000_000;
        }
        replica += 1;
    }
    writer
        .into_inner()
        .into_inner()
        .expect("flush")
        .sync_all()
        .expect("sync");
    written
}

fn best_of<F: FnMut() -> u64>(runs: usize, mut f: F) -> (u64, f64) {
    let mut best = f64::INFINITY;
    let mut count = 0;
    for _ in 0..runs {
        let cpu0 = thread_cpu_seconds();
        count = f();
        best = best.min(thread_cpu_seconds() - cpu0);
    }
    (count, best)
}

fn rss_probe(flows: u32) {
    let baseline = peak_rss_mb();
    let mut table = FlowTable::new(FlowConfig {
        max_live_flows: flows as usize,
        ..FlowConfig::default()
    });
    let started = Instant::now();
    for i in 0..flows {
        let pkt = PacketMeta {
            ts_ns: 1_700_000_000_000_000_000 + i64::from(i) * 1_000,
            src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i / 50_000)),
            dst: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)),
            src_port: 1024 + (i % 50_000) as u16,
            dst_port: 443,
            protocol: 6,
            ip_header_len: 20,
            l4_header_len: 20,
            payload_len: 100,
            padded_payload_len: 100,
            tcp_flags: 0x18,
            tcp_window: Some(502),
        };
        table.process(&pkt, &mut |_| {});
    }
    assert_eq!(table.stats().live, u64::from(flows));
    println!(
        "{} {:.1} {:.1} {:.3}",
        flows,
        baseline,
        peak_rss_mb(),
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rss-probe") {
        let flows = args.get(i + 1).and_then(|v| v.parse().ok()).unwrap_or(100_000);
        rss_probe(flows);
        return;
    }
    let cache =
        PathBuf::from(std::env::var("GATEWATCH_BENCH_DIR").unwrap_or_else(|_| "/var/cache/gatewatch-bench".into()));
    std::fs::create_dir_all(&cache).expect("bench cache dir");
    let path = cache.join("mixed-1.2M.pcap");
    if !path.exists() {
        eprintln!("building {} from the shared captures…", path.display());
        let n = build_capture(&path);
        eprintln!("wrote {n} packets");
    }

    let (packets, libpcap_cpu) = best_of(3, || {
        let mut cap = pcap::Capture::from_file(&path).expect("libpcap open");
        let mut n = 0u64;
        while cap.next_packet().is_ok() {
            n += 1;
        }
        n
    });
    let (parser_packets, parser_cpu) = best_of(3, || {
        let mut file = CaptureFile::open(&path).expect("open");
        let mut n = 0u64;
        file.for_each(|_| {
            n += 1;
            true
        })
        .expect("read");
        n
    });
    assert_eq!(parser_packets, packets);
    let mut rows = Vec::new();
    for mode in [Mode::Correct, Mode::Cic2017] {
        let mut flows = 0u64;
        let (_, cpu) = best_of(3, || {
            flows = 0;
            let (summary, result) = run_file(
                &path,
                FlowConfig::with_mode(mode),
                Pace::Fastest,
                &mut |_| flows += 1,
                |_| {},
            );
            result.expect("run");
            summary.read.frames
        });
        rows.push((mode, flows, cpu));
    }

    let rate = |cpu: f64| packets as f64 / cpu;
    let libpcap = rate(libpcap_cpu);
    println!("capture: {} ({} packets, snaplen 128)", path.display(), packets);
    println!("{:<44} {:>12}  compared with", "stage (one core)", "packets/CPU-s");
    println!(
        "{:<44} {:>12.0}  anchor on this kind of machine: {:.1} M",
        "libpcap read only (ceiling)",
        libpcap,
        LIBPCAP_ANCHOR / 1e6
    );
    println!(
        "{:<44} {:>12.0}  {:.2} x libpcap read",
        "pcap-parser read only (our reader)",
        rate(parser_cpu),
        rate(parser_cpu) / libpcap
    );
    for (mode, flows, cpu) in &rows {
        let r = rate(*cpu);
        println!(
            "{:<44} {:>12.0}  {:.1} % of libpcap read; {:.0} x CICFlowMeter (97 k); {:.0} x nfstream (60 k); {} flows",
            format!(
                "read + decode + flows + 78 features, {}",
                if *mode == Mode::Correct { "correct" } else { "cic2017" }
            ),
            r,
            100.0 * r / libpcap,
            r / CICFLOWMETER_ANCHOR,
            r / NFSTREAM_ANCHOR,
            flows
        );
    }
    let probe = Command::new(&args[0])
        .args(["--rss-probe", "100000"])
        .output()
        .expect("rss probe");
    let text = String::from_utf8_lossy(&probe.stdout);
    let fields: Vec<&str> = text.split_whitespace().collect();
    if let [flows, base, peak, secs] = fields[..] {
        println!("peak RSS with {flows} live flows: {peak} MB (process baseline {base} MB; filled in {secs} s)");
    } else {
        println!("rss probe failed: {}", String::from_utf8_lossy(&probe.stderr));
    }
}
