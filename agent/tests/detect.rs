//! Detection end to end: simulated packets → flow table → per-device windows → the shipped
//! default model in tract. Seed 1 of the simulator is held out of the model's training data.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use gatewatch_agent::capture::sim::{simulate, AttackType, FloodVariant, SimConfig};
use gatewatch_agent::detect::{DetectConfig, Detector};
use gatewatch_agent::flow::FlowConfig;
use gatewatch_agent::pipeline::Extractor;
use gatewatch_models::score::Model;
use gatewatch_models::store::{self, Metadata};
use gatewatch_proto::{Detection, FlowRecord};

const TARGET: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 20);

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default")
}

fn model() -> Arc<Model> {
    Arc::new(Model::load(&model_dir()).expect("the default model loads"))
}

fn flows(attack: Option<AttackType>, secs: u64) -> Vec<FlowRecord> {
    let mut cfg = SimConfig::new(TARGET);
    cfg.attack = attack;
    cfg.duration = Duration::from_secs(secs);
    cfg.seed = 1;
    let sim = simulate(&cfg).expect("valid simulation settings");
    let mut flows = Vec::new();
    Extractor::new(FlowConfig::default()).run_frames(&sim.frames, &mut |f| flows.push(f));
    flows
}

fn detect(model: Arc<Model>, flows: &[FlowRecord], batch: usize) -> Vec<Detection> {
    let mut config = DetectConfig::new(vec!["192.168.0.0/16".parse().expect("network")]);
    config.batch = batch;
    let mut detector = Detector::new(model, config);
    let mut out = Vec::new();
    for f in flows {
        detector.push(f, &mut |d| out.push(d)).expect("scoring works");
    }
    detector.flush(&mut |d| out.push(d)).expect("scoring works");
    assert_eq!(detector.stats().scored, out.len() as u64);
    out
}

fn of_target(detections: &[Detection]) -> Vec<&Detection> {
    detections.iter().filter(|d| d.device == IpAddr::V4(TARGET)).collect()
}

#[test]
fn a_port_scan_is_detected_as_a_scan() {
    let detections = detect(model(), &flows(Some(AttackType::PortScan), 15), 64);
    let target = of_target(&detections);
    assert!(target.len() > 100, "a scan makes many windows: {}", target.len());
    let attacks: Vec<_> = target.iter().filter(|d| d.is_attack()).collect();
    assert!(
        attacks.len() * 10 >= target.len() * 9,
        "{} of {}",
        attacks.len(),
        target.len()
    );
    let scans = attacks.iter().filter(|d| d.family == "scan").count();
    assert!(
        scans * 10 >= attacks.len() * 9,
        "{scans} of {} called scan",
        attacks.len()
    );
}

#[test]
fn a_syn_flood_is_detected_as_denial_of_service() {
    let detections = detect(model(), &flows(Some(AttackType::DdosFlood(FloodVariant::Syn)), 15), 64);
    let target = of_target(&detections);
    let attacks: Vec<_> = target.iter().filter(|d| d.is_attack()).collect();
    assert!(
        attacks.len() * 10 >= target.len() * 9,
        "{} of {}",
        attacks.len(),
        target.len()
    );
    let dos = attacks.iter().filter(|d| d.family == "dos_ddos").count();
    assert!(
        dos * 10 >= attacks.len() * 8,
        "{dos} of {} called dos_ddos",
        attacks.len()
    );
}

#[test]
fn benign_iot_traffic_is_quiet() {
    let detections = detect(model(), &flows(None, 120), 64);
    assert!(
        detections.len() >= 20,
        "two minutes of five devices: {}",
        detections.len()
    );
    let attacks = detections.iter().filter(|d| d.is_attack()).count();
    assert!(
        attacks * 20 <= detections.len(),
        "{attacks} of {} benign windows flagged",
        detections.len()
    );
}

#[test]
fn batching_and_a_model_swap_change_nothing_but_the_latency() {
    let flows = flows(Some(AttackType::PortScan), 10);
    let model = model();
    let one_by_one = detect(model.clone(), &flows, 1);
    let batched = detect(model.clone(), &flows, 64);
    assert_eq!(one_by_one.len(), batched.len());
    for (a, b) in one_by_one.iter().zip(&batched) {
        assert_eq!((a.device, a.window), (b.device, b.window));
        assert!((a.score - b.score).abs() <= 1e-5, "{} vs {}", a.score, b.score);
        assert_eq!(a.family, b.family);
        assert!((a.confidence - (a.score - 0.5).abs() * 2.0).abs() <= 1e-6);
        let total: f32 = a.family_probs.values().sum();
        assert!((total - 1.0).abs() <= 1e-4, "family probabilities sum to {total}");
    }
    // Swapping the model half-way keeps the windows collected so far.
    let mut detector = Detector::new(
        model.clone(),
        DetectConfig::new(vec!["192.168.0.0/16".parse().expect("net")]),
    );
    let mut swapped = Vec::new();
    for (i, f) in flows.iter().enumerate() {
        if i == flows.len() / 2 {
            detector.set_model(model.clone());
        }
        detector.push(f, &mut |d| swapped.push(d)).expect("scoring works");
    }
    detector.flush(&mut |d| swapped.push(d)).expect("scoring works");
    assert_eq!(swapped.len(), batched.len());
}

