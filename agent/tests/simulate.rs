//! Simulated attacks, seen through the real flow extractor: each scenario must show the
//! flow-level signature a detector learns from it (what CIC-IDS2017 shows for the same
//! attack), and the ground-truth labels must cover exactly the attacker's flows.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gatewatch_agent::capture::sim::{simulate, AttackType, FloodVariant, SimConfig};
use gatewatch_agent::flow::label::Labeler;
use gatewatch_agent::flow::{FlowConfig, Mode};
use gatewatch_agent::pipeline::Extractor;
use gatewatch_proto::features::idx;
use gatewatch_proto::FlowRecord;

const TARGET: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 20);

struct Run {
    flows: Vec<FlowRecord>,
    labeler: Labeler,
}

impl Run {
    fn attack_flows(&self) -> Vec<&FlowRecord> {
        self.flows.iter().filter(|f| self.labeler.is_attack(f)).collect()
    }

    fn benign_flows(&self) -> Vec<&FlowRecord> {
        self.flows.iter().filter(|f| !self.labeler.is_attack(f)).collect()
    }
}

fn run(attack: Option<AttackType>, intensity: f64, secs: u64, mode: Mode) -> Run {
    let mut cfg = SimConfig::new(TARGET);
    cfg.attack = attack;
    cfg.intensity = intensity;
    cfg.duration = Duration::from_secs(secs);
    cfg.seed = 7;
    let sim = simulate(&cfg).expect("valid simulation settings");
    let mut flows = Vec::new();
    let mut extractor = Extractor::new(FlowConfig {
        mode,
        ..FlowConfig::default()
    });
    extractor.run_frames(&sim.frames, &mut |f| flows.push(f));
    assert_eq!(extractor.table_stats().evicted, 0, "the default table holds every flow");
    let labeler = Labeler {
        default_label: "BENIGN".into(),
        attack_label: attack.map_or_else(String::new, |a| a.to_string()),
        attackers: sim.truth.attackers.clone(),
        window_ns: sim.truth.window_ns,
    };
    Run { flows, labeler }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    assert!(n > 0, "mean of nothing");
    sum / n as f64
}

