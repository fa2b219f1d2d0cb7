//! The hub's end of the fleet link: storing agents' messages (idempotent, acknowledged only
//! without gaps, devices following their agent), and the MQTT consumer against the machine's
//! Mosquitto, where an agent cannot speak for another.

mod common;

use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use gatewatch_hub::broker::ingest;
use gatewatch_hub::db::schema::{agents, devices, predictions};
use gatewatch_hub::db::Db;
use gatewatch_proto::fleet::{self, Ack, AgentState, AgentStatus, Channel, PredictionBatch, PredictionMsg};
use gatewatch_proto::{Detection, WindowSpan};
use uuid::Uuid;

fn status(agent: Uuid, name: &str, state: AgentState) -> AgentStatus {
    AgentStatus {
        schema: fleet::SCHEMA,
        agent_id: agent,
        state,
        name: name.into(),
        hostname: "gw".into(),
        version: "0.1.0".into(),
        model_version: Some("m1".into()),
        heartbeat_secs: 10,
        sent_at_ms: 0,
        fl_local_windows: Default::default(),
    }
}

fn batch(agent: Uuid, epoch: Uuid, seq: u64, devices: &[&str], n: usize) -> PredictionBatch {
    PredictionBatch {
        schema: fleet::SCHEMA,
        agent_id: agent,
        epoch,
        seq,
        predictions: (0..n)
            .map(|i| PredictionMsg {
                id: Uuid::now_v7(),
                detection: Detection {
                    device: devices[i % devices.len()].parse().expect("ip"),
                    window: WindowSpan {
                        first_flow_id: i as u64,
                        last_flow_id: i as u64 + 9,
                        first_ts_ns: 1_700_000_000_000_000_000,
                        last_ts_ns: 1_700_000_001_000_000_000,
                    },
                    score: if i % 2 == 0 { 0.9 } else { 0.1 },
                    label: if i % 2 == 0 { "attack" } else { "benign" }.into(),
                    confidence: 0.8,
                    family: if i % 2 == 0 { "scan" } else { "benign" }.into(),
                    family_probs: Default::default(),
                    model_version: "m1".into(),
                    inference_latency_ms: 0.2,
                    peer: None,
                    padded_flows: 0,
                    simulation: None,
                },
                prevention: Vec::new(),
            })
            .collect(),
    }
}

fn stored(conn: &mut PgConnection) -> i64 {
    predictions::table.count().get_result(conn).expect("count")
}

#[test]
fn batches_are_stored_once_and_acknowledged_without_gaps() {
    let db = common::TestDb::new();
    let pool = Db::open(&db.url, 2).expect("db");
    let mut c = pool.get().expect("conn");
    let (agent, epoch) = (Uuid::now_v7(), Uuid::now_v7());
    ingest::status(&mut c, agent, &status(agent, "kitchen", AgentState::Online), Utc::now()).expect("status");

    let first = batch(agent, epoch, 1, &["192.168.1.20", "192.168.1.21"], 10);
    let s = ingest::predictions(&mut c, agent, &first).expect("store");
    assert_eq!((s.new.len(), s.acked_seq), (10, 1));
    assert_eq!(s.device_names.len(), 2);
    // The same batch again (a re-delivery): nothing new, still acknowledged.
    let again = ingest::predictions(&mut c, agent, &first).expect("store");
    assert_eq!((again.new.len(), again.acked_seq), (0, 1));
    assert_eq!(stored(&mut c), 10);
    // Devices were discovered once each, online with their agent, named after it.
    let names: Vec<String> = devices::table
        .filter(devices::agent_id.eq(agent))
        .select(devices::name)
        .order(devices::name)
        .load(&mut c)
        .expect("devices");
    assert_eq!(names, ["192.168.1.20 @ kitchen", "192.168.1.21 @ kitchen"]);

    // Batch 3 before 2: stored, but the acknowledgement waits for 2.
    let third = ingest::predictions(&mut c, agent, &batch(agent, epoch, 3, &["192.168.1.20"], 4)).expect("store");
    assert_eq!((third.new.len(), third.acked_seq), (4, 1));
    let second = ingest::predictions(&mut c, agent, &batch(agent, epoch, 2, &["192.168.1.20"], 4)).expect("store");
    assert_eq!(second.acked_seq, 2);
    // A new spool epoch starts again at 1.
    let fresh =
        ingest::predictions(&mut c, agent, &batch(agent, Uuid::now_v7(), 1, &["192.168.1.22"], 1)).expect("store");
    assert_eq!(fresh.acked_seq, 1);
    assert_eq!(stored(&mut c), 19);
}

