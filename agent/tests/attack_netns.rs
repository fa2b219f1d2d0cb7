//! An attack-simulation session on a gateway that enforces prevention, in network namespaces
//! made by the test: the agent captures on a veth, talks MQTT to a Mosquitto inside the
//! gateway's namespace (the test speaks the hub's part with mosquitto_pub and _sub), runs a
//! session against the device at the other end and is told a `block_ip` rule. No simulated
//! packet leaves the gateway (the veth's counters do not move), and the rule the simulated
//! attack fires is only a dry run: nothing is added to nftables.

mod netns;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gatewatch_proto::fleet::{self, Action, AttackStepSpec, Channel, Rule, RuleAction};
use netns::{is_root, Pair};
use uuid::Uuid;

fn usable() -> bool {
    // Installed: it runs (mosquitto's tools exit non-zero on --help).
    let has = |program: &str| Command::new(program).arg("--help").output().is_ok();
    is_root() && has("nft") && has("mosquitto") && has("mosquitto_pub") && has("mosquitto_sub")
}

fn counter(lab_host: &netns::Host, name: &str) -> u64 {
    let out = lab_host
        .command("cat")
        .arg(format!("/sys/class/net/{}/statistics/{name}", lab_host.dev))
        .output()
        .expect("cat");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a counter")
}

fn publish(lab: &Pair, port: u16, topic: &str, payload: &[u8]) {
    let mut child = lab
        .a
        .command("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q", "1", "-t", topic, "-s"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    use std::io::Write;
    child.stdin.take().expect("stdin").write_all(payload).expect("payload");
    assert!(child.wait().expect("mosquitto_pub").success());
}

#[test]
fn simulated_attacks_never_leave_the_gateway_and_only_dry_run_prevention() {
    if !usable() {
        eprintln!("SKIPPED simulated_attacks_never_leave_the_gateway_and_only_dry_run_prevention: needs root, nft and mosquitto-clients");
        return;
    }
    let mut lab = Pair::new("as", 215);
    for h in [&lab.a, &lab.b] {
        // No neighbour discovery or router solicitations: the counters move only for real sends.
        netns::sh(&[
            "ip",
            "netns",
            "exec",
            &h.ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
        ]);
    }
    let port = 18_830 + (std::process::id() % 1000) as u16;
    let broker = lab
        .a
        .command("mosquitto")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto");
    lab.children.push(broker);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab
        .a
        .command("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "probe", "-m", "up"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(Instant::now() < deadline, "mosquitto did not start in the namespace");
        std::thread::sleep(Duration::from_millis(100));
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let agent_id = Uuid::now_v7();
    std::fs::write(state.join("agent_id"), agent_id.to_string()).expect("agent id");
    let device = lab.b.ip.clone();
    let subnet = format!("{}.0/24", device.rsplit_once('.').expect("ipv4").0);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"name = "netns-attack"
state_dir = "{state}"
log = "info"
metrics_listen = "off"
[hub]
mqtt_url = "mqtt://127.0.0.1:{port}"
heartbeat_secs = 1
[source]
kind = "interface"
interface = "{dev}"
[detect]
devices = ["{subnet}"]
model_dir = "{model}"
[uplink]
flow_records = false
drain_secs = 1
[prevent]
enforce = true
"#,
            state = state.display(),
            dev = lab.a.dev,
            model = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/default"),
        ),
    )
    .expect("config");

    // The hub's side: everything the agent says.
    let heard_path = dir.path().join("heard.txt");
    let heard = std::fs::File::create(&heard_path).expect("heard file");
    let sub = lab
        .a
        .command("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-v", "-t"])
        .arg(format!("{}/{agent_id}/#", fleet::ROOT))
        .stdout(heard)
        .spawn()
        .expect("mosquitto_sub");
    lab.children.push(sub);
    let log_path = dir.path().join("agent.log");
    let agent = lab
        .a
        .command(env!("CARGO_BIN_EXE_gatewatch-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).expect("log"))
        .spawn()
        .expect("agent");
    lab.children.push(agent);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let text = || std::fs::read_to_string(&heard_path).unwrap_or_default();
    let wait = |what: &str, limit: Duration, done: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + limit;
        while !done(&text()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}\nheard:\n{}",
                log(),
                text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("the agent online", Duration::from_secs(30), &|t| {
        t.contains("\"online\"")
    });

    let (tx_before, peer_rx_before) = (counter(&lab.a, "tx_packets"), counter(&lab.b, "rx_packets"));
    let command = |action: Action| {
        fleet::payload(&fleet::Command {
            schema: fleet::SCHEMA,
            action,
        })
    };
    let cmd_topic = fleet::topic(agent_id, Channel::Command);
    publish(
        &lab,
        port,
        &cmd_topic,
        &command(Action::SetRules {
            rules: vec![Rule {
                id: Uuid::now_v7(),
                name: "block attackers".into(),
                device: None,
                threshold: 0.5,
                action: RuleAction::BlockIp,
                cooldown_secs: 0,
                duration_secs: 600,
                rate_pps: 0,
            }],
        }),
    );
    let session = Uuid::now_v7();
    publish(
        &lab,
        port,
        &cmd_topic,
        &command(Action::AttackStart {
            command_id: Uuid::now_v7(),
            session_id: session,
            device: device.parse().expect("ip"),
            steps: vec![AttackStepSpec {
                order: 1,
                attack_type: "port_scan".into(),
                variant: None,
                duration_secs: 4,
                intensity: 0.05,
                adversarial_epsilon: None,
            }],
            gap_secs: 1,
        }),
    );
    wait("the session's end", Duration::from_secs(40), &|t| {
        t.contains("session_ended")
    });
    wait("its predictions", Duration::from_secs(20), &|t| {
        t.contains(&session.to_string()) && t.contains("\"prevention\"")
    });

    let heard = text();
    assert!(heard.contains("\"status\":\"completed\""), "{heard}\n{}", log());
    let predictions: Vec<&str> = heard
        .lines()
        .filter(|l| l.contains("/predictions ") && l.contains(&session.to_string()))
        .collect();
    assert!(!predictions.is_empty());
    let events: Vec<serde_json::Value> = predictions
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.split_once(' ')?.1).ok())
        .flat_map(|b| b["predictions"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["simulation"]["session_id"] == session.to_string())
        .flat_map(|p| p["prevention"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(!events.is_empty(), "the rule fired on the simulated attack");
    for e in &events {
        assert_eq!(e["enforced"], false, "{e}");
        assert!(
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("dry run (attack simulation)")),
            "{e}"
        );
    }
    let mut ruleset = String::new();
    lab.a
        .command("nft")
        .args(["list", "ruleset"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("nft")
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut ruleset)
        .expect("ruleset");
    assert!(
        ruleset.contains("gatewatch"),
        "the enforcing agent has its table:\n{ruleset}"
    );
    assert!(
        !ruleset.contains("198.51.100.66"),
        "the simulated attacker was not blocked:\n{ruleset}"
    );
    assert_eq!(counter(&lab.a, "tx_packets"), tx_before, "no packet left the gateway");
    assert_eq!(
        counter(&lab.b, "rx_packets"),
        peer_rx_before,
        "no packet reached the device"
    );
}
