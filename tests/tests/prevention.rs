//! Prevention rules across processes: a rule made at the hub reaches an enrolled agent (and
//! its state directory), fires there on the detections of a replayed brute-force attack in
//! dry run, and comes back with the predictions as the hub's prevention log, next to the
//! alerts the hub raises; disabling the rule at the hub stops it at the agent.

mod common;

use std::time::Duration;

use common::*;

fn rules_at_agent(state: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read(state.join("rules.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[test]
fn rules_reach_the_agent_fire_in_dry_run_and_come_back_as_logs_and_alerts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = Hub {
        db: unique("gw_e2e_prevention"),
        port: free_port(),
        broker: HubBroker::Embedded { tls_port: free_port() },
        data: dir.path().join("hub-data"),
    };
    let _hub_proc = hub.start(dir.path(), 1);
    let mut conn = hub.conn();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let token = runtime.block_on(hub.admin_token());
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}/api/v1", hub.port);
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        runtime.block_on(async {
            let mut r = http.request(method, format!("{base}{path}")).bearer_auth(&token);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.expect("request");
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        })
    };

    let (s, rule) = call(
        reqwest::Method::POST,
        "/prevention/rules",
        Some(serde_json::json!({
            "rule_name": "block brute forcers", "action_type": "block_ip", "threshold": 0.5,
            "cooldown_seconds": 5, "extra_config": {"duration_seconds": 120}
        })),
    );
    assert_eq!(s, 201, "{rule}");
    let rule_id = rule["id"].as_str().expect("rule id").to_string();
    let (s, bad) = call(
        reqwest::Method::POST,
        "/prevention/rules",
        Some(serde_json::json!({
            "rule_name": "x", "action_type": "rate_limit", "extra_config": {"rate_pps": 0}
        })),
    );
    assert_eq!(s, 422, "{bad}");
    assert!(bad.to_string().contains("extra_config.rate_pps"), "{bad}");

    let (target, attacker) = ("192.168.8.20", "192.168.8.66");
    let pcap = capture(dir.path(), "brute_force_ssh", target);
    let name = unique("e2e-prevent");
    let cfg = agent_config(dir.path(), &name, None, &pcap, "192.168.8.0/24", 1.0);
    hub.enroll(&cfg);
    let state = dir.path().join(&name);
    let mut agent = start_agent(dir.path(), &name, &cfg);

    wait_for("the rule at the agent", Duration::from_secs(30), || {
        rules_at_agent(&state).iter().any(|r| r["id"] == rule_id.as_str())
    });
    let kept = rules_at_agent(&state);
    assert_eq!(kept[0]["action"], "block_ip");
    assert_eq!(kept[0]["duration_secs"], 120);

    let logged = format!(
        "SELECT count(*) AS n FROM prevention_logs l JOIN devices d ON d.id = l.device_id \
         WHERE host(d.ip_address) = '{target}' AND l.rule_id = '{rule_id}' \
         AND l.action_executed = 'dry_run:block_ip' AND l.success AND l.prediction_id IS NOT NULL \
         AND l.details->>'target' = '{attacker}' AND l.details->>'enforced' = 'false'"
    );
    let mut last = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while last == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no dry-run block of the attacker logged; logs: {:?}\n{}",
            statuses(
                &mut conn,
                "SELECT action_executed || ' ' || coalesce(details::text, '') AS status FROM prevention_logs"
            ),
            agent.log_text()
        );
        std::thread::sleep(Duration::from_millis(300));
        last = count(&mut conn, &logged);
    }
    let message = statuses(
        &mut conn,
        "SELECT details->>'message' AS status FROM prevention_logs LIMIT 1",
    );
    assert!(message[0].contains("dry run: would block"), "{message:?}");

    // The hub raised an alert for the device (one per cooldown) and marks it under attack.
    let alerts = format!(
        "SELECT count(*) AS n FROM alerts a JOIN devices d ON d.id = a.device_id \
         WHERE host(d.ip_address) = '{target}' AND a.alert_type = 'threshold_breach' \
         AND a.prediction_id IS NOT NULL AND a.action_taken = 'none'"
    );
    wait_for("an alert for the device", Duration::from_secs(30), || {
        count(&mut conn, &alerts) >= 1
    });
    assert!(count(&mut conn, &alerts) <= 2, "one alert per device per minute");
    assert_eq!(
        statuses(
            &mut conn,
            &format!("SELECT status FROM devices WHERE host(ip_address) = '{target}'")
        ),
        ["under_attack"]
    );
    let (s, logs) = call(
        reqwest::Method::GET,
        &format!("/prevention/logs?rule_id={rule_id}"),
        None,
    );
    assert_eq!(s, 200, "{logs}");
    assert!(logs["total"].as_i64().unwrap_or(0) >= 1, "{logs}");

    // Disabled at the hub: the agent drops it and it fires no more.
    let (s, toggled) = call(
        reqwest::Method::POST,
        &format!("/prevention/rules/{rule_id}/toggle"),
        None,
    );
    assert_eq!(
        (s, &toggled["is_enabled"]),
        (200, &serde_json::json!(false)),
        "{toggled}"
    );
    wait_for("the agent to drop the rule", Duration::from_secs(30), || {
        rules_at_agent(&state).is_empty()
    });
    // What was decided before is still on its way; then nothing more (cooldown 5 s).
    std::thread::sleep(Duration::from_secs(3));
    let before = count(&mut conn, &logged);
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(count(&mut conn, &logged), before, "a disabled rule does not fire");

    agent.signal("-TERM");
    let out = agent.wait(Duration::from_secs(60));
    assert!(out.contains("done:"), "{out}");
}