#[test]
fn many_agents_batches_in_one_group_store_and_acknowledge_as_one_by_one() {
    let db = common::TestDb::new();
    let pool = Db::open(&db.url, 2).expect("db");
    let mut c = pool.get().expect("conn");
    // One agent known by its status, one first seen through its predictions.
    let (known, unknown) = (Uuid::now_v7(), Uuid::now_v7());
    ingest::status(&mut c, known, &status(known, "shed", AgentState::Online), Utc::now()).expect("status");
    let (e1, e2) = (Uuid::now_v7(), Uuid::now_v7());
    let k1 = batch(known, e1, 1, &["10.1.0.1", "10.1.0.2"], 6);
    let k3 = batch(known, e1, 3, &["10.1.0.1"], 2);
    let k2 = batch(known, e1, 2, &["10.1.0.3"], 2);
    let u1 = batch(unknown, e2, 1, &["10.1.0.1"], 5);
    // k1 twice in the same group: a re-delivery that overtook the acknowledgement.
    let group = [(known, &k1), (unknown, &u1), (known, &k3), (known, &k1), (known, &k2)];
    let out = ingest::prediction_batches(&mut c, &group).expect("store group");
    let summary: Vec<(usize, u64)> = out.iter().map(|s| (s.new.len(), s.acked_seq)).collect();
    // Batch 3 is stored but not acknowledged before 2 (the agent sends it again, as one by one);
    // the repeated batch stores nothing and still acknowledges.
    assert_eq!(summary, [(6, 1), (5, 1), (2, 1), (0, 1), (2, 2)]);
    assert_eq!(stored(&mut c), 15);
    // The same address under two agents is two devices; each batch names its own.
    let devices_of = |c: &mut PgConnection, agent: Uuid| -> i64 {
        devices::table
            .filter(devices::agent_id.eq(agent))
            .count()
            .get_result(c)
            .expect("devices")
    };
    assert_eq!((devices_of(&mut c, known), devices_of(&mut c, unknown)), (3, 1));
    assert!(out[1]
        .new
        .iter()
        .all(|p| out[1].device_names.contains_key(&p.device_id)));
    let acked: (Option<Uuid>, i64) = agents::table
        .find(known)
        .select((agents::acked_epoch, agents::acked_seq))
        .first(&mut c)
        .expect("agent");
    assert_eq!(acked, (Some(e1), 2));
    // The whole group again stores nothing.
    let again = ingest::prediction_batches(&mut c, &group).expect("store again");
    assert!(again.iter().all(|s| s.new.is_empty()));
    assert_eq!(stored(&mut c), 15);
}

#[test]
fn devices_follow_their_agent_and_silence_means_offline() {
    let db = common::TestDb::new();
    let pool = Db::open(&db.url, 2).expect("db");
    let mut c = pool.get().expect("conn");
    let agent = Uuid::now_v7();
    let now = Utc::now();
    ingest::status(&mut c, agent, &status(agent, "porch", AgentState::Online), now).expect("status");
    ingest::predictions(&mut c, agent, &batch(agent, Uuid::now_v7(), 1, &["10.0.0.5"], 2)).expect("store");
    let device_status = |c: &mut PgConnection| -> Vec<String> {
        devices::table
            .filter(devices::agent_id.eq(agent))
            .select(devices::status)
            .load(c)
            .expect("devices")
    };
    // The batch's first prediction is an attack.
    assert_eq!(device_status(&mut c), ["under_attack"]);
    ingest::status(&mut c, agent, &status(agent, "porch", AgentState::Offline), now).expect("status");
    assert_eq!(device_status(&mut c), ["offline"]);
    ingest::status(&mut c, agent, &status(agent, "porch", AgentState::Online), now).expect("status");
    assert_eq!(device_status(&mut c), ["online"]);
    // No heartbeat for longer than allowed.
    let later = now + chrono::Duration::seconds(31);
    let stale = ingest::expire(&mut c, chrono::Duration::seconds(30), later).expect("expire");
    assert_eq!(stale, [agent]);
    assert_eq!(device_status(&mut c), ["offline"]);
    // Another agent with the same name gets a distinct one.
    let twin = Uuid::now_v7();
    ingest::status(&mut c, twin, &status(twin, "porch", AgentState::Online), now).expect("status");
    let name: String = agents::table
        .find(twin)
        .select(agents::name)
        .first(&mut c)
        .expect("twin");
    assert!(name.starts_with("porch-") && name.len() == "porch-".len() + 8, "{name}");
}