fn feature<'a>(flows: &'a [&'a FlowRecord], i: usize) -> impl Iterator<Item = f64> + 'a {
    flows.iter().map(move |f| f.features[i])
}

#[test]
fn benign_traffic_has_no_attack_flows_and_many_conversations() {
    let run = run(None, 0.5, 30, Mode::Correct);
    assert!(run.attack_flows().is_empty());
    assert!(run.flows.len() >= 20, "{} flows", run.flows.len());
    let ports: HashSet<u16> = run.flows.iter().map(|f| f.key.dst_port).collect();
    // MQTT, CoAP, DNS, NTP and HTTP at least.
    for port in [1883, 5683, 53, 123, 80] {
        assert!(ports.contains(&port), "no flow to port {port}: {ports:?}");
    }
}

#[test]
fn port_scan_is_many_tiny_flows_to_distinct_ports() {
    let run = run(Some(AttackType::PortScan), 0.5, 20, Mode::Correct);
    let attack = run.attack_flows();
    assert!(attack.len() >= 200, "{} scan flows", attack.len());
    let ports: HashSet<u16> = attack.iter().map(|f| f.key.dst_port).collect();
    assert!(ports.len() * 10 >= attack.len() * 9, "a scan probes distinct ports");
    let tiny = attack.iter().filter(|f| f.packets() <= 3).count();
    assert!(
        tiny * 10 >= attack.len() * 9,
        "{tiny} of {} flows have ≤ 3 packets",
        attack.len()
    );
    // Probes carry no payload, answered or not.
    assert!(mean(feature(&attack, idx::TOTAL_LENGTH_OF_FWD_PACKETS)) < 1.0);
    assert!(attack.iter().all(|f| f.features[idx::SYN_FLAG_COUNT] >= 1.0));
    // Benign flows are longer on average.
    let benign = run.benign_flows();
    assert!(mean(feature(&benign, idx::TOTAL_FWD_PACKETS)) > mean(feature(&attack, idx::TOTAL_FWD_PACKETS)));
}

#[test]
fn syn_flood_comes_from_many_sources_without_payload() {
    let run = run(Some(AttackType::DdosFlood(FloodVariant::Syn)), 0.2, 10, Mode::Correct);
    let attack = run.attack_flows();
    assert!(attack.len() >= 500, "{} flood flows", attack.len());
    let sources: HashSet<IpAddr> = attack.iter().map(|f| f.key.src).collect();
    assert!(sources.len() >= 10, "a botnet, not one host: {} sources", sources.len());
    assert!(attack.iter().all(|f| f.key.dst == IpAddr::V4(TARGET)));
    assert!(mean(feature(&attack, idx::TOTAL_LENGTH_OF_FWD_PACKETS)) < 1.0);
    assert!(mean(feature(&attack, idx::SYN_FLAG_COUNT)) >= 1.0);
}

#[test]
fn udp_flood_is_high_rate_udp_to_the_target() {
    let run = run(Some(AttackType::DdosFlood(FloodVariant::Udp)), 0.2, 10, Mode::Correct);
    let attack = run.attack_flows();
    assert!(attack.len() >= 100, "{} flood flows", attack.len());
    // UDP to closed ports, and the target's ICMP port-unreachable answers.
    assert!(attack.iter().all(|f| f.key.protocol == 17 || f.key.protocol == 1));
    let udp: Vec<&FlowRecord> = attack.iter().copied().filter(|f| f.key.protocol == 17).collect();
    assert!(
        udp.len() * 2 > attack.len(),
        "{} of {} flows are UDP",
        udp.len(),
        attack.len()
    );
    let attack = udp;
    // One datagram per random port: the flood shows as a storm of new flows, each tiny.
    let benign = run.benign_flows();
    assert!(
        attack.len() > 20 * benign.len(),
        "{} flood flows vs {} benign",
        attack.len(),
        benign.len()
    );
    assert!(mean(feature(&attack, idx::TOTAL_FWD_PACKETS)) < 3.0);
}

#[test]
fn slowloris_holds_long_connections_with_tiny_sparse_packets() {
    let run = run(Some(AttackType::SlowRate), 0.5, 60, Mode::Correct);
    let attack = run.attack_flows();
    assert!(attack.len() >= 5, "{} slowloris connections", attack.len());
    assert!(attack.iter().all(|f| f.key.dst_port == 80 || f.key.src_port == 80));
    // Seconds between header fragments, connections that last tens of seconds.
    assert!(mean(feature(&attack, idx::FLOW_DURATION)) > 10e6, "µs");
    assert!(mean(feature(&attack, idx::FWD_IAT_MEAN)) > 1e6, "µs");
    assert!(mean(feature(&attack, idx::FWD_PACKET_LENGTH_MEAN)) < 100.0);
}

#[test]
fn ssh_brute_force_is_many_short_connections_to_port_22() {
    let run = run(Some(AttackType::BruteForceSsh), 0.5, 30, Mode::Correct);
    let attack = run.attack_flows();
    assert!(attack.len() >= 10, "{} login attempts", attack.len());
    assert!(attack.iter().all(|f| f.key.dst_port == 22));
    // A real exchange each time: handshake, banners, key exchange, failure.
    assert!(attack.iter().all(|f| f.fwd_packets >= 3 && f.bwd_packets >= 3));
    assert!(attack
        .iter()
        .all(|f| f.features[idx::TOTAL_LENGTH_OF_BWD_PACKETS] > 0.0));
}

#[test]
fn exfiltration_uploads_far_more_than_it_downloads() {
    let run = run(Some(AttackType::DataExfiltration), 0.5, 30, Mode::Correct);
    let attack = run.attack_flows();
    assert!(!attack.is_empty());
    let up: f64 = attack
        .iter()
        .map(|f| {
            if f.key.src == IpAddr::V4(TARGET) {
                f.features[idx::TOTAL_LENGTH_OF_FWD_PACKETS]
            } else {
                f.features[idx::TOTAL_LENGTH_OF_BWD_PACKETS]
            }
        })
        .sum();
    let down: f64 = attack
        .iter()
        .map(|f| {
            if f.key.src == IpAddr::V4(TARGET) {
                f.features[idx::TOTAL_LENGTH_OF_BWD_PACKETS]
            } else {
                f.features[idx::TOTAL_LENGTH_OF_FWD_PACKETS]
            }
        })
        .sum();
    assert!(up > 1e6, "{up} bytes uploaded");
    assert!(up > 20.0 * down, "up {up} down {down}");
}

#[test]
fn botnet_beacons_are_regular_small_flows_from_the_victim() {
    let run = run(Some(AttackType::BotnetBeacon), 0.5, 120, Mode::Correct);
    let attack = run.attack_flows();
    assert!(attack.len() >= 3, "{} beacons", attack.len());
    assert!(
        attack.iter().all(|f| f.key.src == IpAddr::V4(TARGET)),
        "the infected device calls out"
    );
    let mut starts: Vec<i64> = attack.iter().map(|f| f.first_ts_ns).collect();
    starts.sort_unstable();
    let gaps: Vec<f64> = starts.windows(2).map(|w| (w[1] - w[0]) as f64 / 1e9).collect();
    let m = mean(gaps.iter().copied());
    let spread = gaps.iter().map(|g| (g - m).abs()).fold(0.0, f64::max);
    assert!(spread < 0.5 * m, "beacon gaps {gaps:?} are regular");
}

#[test]
fn web_attacks_are_http_requests_with_payload() {
    for attack_type in [AttackType::WebXss, AttackType::WebSqli] {
        let run = run(Some(attack_type), 0.5, 30, Mode::Correct);
        let attack = run.attack_flows();
        assert!(attack.len() >= 5, "{attack_type}: {} flows", attack.len());
        assert!(attack.iter().all(|f| f.key.dst_port == 80));
        assert!(mean(feature(&attack, idx::TOTAL_LENGTH_OF_FWD_PACKETS)) > 100.0);
        assert!(mean(feature(&attack, idx::TOTAL_LENGTH_OF_BWD_PACKETS)) > 100.0);
    }
}

#[test]
fn every_attack_yields_attack_flows_in_both_modes() {
    for attack in AttackType::ALL {
        for mode in [Mode::Correct, Mode::Cic2017] {
            let run = run(Some(attack), 0.3, 20, mode);
            assert!(
                !run.attack_flows().is_empty(),
                "{attack} in {mode:?} mode: no attack flow"
            );
            assert!(
                !run.benign_flows().is_empty(),
                "{attack} in {mode:?} mode: no benign flow"
            );
            for f in run.attack_flows() {
                assert!(f.features.iter().all(|v| !v.is_nan()) || mode == Mode::Cic2017);
            }
        }
    }
}

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gatewatch-agent"))
}

