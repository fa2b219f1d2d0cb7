//! `GET /metrics`: the hub's counters in the Prometheus text format, for scraping. Like
//! `/api/v1/openapi.json` it needs no login; it shows counts, not data.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use diesel::prelude::*;
use gatewatch_proto::metrics::Exposition;
use rocket::http::ContentType;
use rocket::State;

use crate::db::schema::agents;
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![metrics]
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}

#[rocket::get("/metrics")]
pub async fn metrics(app: &State<App>) -> (ContentType, String) {
    let by_status: Vec<(String, i64)> = app
        .db
        .run(|c| {
            Ok(agents::table
                .group_by(agents::status)
                .select((agents::status, diesel::dsl::count_star()))
                .load(c)?)
        })
        .await
        .unwrap_or_default();
    let mut m = Exposition::default();
    let agents: Vec<(&str, f64)> = ["online", "offline", "revoked"]
        .into_iter()
        .map(|s| {
            let n = by_status.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
            (s, n as f64)
        })
        .collect();
    m.gauge_by("gatewatch_hub_agents", "Agents by status.", "status", &agents);
    let b = &app.broker_stats;
    m.counter(
        "gatewatch_hub_prediction_batches_total",
        "Prediction batches stored from agents.",
        get(&b.batches),
    );
    m.counter(
        "gatewatch_hub_predictions_received_total",
        "Predictions in stored batches (re-deliveries included).",
        get(&b.predictions),
    );
    m.counter(
        "gatewatch_hub_messages_refused_total",
        "Agent messages refused as malformed or mis-addressed.",
        get(&b.rejected),
    );
    let g = &app.gateway_stats;
    m.counter(
        "gatewatch_hub_mqtt_connections_total",
        "Agent MQTT/TLS connections accepted.",
        get(&g.accepted),
    );
    m.counter(
        "gatewatch_hub_mqtt_refused_tls_total",
        "MQTT/TLS handshakes refused.",
        get(&g.refused_tls),
    );
    m.counter(
        "gatewatch_hub_mqtt_refused_identity_total",
        "MQTT connections refused: certificate revoked, replaced or unknown.",
        get(&g.refused_identity),
    );
    m.counter(
        "gatewatch_hub_mqtt_topic_violations_total",
        "MQTT connections closed for leaving the agent's own topics.",
        get(&g.refused_acl),
    );
    m.counter(
        "gatewatch_hub_mqtt_kicked_total",
        "Live MQTT connections closed on revocation.",
        get(&g.kicked),
    );
    let q = &app.bulk_stats;
    m.counter(
        "gatewatch_hub_quic_connections_total",
        "Agent QUIC connections accepted.",
        get(&q.connections),
    );
    m.counter(
        "gatewatch_hub_quic_refused_total",
        "QUIC connections refused.",
        get(&q.refused),
    );
    m.counter(
        "gatewatch_hub_models_sent_total",
        "Model downloads served.",
        get(&q.models_sent),
    );
    m.counter(
        "gatewatch_hub_captures_sent_total",
        "Uploaded captures sent to agents for replay.",
        get(&q.captures_sent),
    );
    m.counter(
        "gatewatch_hub_flow_records_total",
        "Flow records received from agents over QUIC.",
        get(&q.flows_stored),
    );
    let f = &app.fl.stats;
    m.counter(
        "gatewatch_hub_fl_updates_accepted_total",
        "Encrypted FL updates added to a round's aggregate.",
        get(&f.updates_accepted),
    );
    m.counter(
        "gatewatch_hub_fl_updates_rejected_total",
        "FL updates refused (late, unsigned, wrong round, epoch or length, replayed).",
        get(&f.updates_rejected),
    );
    m.counter(
        "gatewatch_hub_fl_update_bytes_total",
        "Bytes of accepted encrypted FL updates.",
        get(&f.update_bytes),
    );
    m.counter(
        "gatewatch_hub_fl_rounds_completed_total",
        "FL rounds that made a new model.",
        get(&f.rounds_completed),
    );
    m.counter(
        "gatewatch_hub_fl_rounds_failed_total",
        "FL rounds that failed (reason in fl_rounds).",
        get(&f.rounds_failed),
    );
    m.counter(
        "gatewatch_hub_fl_aggregate_microseconds_total",
        "Time spent checking and adding FL updates.",
        get(&f.aggregate_micros),
    );
    let (clients, published, dropped) = app.events.counts();
    m.gauge(
        "gatewatch_hub_websocket_clients",
        "Connected WebSocket clients.",
        clients as f64,
    );
    m.counter(
        "gatewatch_hub_events_published_total",
        "Live events published.",
        published,
    );
    m.counter(
        "gatewatch_hub_events_dropped_total",
        "Live events dropped for WebSocket clients that fell behind.",
        dropped,
    );
    m.gauge(
        "gatewatch_hub_resident_memory_bytes",
        "Resident memory of the hub process.",
        resident_bytes() as f64,
    );
    (
        ContentType::new("text", "plain").with_params(("version", "0.0.4")),
        m.finish(),
    )
}

/// VmRSS from /proc (0 where there is none).
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_read() {
        assert!(super::resident_bytes() > 0);
    }
}
