//! `/traffic`: batched idempotent ingest of flows (with the agents' predictions and alerts), flow
//! listing, CSV export, pcap upload.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rocket::data::{Data, ToByteUnit};
use rocket::form::Errors;
use rocket::http::{ContentType, Status};
use rocket::serde::json::Json;
use rocket::State;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::AgentCommand;
use super::{query, time_param, AlertType, FlowSource, Label, Page, PageQuery, Severity};
use crate::auth::guard::{Auth, Body, Operator, Viewer};
use crate::db::models::{Alert, Prediction, TrafficRow};
use crate::db::schema::{alerts, devices, predictions, traffic_logs};
use crate::error::{ApiError, ApiResult};
use crate::ws::Topic;
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![ingest, list, export, upload_pcap]
}

/// Largest number of records (flows + predictions + alerts) in one ingest request.
pub const MAX_BATCH: usize = 20_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowIn {
    /// Made by the agent; re-sending the same id and timestamp stores nothing new.
    pub id: Uuid,
    pub device_id: Uuid,
    pub timestamp: DateTime<Utc>,
    /// The 78 CIC-IDS2017 features in `gatewatch_proto::FEATURES` order.
    pub features: Vec<f32>,
    pub source_type: FlowSource,
    #[serde(default)]
    pub flow_index: Option<i32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictionIn {
    pub id: Uuid,
    pub device_id: Uuid,
    pub score: f64,
    #[serde(default)]
    pub label: Option<Label>,
    #[serde(default)]
    pub confidence: Option<f64>,
    #[serde(default)]
    pub attack_type: Option<String>,
    pub model_version: String,
    #[serde(default)]
    pub window_start: Option<Uuid>,
    #[serde(default)]
    pub window_end: Option<Uuid>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub feature_importance: Option<serde_json::Value>,
    pub inference_latency_ms: f64,
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertIn {
    pub id: Uuid,
    pub device_id: Uuid,
    #[serde(default)]
    pub prediction_id: Option<Uuid>,
    pub alert_type: AlertType,
    pub severity: Severity,
    pub message: String,
    #[serde(default)]
    pub action_taken: Option<String>,
    #[serde(default)]
    pub timestamp: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestIn {
    #[serde(default)]
    pub flows: Vec<FlowIn>,
    #[serde(default)]
    pub predictions: Vec<PredictionIn>,
    #[serde(default)]
    pub alerts: Vec<AlertIn>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IngestOut {
    pub flows_received: usize,
    pub flows_stored: usize,
    pub predictions_stored: usize,
    pub alerts_stored: usize,
}

/// What `/ws/live` and `/ws/device/{id}` show for each stored prediction.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PredictionEvent<'a> {
    pub id: Uuid,
    pub device_id: Uuid,
    pub device_name: &'a str,
    pub score: f64,
    pub label: &'a str,
    pub confidence: f64,
    pub attack_type: Option<&'a str>,
    pub model_version: &'a str,
    pub timestamp: DateTime<Utc>,
    /// The window holds flows of an attack-simulation session: a test.
    pub simulated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack_session_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack_step: Option<i32>,
}

pub fn publish_prediction(app: &App, p: &Prediction, device_name: &str) {
    publish_prediction_to(&app.events, p, device_name);
}

/// The `prediction` event on `/ws/live` and the device's channel.
pub fn publish_prediction_to(events: &crate::ws::Broadcaster, p: &Prediction, device_name: &str) {
    let ev = PredictionEvent {
        id: p.id,
        device_id: p.device_id,
        device_name,
        score: p.score,
        label: &p.label,
        confidence: p.confidence,
        attack_type: p.attack_type.as_deref(),
        model_version: &p.model_version,
        timestamp: p.ts,
        simulated: p.attack_session_id.is_some(),
        attack_session_id: p.attack_session_id,
        attack_step: p.attack_step,
    };
    let mut topics = vec![Topic::Live, Topic::Device(p.device_id)];
    if let Some(session) = p.attack_session_id {
        topics.push(Topic::Attack(session));
    }
    events.publish("prediction", &ev, &topics);
}

pub fn publish_alert(app: &App, a: &Alert) {
    publish_alert_to(&app.events, a);
}

/// The `alert` event on `/ws/alerts`, `/ws/live` and the device's channel.
pub fn publish_alert_to(events: &crate::ws::Broadcaster, a: &Alert) {
    events.publish("alert", a, &[Topic::Alerts, Topic::Live, Topic::Device(a.device_id)]);
}

fn finite(field: String, v: f64, lo: f64, hi: f64) -> ApiResult<f64> {
    if !v.is_finite() || v < lo || v > hi {
        return Err(ApiError::field(
            field,
            format!("must be a number between {lo} and {hi}"),
        ));
    }
    Ok(v)
}

/// Validates a prediction and turns it into a row (label and confidence derived from the score if absent).
pub fn prediction_row(i: usize, p: PredictionIn, now: DateTime<Utc>) -> ApiResult<Prediction> {
    let score = finite(format!("predictions[{i}].score"), p.score, 0.0, 1.0)?;
    let label = p
        .label
        .unwrap_or(if score >= 0.5 { Label::Attack } else { Label::Benign });
    let confidence = match p.confidence {
        Some(c) => finite(format!("predictions[{i}].confidence"), c, 0.0, 1.0)?,
        None => ((score - 0.5).abs() * 2.0).min(1.0),
    };
    if p.model_version.is_empty() || p.model_version.len() > 100 {
        return Err(ApiError::field(
            format!("predictions[{i}].model_version"),
            "1-100 characters",
        ));
    }
    if p.attack_type.as_ref().is_some_and(|t| t.is_empty() || t.len() > 50) {
        return Err(ApiError::field(
            format!("predictions[{i}].attack_type"),
            "1-50 characters",
        ));
    }
    let latency = finite(
        format!("predictions[{i}].inference_latency_ms"),
        p.inference_latency_ms,
        0.0,
        3.6e6,
    )?;
    Ok(Prediction {
        id: p.id,
        device_id: p.device_id,
        score,
        label: label.as_str().into(),
        confidence,
        attack_type: p.attack_type,
        model_version: p.model_version,
        window_start: p.window_start,
        window_end: p.window_end,
        feature_importance: p.feature_importance,
        inference_latency_ms: latency,
        ts: p.timestamp.unwrap_or(now),
        attack_session_id: None,
        attack_step: None,
        clean_score: None,
    })
}

#[rocket::post("/traffic/ingest", data = "<body>")]
pub async fn ingest(_a: Auth<Operator>, app: &State<App>, body: Body<IngestIn>) -> ApiResult<Json<IngestOut>> {
    let b = body.0;
    let total = b.flows.len() + b.predictions.len() + b.alerts.len();
    if total > MAX_BATCH {
        return Err(ApiError::field(
            "flows",
            format!("at most {MAX_BATCH} records per request; split the batch"),
        ));
    }
    let now = Utc::now();
    // Which device each record names, by its field path, for a precise 422.
    let mut wanted: HashMap<Uuid, String> = HashMap::new();
    let mut flows = Vec::with_capacity(b.flows.len());
    for (i, f) in b.flows.into_iter().enumerate() {
        if f.features.len() != gatewatch_proto::FEATURE_COUNT {
            return Err(ApiError::field(
                format!("flows[{i}].features"),
                format!(
                    "expected {} values, got {}",
                    gatewatch_proto::FEATURE_COUNT,
                    f.features.len()
                ),
            ));
        }
        if let Some(j) = f.features.iter().position(|v| !v.is_finite()) {
            return Err(ApiError::field(
                format!("flows[{i}].features[{j}]"),
                "must be a finite number",
            ));
        }
        wanted
            .entry(f.device_id)
            .or_insert_with(|| format!("flows[{i}].device_id"));
        flows.push(TrafficRow {
            id: f.id,
            ts: f.timestamp,
            device_id: f.device_id,
            features: f.features,
            source_type: f.source_type.as_str().into(),
            flow_index: f.flow_index,
            metadata: f.metadata,
        });
    }
    let mut preds = Vec::with_capacity(b.predictions.len());
    for (i, p) in b.predictions.into_iter().enumerate() {
        wanted
            .entry(p.device_id)
            .or_insert_with(|| format!("predictions[{i}].device_id"));
        preds.push(prediction_row(i, p, now)?);
    }
    let mut alerts_in = Vec::with_capacity(b.alerts.len());
    for (i, a) in b.alerts.into_iter().enumerate() {
        if a.message.is_empty() || a.message.len() > 10_000 {
            return Err(ApiError::field(format!("alerts[{i}].message"), "1-10000 bytes"));
        }
        if a.action_taken.as_ref().is_some_and(|t| t.len() > 100) {
            return Err(ApiError::field(
                format!("alerts[{i}].action_taken"),
                "at most 100 characters",
            ));
        }
        wanted
            .entry(a.device_id)
            .or_insert_with(|| format!("alerts[{i}].device_id"));
        alerts_in.push(Alert {
            id: a.id,
            device_id: a.device_id,
            prediction_id: a.prediction_id,
            alert_type: a.alert_type.as_str().into(),
            severity: a.severity.as_str().into(),
            message: a.message,
            is_acknowledged: false,
            acknowledged_by: None,
            acknowledged_at: None,
            action_taken: a.action_taken,
            ts: a.timestamp.unwrap_or(now),
        });
    }
    let flows_received = flows.len();
    let mut last_seen: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    for f in &flows {
        let e = last_seen.entry(f.device_id).or_insert(f.ts);
        *e = (*e).max(f.ts);
    }
    let (names, flows_stored, new_preds, new_alerts) = app
        .db
        .run(move |c| {
            let (names, stored, new_preds, new_alerts) = c.transaction(|c| {
                let ids: Vec<Uuid> = wanted.keys().copied().collect();
                let names: HashMap<Uuid, String> = devices::table
                    .filter(devices::id.eq_any(&ids))
                    .select((devices::id, devices::name))
                    .load::<(Uuid, String)>(c)?
                    .into_iter()
                    .collect();
                if let Some((_, field)) = wanted
                    .iter()
                    .filter(|(id, _)| !names.contains_key(id))
                    .min_by_key(|(_, f)| *f)
                {
                    return Err(ApiError::field(field.clone(), "no such device"));
                }
                // 8 bind parameters per row; PostgreSQL allows 65535 per statement.
                let mut stored = 0;
                for chunk in flows.chunks(4000) {
                    stored += diesel::insert_into(traffic_logs::table)
                        .values(chunk)
                        .on_conflict_do_nothing()
                        .execute(c)?;
                }
                let mut new_preds = Vec::new();
                for chunk in preds.chunks(4000) {
                    new_preds.extend(
                        diesel::insert_into(predictions::table)
                            .values(chunk)
                            .on_conflict_do_nothing()
                            .returning(Prediction::as_returning())
                            .get_results(c)?,
                    );
                }
                let mut new_alerts = Vec::new();
                for chunk in alerts_in.chunks(4000) {
                    new_alerts.extend(
                        diesel::insert_into(alerts::table)
                            .values(chunk)
                            .on_conflict_do_nothing()
                            .returning(Alert::as_returning())
                            .get_results(c)?,
                    );
                }
                Ok::<_, ApiError>((names, stored, new_preds, new_alerts))
            })?;
            touch_last_seen(c, last_seen);
            Ok((names, stored, new_preds, new_alerts))
        })
        .await?;
    for p in &new_preds {
        publish_prediction(app, p, names.get(&p.device_id).map(String::as_str).unwrap_or(""));
    }
    for a in &new_alerts {
        publish_alert(app, a);
    }
    app.webhooks.on_alerts(&app.db, &app.events, &new_alerts);
    tracing::debug!(
        flows_received,
        flows_stored,
        predictions = new_preds.len(),
        alerts = new_alerts.len(),
        "ingest"
    );
    Ok(Json(IngestOut {
        flows_received,
        flows_stored,
        predictions_stored: new_preds.len(),
        alerts_stored: new_alerts.len(),
    }))
}

/// Moves `devices.last_seen_at` forward, outside the ingest transaction and only when it is more than a
/// few seconds behind: concurrent batches for the same devices then neither queue on the device rows
/// nor deadlock. A failure here loses no data (the flows are committed), so it is only logged.
fn touch_last_seen(c: &mut diesel::PgConnection, last_seen: HashMap<Uuid, DateTime<Utc>>) {
    if last_seen.is_empty() {
        return;
    }
    let (ids, times): (Vec<Uuid>, Vec<DateTime<Utc>>) = last_seen.into_iter().unzip();
    let r = diesel::sql_query(
        "UPDATE devices d SET last_seen_at = v.ts FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, ts) \
         WHERE d.id = v.id AND (d.last_seen_at IS NULL OR d.last_seen_at < v.ts - interval '5 seconds')",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Timestamptz>, _>(times)
    .execute(c);
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not update devices.last_seen_at");
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Flow {
    pub id: Uuid,
    pub device_id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub features: Vec<f32>,
    pub source_type: String,
    pub flow_index: Option<i32>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, rocket::FromForm)]
pub struct TrafficQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    #[field(default = 1, validate = range(1..=1_000_000))]
    pub page: i64,
    #[field(default = 50, validate = range(1..=1000))]
    pub size: i64,
}

type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn range(from: Option<&str>, to: Option<&str>) -> ApiResult<Range> {
    let r = (time_param("from", from)?, time_param("to", to)?);
    if let (Some(f), Some(t)) = r {
        if f > t {
            return Err(ApiError::field("from", "must not be after `to`"));
        }
    }
    Ok(r)
}

fn flows_query(device: Uuid, (from, to): Range) -> traffic_logs::BoxedQuery<'static, diesel::pg::Pg> {
    let mut q = traffic_logs::table
        .filter(traffic_logs::device_id.eq(device))
        .into_boxed();
    if let Some(f) = from {
        q = q.filter(traffic_logs::ts.ge(f));
    }
    if let Some(t) = to {
        q = q.filter(traffic_logs::ts.le(t));
    }
    q
}

#[rocket::get("/traffic/<device_id>?<q..>")]
pub async fn list(
    _a: Auth<Viewer>,
    app: &State<App>,
    device_id: Uuid,
    q: Result<TrafficQuery, Errors<'_>>,
) -> ApiResult<Json<Page<Flow>>> {
    let q = query(q)?;
    let r = range(q.from.as_deref(), q.to.as_deref())?;
    super::devices::load_device(app, device_id).await?;
    let page = PageQuery {
        page: q.page,
        size: q.size,
    };
    let (rows, total) = app
        .db
        .run(move |c| {
            let total = flows_query(device_id, r).count().get_result(c)?;
            let rows = flows_query(device_id, r)
                .order((traffic_logs::ts.desc(), traffic_logs::id.asc()))
                .limit(page.size)
                .offset(page.offset())
                .select(TrafficRow::as_select())
                .load(c)?;
            Ok((rows, total))
        })
        .await?;
    let items = rows
        .into_iter()
        .map(|r| Flow {
            id: r.id,
            device_id: r.device_id,
            timestamp: r.ts,
            features: r.features,
            source_type: r.source_type,
            flow_index: r.flow_index,
            metadata: r.metadata,
        })
        .collect();
    Ok(Json(page.page_of(items, total)))
}

#[derive(Debug, rocket::FromForm)]
pub struct ExportQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    #[field(default = 100_000, validate = range(1..=1_000_000))]
    pub limit: i64,
}

/// CSV: id, timestamp, source type, then the 78 features under their CIC-IDS2017 names.
#[rocket::get("/traffic/<device_id>/export?<q..>")]
pub async fn export(
    _a: Auth<Viewer>,
    app: &State<App>,
    device_id: Uuid,
    q: Result<ExportQuery, Errors<'_>>,
) -> ApiResult<(ContentType, String)> {
    let q = query(q)?;
    let r = range(q.from.as_deref(), q.to.as_deref())?;
    super::devices::load_device(app, device_id).await?;
    let limit = q.limit;
    let rows = app
        .db
        .run(move |c| {
            Ok(flows_query(device_id, r)
                .order(traffic_logs::ts.asc())
                .limit(limit)
                .select(TrafficRow::as_select())
                .load(c)?)
        })
        .await?;
    let mut out = String::with_capacity(64 + rows.len() * 600);
    out.push_str("Flow ID,Timestamp,Source Type");
    for f in gatewatch_proto::FEATURES.iter() {
        out.push(',');
        out.push_str(f.published);
    }
    out.push('\n');
    for r in rows {
        out.push_str(&format!("{},{},{}", r.id, r.ts.to_rfc3339(), r.source_type));
        for v in r.features {
            out.push(',');
            out.push_str(&v.to_string());
        }
        out.push('\n');
    }
    Ok((ContentType::CSV, out))
}

fn is_capture(head: &[u8]) -> bool {
    const MAGICS: [[u8; 4]; 5] = [
        [0xd4, 0xc3, 0xb2, 0xa1],
        [0xa1, 0xb2, 0xc3, 0xd4],
        [0x4d, 0x3c, 0xb2, 0xa1],
        [0xa1, 0xb2, 0x3c, 0x4d],
        [0x0a, 0x0d, 0x0d, 0x0a],
    ];
    head.len() >= 24 && MAGICS.iter().any(|m| head[..4] == m[..])
}

#[derive(Debug, rocket::FromForm)]
pub struct UploadQuery {
    pub device_id: Uuid,
}

/// Where uploaded captures wait for their agent to fetch them over QUIC.
pub fn upload_path(data_dir: &std::path::Path, upload_id: Uuid) -> std::path::PathBuf {
    data_dir.join("uploads").join(format!("{upload_id}.pcap"))
}

/// Accepts a pcap/pcapng body for a device and asks the device's agent to replay it through
/// its pipeline (it fetches the file over QUIC): 202 with the command to follow.
#[rocket::post("/traffic/upload-pcap?<q..>", data = "<data>")]
pub async fn upload_pcap(
    a: Auth<Operator>,
    app: &State<App>,
    q: Result<UploadQuery, Errors<'_>>,
    data: Data<'_>,
) -> ApiResult<(Status, Json<AgentCommand>)> {
    let q = query(q)?;
    let device = super::devices::load_device(app, q.device_id).await?;
    let limit = app.config.max_upload_bytes;
    let bytes = data
        .open(limit.bytes())
        .into_bytes()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if !bytes.is_complete() {
        return Err(ApiError::new(
            Status::PayloadTooLarge,
            "payload_too_large",
            format!("upload is larger than {limit} bytes (max_upload_bytes)"),
        ));
    }
    let bytes = bytes.into_inner();
    if !is_capture(&bytes) {
        return Err(ApiError::field("body", "not a pcap or pcapng file"));
    }
    // Refused before the file is kept: nobody would ever fetch it.
    super::commands::agent_of(&device)?;
    let upload_id = Uuid::new_v4();
    let path = upload_path(&app.config.data_dir, upload_id);
    let size = bytes.len();
    let sha256 = rocket::tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &bytes)?;
        Ok::<_, std::io::Error>(gatewatch_proto::enroll::sha256_hex(&bytes))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("cannot store upload: {e}")))?;
    let payload = serde_json::json!({
        "device_id": device.id,
        "ip": device.ip_address.ip(),
        "upload_id": upload_id,
        "bytes": size,
        "sha256": sha256,
    });
    super::commands::send_to_device(app, &device, "traffic.replay_pcap", payload, a.user_id()).await
}