fn data_rows(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("csv written");
    text.lines().skip(1).map(str::to_string).collect()
}

#[test]
fn simulate_command_writes_a_pcap_that_features_reads_back_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("scan.pcap");
    let simulated = dir.path().join("sim.csv");
    let replayed = dir.path().join("replayed.csv");
    let out = agent()
        .args([
            "simulate",
            "--attack",
            "port_scan",
            "--duration",
            "15s",
            "--seed",
            "3",
            "--pcap",
        ])
        .arg(&pcap)
        .arg("--features")
        .arg(&simulated)
        .output()
        .expect("agent runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("attack)"), "summary names the attack flows: {stderr}");

    let out = agent()
        .args([
            "features",
            "--layout",
            "labelled",
            "--attacker",
            "192.168.1.66",
            "--attack-label",
            "port_scan",
        ])
        .arg("--pcap")
        .arg(&pcap)
        .arg("--out")
        .arg(&replayed)
        .output()
        .expect("agent runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (a, b) = (data_rows(&simulated), data_rows(&replayed));
    assert!(a.len() > 100, "{} flows", a.len());
    assert_eq!(a, b, "the file holds exactly the simulated packets");
    assert!(a.iter().any(|r| r.ends_with(",port_scan")));
    assert!(a.iter().any(|r| r.ends_with(",BENIGN")));
}

#[test]
fn simulate_command_refuses_bad_settings_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("x.pcap");
    for (args, wanted) in [
        (vec!["--attack", "teleport"], "unknown attack type `teleport`"),
        (vec!["--intensity", "2"], "intensity"),
        (vec!["--target", "10.0.0.0"], "target"),
    ] {
        let out = agent()
            .arg("simulate")
            .args(&args)
            .arg("--pcap")
            .arg(&pcap)
            .output()
            .expect("agent runs");
        assert!(!out.status.success(), "{args:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(wanted), "{args:?}: {stderr}");
    }
}

#[test]
fn simulate_command_labels_each_hybrid_stage_by_its_own_attack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("hybrid.csv");
    let out = agent()
        .args(["simulate", "--attack", "hybrid", "--duration", "60s", "--pcap"])
        .arg(dir.path().join("hybrid.pcap"))
        .arg("--features")
        .arg(&csv)
        .output()
        .expect("agent runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let labels: HashSet<String> = data_rows(&csv)
        .iter()
        .filter_map(|r| r.rsplit(',').next().map(str::to_string))
        .collect();
    for stage in ["port_scan", "brute_force_ssh", "data_exfiltration", "BENIGN"] {
        assert!(labels.contains(stage), "no {stage} flow: {labels:?}");
    }
}