#[test]
fn attacks_raise_one_alert_per_cooldown_and_prevention_events_become_the_log() {
    use gatewatch_hub::db::models::PreventionRule;
    use gatewatch_hub::db::schema::{alerts, prevention_logs, prevention_rules};
    use gatewatch_proto::fleet::{PreventionEvent, RuleAction};

    let db = common::TestDb::new();
    let pool = Db::open(&db.url, 2).expect("db");
    let mut c = pool.get().expect("conn");
    let (agent, epoch) = (Uuid::now_v7(), Uuid::now_v7());
    ingest::status(&mut c, agent, &status(agent, "gate", AgentState::Online), Utc::now()).expect("status");
    let rule = PreventionRule {
        id: Uuid::new_v4(),
        device_id: None,
        rule_name: "quarantine".into(),
        threshold: 0.5,
        action_type: "quarantine".into(),
        is_enabled: true,
        cooldown_seconds: 60,
        webhook_url: None,
        extra_config: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    diesel::insert_into(prevention_rules::table)
        .values(&rule)
        .execute(&mut c)
        .expect("rule");
    let event = |rule_id: Uuid, action: RuleAction, enforced: bool| PreventionEvent {
        id: Uuid::now_v7(),
        rule_id,
        action,
        target: Some("10.2.0.9".parse().expect("ip")),
        enforced,
        success: true,
        expires_at_ms: Some(1_700_000_600_000),
        message: "m".into(),
    };
    // 10.2.0.9: attacks with an enforced quarantine and a dry-run block of a rule since deleted.
    let mut first = batch(agent, epoch, 1, &["10.2.0.9"], 4);
    first.predictions[0].prevention = vec![
        event(rule.id, RuleAction::Quarantine, true),
        event(Uuid::new_v4(), RuleAction::BlockIp, false),
    ];
    let s = ingest::predictions(&mut c, agent, &first).expect("store");
    assert_eq!((s.prevention.len(), s.alerts.len()), (2, 1));
    let alert = &s.alerts[0];
    assert_eq!(
        (
            alert.alert_type.as_str(),
            alert.severity.as_str(),
            alert.action_taken.as_deref()
        ),
        ("threshold_breach", "high", Some("quarantined"))
    );
    assert_eq!(
        alert.prediction_id,
        Some(first.predictions[0].id),
        "the strongest attack"
    );
    assert!(
        alert.message.contains("scan detected on 10.2.0.9 @ gate"),
        "{}",
        alert.message
    );
    let logs: Vec<(Option<Uuid>, String, Option<Uuid>)> = prevention_logs::table
        .order(prevention_logs::action_executed)
        .select((
            prevention_logs::rule_id,
            prevention_logs::action_executed,
            prevention_logs::prediction_id,
        ))
        .load(&mut c)
        .expect("logs");
    assert_eq!(
        logs,
        [
            (None, "dry_run:block_ip".to_string(), Some(first.predictions[0].id)),
            (Some(rule.id), "quarantine".to_string(), Some(first.predictions[0].id)),
        ]
    );
    let device_status = |c: &mut PgConnection| -> String {
        devices::table
            .filter(devices::agent_id.eq(agent))
            .select(devices::status)
            .first(c)
            .expect("device")
    };
    assert_eq!(device_status(&mut c), "quarantined");

    // Re-delivered: nothing twice. More attacks within the cooldown: no second alert.
    let again = ingest::predictions(&mut c, agent, &first).expect("store");
    assert!(again.prevention.is_empty() && again.alerts.is_empty());
    let more = ingest::predictions(&mut c, agent, &batch(agent, epoch, 2, &["10.2.0.9"], 4)).expect("store");
    assert_eq!((more.new.len(), more.alerts.len()), (4, 0));
    let alerts_n: i64 = alerts::table.count().get_result(&mut c).expect("count");
    let logs_n: i64 = prevention_logs::table.count().get_result(&mut c).expect("count");
    assert_eq!((alerts_n, logs_n), (1, 2));

    // Benign windows within the cooldown leave the device as it is; after it, it is online.
    let calm = |seq: u64| {
        let mut b = batch(agent, epoch, seq, &["10.2.0.9"], 2);
        for p in &mut b.predictions {
            p.detection.score = 0.1;
            p.detection.label = "benign".into();
        }
        b
    };
    ingest::predictions(&mut c, agent, &calm(3)).expect("store");
    assert_eq!(device_status(&mut c), "quarantined");
    diesel::update(alerts::table)
        .set(alerts::ts.eq(Utc::now() - chrono::Duration::seconds(ingest::ALERT_COOLDOWN_SECS + 1)))
        .execute(&mut c)
        .expect("age the alert");
    ingest::predictions(&mut c, agent, &calm(4)).expect("store");
    assert_eq!(device_status(&mut c), "online");
}

#[test]
fn each_agent_gets_the_global_rules_and_its_own_devices_rules() {
    use gatewatch_hub::broker::rules;
    use gatewatch_hub::db::models::PreventionRule;
    use gatewatch_hub::db::schema::prevention_rules;
    use gatewatch_proto::fleet::RuleAction;

    let db = common::TestDb::new();
    let pool = Db::open(&db.url, 2).expect("db");
    let mut c = pool.get().expect("conn");
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    for (agent, name) in [(a, "north"), (b, "south")] {
        ingest::status(&mut c, agent, &status(agent, name, AgentState::Online), Utc::now()).expect("status");
    }
    ingest::predictions(&mut c, a, &batch(a, Uuid::now_v7(), 1, &["10.3.0.5"], 1)).expect("store");
    let device: Uuid = devices::table
        .filter(devices::agent_id.eq(a))
        .select(devices::id)
        .first(&mut c)
        .expect("device");
    let rule = |name: &str, device_id: Option<Uuid>, action: &str, enabled: bool| PreventionRule {
        id: Uuid::new_v4(),
        device_id,
        rule_name: name.into(),
        threshold: 0.7,
        action_type: action.into(),
        is_enabled: enabled,
        cooldown_seconds: 10,
        webhook_url: (action == "webhook").then(|| "http://127.0.0.1:1/hook".into()),
        extra_config: Some(serde_json::json!({"rate_pps": 7})),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    };
    let rows = [
        rule("everywhere", None, "alert_only", true),
        rule("the camera", Some(device), "rate_limit", true),
        rule("switched off", None, "block_ip", false),
        rule("hub only", None, "webhook", true),
    ];
    diesel::insert_into(prevention_rules::table)
        .values(&rows[..])
        .execute(&mut c)
        .expect("rules");
    let sets = rules::rules_for(&mut c, &[a, b]).expect("rules");
    let names = |agent: Uuid| -> Vec<String> {
        let mut n: Vec<String> = sets[&agent].iter().map(|r| r.name.clone()).collect();
        n.sort();
        n
    };
    assert_eq!(names(a), ["everywhere", "the camera"]);
    assert_eq!(names(b), ["everywhere"]);
    let camera = sets[&a]
        .iter()
        .find(|r| r.name == "the camera")
        .expect("the device rule");
    assert_eq!(
        (camera.device, camera.action, camera.rate_pps, camera.cooldown_secs),
        (Some("10.3.0.5".parse().expect("ip")), RuleAction::RateLimit, 7, 10)
    );
}

#[rocket::async_test]
async fn the_hub_consumes_mosquitto_and_an_agent_cannot_speak_for_another() {
    let client_id = format!("gw-test-hub-{}", Uuid::now_v7().simple());
    let hub = common::serve(|c| {
        c.broker_mode = gatewatch_hub::broker::BrokerMode::External;
        c.broker_url = "mqtt://127.0.0.1:1883".into();
        c.broker_client_id = client_id.clone();
    })
    .await;
    let pool = Db::open(&hub.db.url, 2).expect("db");
    let (agent, other, epoch) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());

    let mut options = rumqttc::MqttOptions::new(format!("gw-test-agent-{}", agent.simple()), "127.0.0.1", 1883);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 64);
    client
        .subscribe(fleet::topic(agent, Channel::Ack), rumqttc::QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    // Give the hub's subscription a moment to exist at the broker.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let publish = |topic: String, body: Vec<u8>| {
        let client = client.clone();
        async move {
            client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, body)
                .await
                .expect("publish")
        }
    };
    publish(
        fleet::topic(agent, Channel::Status),
        serde_json::to_vec(&status(agent, &format!("mq-{}", agent.simple()), AgentState::Online)).expect("json"),
    )
    .await;
    publish(
        fleet::topic(agent, Channel::Predictions),
        serde_json::to_vec(&batch(agent, epoch, 1, &["192.168.5.20"], 25)).expect("json"),
    )
    .await;
    // Published on this agent's topic but claiming to be another agent: refused.
    publish(
        fleet::topic(agent, Channel::Predictions),
        serde_json::to_vec(&batch(other, epoch, 2, &["192.168.5.21"], 5)).expect("json"),
    )
    .await;
    let ack = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    return serde_json::from_slice::<Ack>(&p.payload).expect("an ack");
                }
                Ok(_) => {}
                Err(e) => panic!("broker: {e}"),
            }
        }
    })
    .await
    .expect("the hub acknowledged");
    assert_eq!((ack.epoch, ack.seq), (epoch, 1));
    let mut c = pool.get().expect("conn");
    // Give the refused message time to (not) arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stored(&mut c), 25);
    let other_rows: i64 = agents::table
        .filter(agents::id.eq(other))
        .count()
        .get_result(&mut c)
        .expect("count");
    assert_eq!(other_rows, 0);
    let app_stats = hub_rejected(&hub);
    assert!(app_stats >= 1, "the forged batch was counted");
    hub.shutdown.notify();
}

