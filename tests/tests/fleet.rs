//! The fleet link as one system: a hub process and two agent processes on loopback, joined
//! through the machine's Mosquitto (external-broker mode), the hub killed with SIGKILL in the
//! middle of the stream and started again, and a private broker taken away while an agent
//! keeps detecting. Every prediction an agent made must be in PostgreSQL exactly once.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn two_agents_through_mosquitto_lose_nothing_when_the_hub_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub {
        db: unique("gw_e2e_fleet"),
        port: free_port(),
        broker: HubBroker::External {
            port: 1883,
            client_id: unique("gw-e2e-hub"),
        },
        data: dir.path().join("hub-data"),
    };
    let mut hub_proc = hub.start(dir.path(), 1);

    // Live events: log in as the first admin, open /ws/live.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let token = rt.block_on(hub.admin_token());
    let (mut live, _) = rt
        .block_on(tokio_tungstenite::connect_async(format!(
            "ws://127.0.0.1:{}/ws/live?token={token}",
            hub.port
        )))
        .expect("ws/live");

    let a_name = unique("e2e-a");
    let b_name = unique("e2e-b");
    let a_cfg = agent_config(
        dir.path(),
        &a_name,
        Some(1883),
        &capture(dir.path(), "slow_rate", "192.168.1.20"),
        "192.168.1.0/24",
        40.0,
    );
    let b_cfg = agent_config(
        dir.path(),
        &b_name,
        Some(1883),
        &capture(dir.path(), "brute_force_ssh", "192.168.7.20"),
        "192.168.7.0/24",
        5.0,
    );
    let mut a = start_agent(dir.path(), &a_name, &a_cfg);
    let mut b = start_agent(dir.path(), &b_name, &b_cfg);

    // A prediction arrives on /ws/live, and an alert (the agents replay attacks).
    let mut next_of = |kind: &str| {
        rt.block_on(async {
            use futures_util::StreamExt;
            tokio::time::timeout(Duration::from_secs(60), async {
                while let Some(Ok(msg)) = live.next().await {
                    if let Ok(text) = msg.into_text() {
                        let v: Value = serde_json::from_str(&text).unwrap_or_default();
                        if v["type"] == kind {
                            return Some(v);
                        }
                    }
                }
                None
            })
            .await
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no {kind} on /ws/live\n{}", hub_proc.log_text()))
    };
    let event = next_of("prediction");
    let alert = next_of("alert");
    assert_eq!(alert["data"]["alert_type"], "threshold_breach", "{alert}");
    assert!(
        event["data"]["device_name"].as_str().is_some_and(|n| n.contains('@')),
        "{event}"
    );

    let mut conn = hub.conn();
    let alert_id = alert["data"]["id"].as_str().expect("alert id").to_string();
    assert_eq!(
        count(
            &mut conn,
            &format!("SELECT count(*) AS n FROM alerts WHERE id = '{alert_id}' AND prediction_id IS NOT NULL")
        ),
        1,
        "the alert is stored with its prediction"
    );
    wait_for("both agents and their devices online", Duration::from_secs(30), || {
        let agents = statuses(
            &mut conn,
            &format!("SELECT status FROM agents WHERE name IN ('{a_name}', '{b_name}')"),
        );
        let devices = statuses(
            &mut conn,
            &format!(
                "SELECT d.status FROM devices d JOIN agents a ON a.id = d.agent_id WHERE a.name IN ('{a_name}', '{b_name}')"
            ),
        );
        // A device is `under_attack` while its windows are attacks, `online` otherwise.
        agents.len() == 2
            && agents.iter().all(|s| s == "online")
            && devices.iter().all(|s| s == "online" || s == "under_attack")
            && devices.len() >= 2
    });

    // Kill the hub mid-stream; the agents keep detecting; start it again on the same database.
    drop(conn);
    hub_proc.signal("-KILL");
    hub_proc.wait(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(6));
    let mut hub_proc = hub.start(dir.path(), 2);
    std::thread::sleep(Duration::from_secs(4));

    // Stop the agents (SIGTERM drains), then everything they made must be stored exactly once.
    a.signal("-TERM");
    b.signal("-TERM");
    let a_log = a.wait(Duration::from_secs(60));
    let b_log = b.wait(Duration::from_secs(60));
    let (a_made, b_made) = (scored(&a_log), scored(&b_log));
    assert!(
        a_made + b_made >= 10_000 && b_made > 100,
        "a stream of at least 10,000 predictions: agents scored {a_made} and {b_made} windows"
    );
    eprintln!("agents made {a_made} + {b_made} predictions");
    let mut conn = hub.conn();
    wait_for("every prediction stored", Duration::from_secs(60), || {
        agent_predictions(&mut conn, &a_name).0 >= a_made && agent_predictions(&mut conn, &b_name).0 >= b_made
    });
    for (name, made) in [(&a_name, a_made), (&b_name, b_made)] {
        let (total, distinct) = agent_predictions(&mut conn, name);
        assert_eq!(total, made, "{name}: stored {total}, made {made}");
        assert_eq!(distinct, total);
    }
    assert!(a_log.contains("still spooled 0"), "{a_log}");

    // The agents said goodbye: they and their devices are offline.
    wait_for("agents offline", Duration::from_secs(20), || {
        let s = statuses(
            &mut conn,
            &format!("SELECT status FROM agents WHERE name IN ('{a_name}', '{b_name}')"),
        );
        s.iter().all(|s| s == "offline")
    });
    let devices = statuses(
        &mut conn,
        &format!("SELECT d.status FROM devices d JOIN agents a ON a.id = d.agent_id WHERE a.name = '{b_name}'"),
    );
    assert!(devices.iter().all(|s| s == "offline"), "{devices:?}");
    hub_proc.signal("-TERM");
    hub_proc.wait(Duration::from_secs(15));
}

#[test]
fn an_agent_spools_while_its_broker_is_gone_and_delivers_everything_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A broker of our own, so that it can be taken away.
    let broker_port = free_port();
    let broker_conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &broker_conf,
        format!("listener {broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .expect("broker config");
    let start_broker = |run: usize| {
        let mut cmd = Command::new("/usr/sbin/mosquitto");
        cmd.arg("-c").arg(&broker_conf);
        let p = Proc::spawn("mosquitto", cmd, dir.path().join(format!("mosquitto-{run}.log")));
        wait_for("mosquitto listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", broker_port)).is_ok()
        });
        p
    };
    let mut broker = start_broker(1);
    let hub = Hub {
        db: unique("gw_e2e_spool"),
        port: free_port(),
        broker: HubBroker::External {
            port: broker_port,
            client_id: unique("gw-e2e-hub"),
        },
        data: dir.path().join("hub-data"),
    };
    let _hub_proc = hub.start(dir.path(), 1);
    let name = unique("e2e-spool");
    let cfg = agent_config(
        dir.path(),
        &name,
        Some(broker_port),
        &capture(dir.path(), "brute_force_ssh", "192.168.3.20"),
        "192.168.3.0/24",
        5.0,
    );
    let mut agent = start_agent(dir.path(), &name, &cfg);
    let mut conn = hub.conn();
    wait_for("first predictions", Duration::from_secs(60), || {
        agent_predictions(&mut conn, &name).0 > 0
    });

    // The broker (and with it the hub) is away; the agent detects on and spools.
    broker.signal("-KILL");
    broker.wait(Duration::from_secs(10));
    let outage = std::env::var("GATEWATCH_E2E_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15u64);
    std::thread::sleep(Duration::from_secs(outage));
    let spool = dir.path().join(&name).join("spool");
    let segments = || {
        std::fs::read_dir(&spool)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(
        segments() > 0,
        "the agent spooled while the broker was gone\n{}",
        agent.log_text()
    );
    let stored_before = agent_predictions(&mut conn, &name).0;
    let _broker = start_broker(2);

    // Back: everything arrives, acknowledged segments are deleted.
    wait_for("the spool drained", Duration::from_secs(60), || {
        agent_predictions(&mut conn, &name).0 > stored_before + 50
    });
    agent.signal("-TERM");
    let log = agent.wait(Duration::from_secs(60));
    let made = scored(&log);
    wait_for("every prediction stored", Duration::from_secs(30), || {
        agent_predictions(&mut conn, &name).0 >= made
    });
    let (total, distinct) = agent_predictions(&mut conn, &name);
    assert_eq!((total, distinct), (made, made), "{log}");
    assert!(log.contains("still spooled 0"), "{log}");
    assert_eq!(segments(), 0, "acknowledged segments are removed");
}
