//! Prevention enforced for real: nftables in a network namespace made by the test, with a
//! second namespace as the other host on a veth pair. A blocked peer's pings stop and come
//! back when the block expires; a rate-limited device keeps a few packets per second; a
//! quarantined one none; a protected address is never touched; the agent's table goes with it.

use std::process::Command;
use std::time::{Duration, Instant};

use gatewatch_agent::prevent::{Engine, PreventConfig};
use gatewatch_proto::fleet::{Rule, RuleAction};
use gatewatch_proto::{Detection, WindowSpan};
use uuid::Uuid;

struct Lab {
    gateway: String,
    host: String,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.gateway, &self.host] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn sh(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(status.success(), "{args:?} failed");
}

fn usable() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let nft = Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    root && nft
}

/// Replies to `count` pings sent from the host namespace at `interval` seconds.
fn pings(lab: &Lab, to: &str, count: u32, interval: &str) -> u32 {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.host, "ping", "-n", "-q", "-c"])
        .arg(count.to_string())
        .args(["-i", interval, "-W", "1", to])
        .output()
        .expect("ping runs");
    let text = String::from_utf8_lossy(&out.stdout);
    // "N packets transmitted, M received, ..."
    text.split(',')
        .find_map(|part| part.trim().strip_suffix(" received")?.trim().parse().ok())
        .unwrap_or(0)
}

fn detection(device: &str, peer: &str) -> Detection {
    Detection {
        device: device.parse().expect("ip"),
        window: WindowSpan {
            first_flow_id: 1,
            last_flow_id: 10,
            first_ts_ns: 0,
            last_ts_ns: 1,
        },
        score: 0.99,
        label: "attack".into(),
        confidence: 0.98,
        family: "scan".into(),
        family_probs: Default::default(),
        model_version: "test".into(),
        inference_latency_ms: 0.1,
        peer: Some(peer.parse().expect("ip")),
    }
}

fn rule(action: RuleAction, duration_secs: u32, rate_pps: u32) -> Rule {
    Rule {
        id: Uuid::now_v7(),
        name: format!("{action:?}"),
        device: None,
        threshold: 0.5,
        action,
        cooldown_secs: 0,
        duration_secs,
        rate_pps,
    }
}

fn has_table(lab: &Lab) -> bool {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.gateway, "nft", "list", "tables"])
        .output()
        .expect("nft runs");
    String::from_utf8_lossy(&out.stdout).contains("gatewatch")
}

#[test]
fn measures_are_enforced_with_nftables_and_expire() {
    if !usable() {
        eprintln!("SKIPPED measures_are_enforced_with_nftables_and_expire: needs root and nft (apt install nftables)");
        return;
    }
    let tag = std::process::id() % 100_000;
    let net = 100 + tag % 150;
    let (gateway_ip, host_ip) = (format!("10.214.{net}.1"), format!("10.214.{net}.2"));
    let lab = Lab {
        gateway: format!("gwp{tag}g"),
        host: format!("gwp{tag}h"),
    };
    let (veth_g, veth_h) = (format!("gp{tag}g"), format!("gp{tag}h"));
    sh(&["ip", "netns", "add", &lab.gateway]);
    sh(&["ip", "netns", "add", &lab.host]);
    sh(&[
        "ip",
        "link",
        "add",
        &veth_g,
        "netns",
        &lab.gateway,
        "type",
        "veth",
        "peer",
        "name",
        &veth_h,
        "netns",
        &lab.host,
    ]);
    for (ns, dev, ip) in [(&lab.gateway, &veth_g, &gateway_ip), (&lab.host, &veth_h, &host_ip)] {
        sh(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", dev]);
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    assert_eq!(pings(&lab, &gateway_ip, 1, "0.2"), 1, "the hosts reach each other");

    let nft = vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        lab.gateway.clone(),
        "nft".into(),
    ];
    let config = PreventConfig {
        enforce: true,
        protected: Vec::new(),
        nft: nft.clone(),
    };
    let now_ms = 1_700_000_000_000;

    // block_ip: the window's peer (the host) is cut off for 3 s, then let back.
    let mut engine = Engine::new(&config, vec![rule(RuleAction::BlockIp, 3, 0)]).expect("table installed");
    assert!(has_table(&lab));
    let events = engine.evaluate(&detection(&gateway_ip, &host_ip), Instant::now(), now_ms);
    assert_eq!(events.len(), 1);
    let blocked_at = Instant::now();
    assert!(events[0].enforced && events[0].success, "{:?}", events[0]);
    assert_eq!(events[0].target, Some(host_ip.parse().expect("ip")));
    assert_eq!(events[0].expires_at_ms, Some(now_ms + 3_000));
    assert_eq!(pings(&lab, &gateway_ip, 2, "0.2"), 0, "blocked");
    let mut back = false;
    while blocked_at.elapsed() < Duration::from_secs(15) {
        if pings(&lab, &gateway_ip, 1, "0.2") == 1 {
            back = true;
            break;
        }
    }
    assert!(back, "the block expires");
    assert!(
        blocked_at.elapsed() >= Duration::from_secs(2),
        "but not before its time"
    );

    // rate_limit: the device (the host here) keeps about 5 packets per second.
    engine.set_rules(vec![rule(RuleAction::RateLimit, 30, 5)]);
    let events = engine.evaluate(&detection(&host_ip, &gateway_ip), Instant::now(), now_ms);
    assert!(events[0].enforced && events[0].success, "{:?}", events[0]);
    let got = pings(&lab, &gateway_ip, 100, "0.02");
    assert!(got > 0 && got < 40, "{got} of 100 pings in 2 s at 5 per second");

    // quarantine: nothing gets through.
    engine.set_rules(vec![rule(RuleAction::Quarantine, 30, 0)]);
    let events = engine.evaluate(&detection(&host_ip, &gateway_ip), Instant::now(), now_ms);
    assert!(events[0].enforced && events[0].success, "{:?}", events[0]);
    assert_eq!(pings(&lab, &gateway_ip, 2, "0.2"), 0, "quarantined");

    // A clean stop removes the table and every measure with it.
    drop(engine);
    assert!(!has_table(&lab));
    assert_eq!(pings(&lab, &gateway_ip, 1, "0.2"), 1);

    // A protected address is never acted on.
    let config = PreventConfig {
        enforce: true,
        protected: vec![format!("{host_ip}/32").parse().expect("network")],
        nft,
    };
    let mut engine = Engine::new(&config, vec![rule(RuleAction::BlockIp, 30, 0)]).expect("table installed");
    let events = engine.evaluate(&detection(&gateway_ip, &host_ip), Instant::now(), now_ms);
    assert!(
        !events[0].success && events[0].message.contains("protected"),
        "{:?}",
        events[0]
    );
    assert_eq!(pings(&lab, &gateway_ip, 1, "0.2"), 1, "still reachable");
    assert_eq!(engine.stats().spared, 1);
}