fn hub_rejected(hub: &common::Served) -> u64 {
    hub.broker.rejected.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn flow_records_are_stored_once_under_their_devices() {
    use gatewatch_hub::db::schema::traffic_logs;
    use gatewatch_proto::bulk::{FlowSource, FlowUpload};

    let db = common::TestDb::new();
    let pool = Db::open(&db.url, 2).expect("db");
    let mut c = pool.get().expect("conn");
    let agent = Uuid::now_v7();
    ingest::status(&mut c, agent, &status(agent, "attic", AgentState::Online), Utc::now()).expect("status");
    let records: Vec<FlowUpload> = (0..6)
        .map(|i| FlowUpload {
            id: Uuid::now_v7(),
            device: if i % 2 == 0 { "10.2.0.1" } else { "10.2.0.2" }.parse().expect("ip"),
            ts_ms: 1_700_000_000_000 + i,
            features: vec![0.5; 78],
            source: FlowSource::Live,
        })
        .collect();
    assert_eq!(ingest::flows(&mut c, agent, &records).expect("store"), 6);
    // Sent again (after a lost answer): nothing new.
    assert_eq!(ingest::flows(&mut c, agent, &records).expect("store again"), 0);
    let per_device: Vec<(String, i64)> = traffic_logs::table
        .inner_join(devices::table)
        .group_by(devices::name)
        .select((devices::name, diesel::dsl::count_star()))
        .order(devices::name)
        .load(&mut c)
        .expect("traffic");
    assert_eq!(
        per_device,
        [("10.2.0.1 @ attic".to_string(), 3), ("10.2.0.2 @ attic".to_string(), 3)]
    );
}
