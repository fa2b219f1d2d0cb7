//! Prevention enforced for real: nftables in a network namespace made by the test, with a
//! second namespace as the other host on a veth pair. A blocked peer's pings stop and come
//! back when the block expires; a rate-limited device keeps a few packets per second; a
//! quarantined one none; a protected address is never touched; the agent's table goes with it.

mod netns;

use std::process::Command;
use std::time::{Duration, Instant};

use gatewatch_agent::prevent::{Engine, PreventConfig};
use gatewatch_proto::fleet::{Rule, RuleAction};
use gatewatch_proto::{Detection, WindowSpan};
use netns::{is_root, Pair};
use uuid::Uuid;

fn usable() -> bool {
    is_root()
        && Command::new("nft")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// Replies to `count` pings sent from the host (b) to the gateway (a) at `interval` seconds.
fn pings(lab: &Pair, count: u32, interval: &str) -> u32 {
    let out = lab
        .b
        .command("ping")
        .args(["-n", "-q", "-c"])
        .arg(count.to_string())
        .args(["-i", interval, "-W", "1", &lab.a.ip])
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
        padded_flows: 0,
        simulation: None,
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

fn has_table(lab: &Pair) -> bool {
    let out = lab
        .a
        .command("nft")
        .args(["list", "tables"])
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
    // a is the gateway enforcing, b the other host.
    let lab = Pair::new("pv", 214);
    let (gateway_ip, host_ip) = (lab.a.ip.clone(), lab.b.ip.clone());
    assert_eq!(pings(&lab, 1, "0.2"), 1, "the hosts reach each other");

    let nft = vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        lab.a.ns.clone(),
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
    assert_eq!(pings(&lab, 2, "0.2"), 0, "blocked");
    let mut back = false;
    while blocked_at.elapsed() < Duration::from_secs(15) {
        if pings(&lab, 1, "0.2") == 1 {
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
    let got = pings(&lab, 100, "0.02");
    assert!(got > 0 && got < 40, "{got} of 100 pings in 2 s at 5 per second");

    // quarantine: nothing gets through.
    engine.set_rules(vec![rule(RuleAction::Quarantine, 30, 0)]);
    let events = engine.evaluate(&detection(&host_ip, &gateway_ip), Instant::now(), now_ms);
    assert!(events[0].enforced && events[0].success, "{:?}", events[0]);
    assert_eq!(pings(&lab, 2, "0.2"), 0, "quarantined");

    // A clean stop removes the table and every measure with it.
    drop(engine);
    assert!(!has_table(&lab));
    assert_eq!(pings(&lab, 1, "0.2"), 1);

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
    assert_eq!(pings(&lab, 1, "0.2"), 1, "still reachable");
    assert_eq!(engine.stats().spared, 1);
}