/// Runs `gatewatch-agent score` with the default model on a capture; the detections it
/// printed and its standard error.
fn score_cli(devices: &str, pcap: &Path) -> (Vec<Detection>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewatch-agent"))
        .args(["score", "--devices", devices, "--model"])
        .arg(model_dir())
        .arg("--pcap")
        .arg(pcap)
        .output()
        .expect("run score");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let detections = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a detection"))
        .collect();
    (detections, stderr)
}

#[test]
fn the_score_command_prints_detections_and_a_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcap = dir.path().join("scan.pcap");
    let agent = env!("CARGO_BIN_EXE_gatewatch-agent");
    let sim = Command::new(agent)
        .args(["simulate", "--attack", "port_scan", "--duration", "10s", "--pcap"])
        .arg(&pcap)
        .output()
        .expect("run simulate");
    assert!(sim.status.success(), "{}", String::from_utf8_lossy(&sim.stderr));
    let (detections, stderr) = score_cli("192.168.1.0/24", &pcap);
    assert!(!detections.is_empty());
    let version = Metadata::load(&model_dir().join(store::METADATA_FILE))
        .expect("metadata")
        .model_version;
    assert!(detections.iter().all(|d| d.model_version == version));
    let attacks = detections.iter().filter(|d| d.is_attack()).count();
    assert!(
        stderr.contains(&format!("scored {} windows", detections.len()))
            && stderr.contains(&format!("{attacks} attack windows")),
        "{stderr}"
    );

    let bad = Command::new(agent)
        .args(["score", "--devices", "192.168.1.0/33", "--pcap"])
        .arg(&pcap)
        .output()
        .expect("run score");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--devices"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    let no_model = Command::new(agent)
        .args(["score", "--devices", "192.168.1.0/24", "--model"])
        .arg(dir.path().join("missing"))
        .arg("--pcap")
        .arg(&pcap)
        .output()
        .expect("run score");
    assert!(!no_model.status.success());
    assert!(String::from_utf8_lossy(&no_model.stderr).contains("cannot load the model"));
}

#[test]
fn a_quiet_device_with_few_flows_is_scored_on_a_padded_window() {
    // Three flows of a port scan: the device never reaches ten.
    let scan = flows(Some(AttackType::PortScan), 10);
    let few: Vec<FlowRecord> = scan
        .iter()
        .filter(|f| f.key.src == IpAddr::V4(TARGET) || f.key.dst == IpAddr::V4(TARGET))
        .take(3)
        .cloned()
        .collect();
    assert_eq!(few.len(), 3);
    let mut config = DetectConfig::new(vec![format!("{TARGET}/32").parse().expect("network")]);
    config.partial_after_ns = 50_000_000;
    let mut detector = Detector::new(model(), config);
    let mut out = Vec::new();
    for f in &few {
        detector.push(f, &mut |d| out.push(d)).expect("scoring works");
    }
    detector.tick(&mut |d| out.push(d)).expect("scoring works");
    detector.flush(&mut |d| out.push(d)).expect("scoring works");
    assert!(out.is_empty(), "nothing before the device has been quiet for 50 ms");
    // Live sources: the data clock runs on with the wall clock between flows.
    std::thread::sleep(Duration::from_millis(80));
    detector.tick(&mut |d| out.push(d)).expect("scoring works");
    detector.flush(&mut |d| out.push(d)).expect("scoring works");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].padded_flows, 7);
    assert_eq!(out[0].window.last_flow_id, few[2].id);
    detector.finish(&mut |d| out.push(d)).expect("scoring works");
    assert_eq!(out.len(), 1, "scored once per quiet spell");
    assert_eq!(detector.stats().scored_partial, 1);
}

#[test]
fn every_device_with_few_flows_is_scored_when_a_capture_ends() {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps/corpus/suspect/xss.pcap");
    let (detections, stderr) = score_cli("192.168.0.0/16", &pcap);
    // Two flows between two devices: one partial window each.
    let mut devices: Vec<String> = detections.iter().map(|d| d.device.to_string()).collect();
    devices.sort();
    assert_eq!(devices, ["192.168.3.107", "192.168.3.109"], "{stderr}");
    assert!(detections.iter().all(|d| d.padded_flows == 8), "{detections:?}");
    assert!(stderr.contains("scored 2 windows (2 partial)"), "{stderr}");
}
