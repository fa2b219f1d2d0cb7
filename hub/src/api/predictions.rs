//! `/predict` scores a window with the active model; `/predictions`: history per device,
//! global stats, stored explanations.

use chrono::{DateTime, Utc};
use diesel::dsl::{avg, count_star};
use diesel::prelude::*;
use rocket::form::Errors;
use rocket::serde::json::Json;
use rocket::State;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{query, time_param, Label, Opt, Page, PageQuery};
use crate::auth::guard::{Auth, Body, Operator, Viewer};
use crate::db::models::Prediction;
use crate::db::schema::predictions;
use crate::error::{ApiError, ApiResult};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![predict, list, stats, explain]
}

/// Permutations sampled for the Shapley estimate of a `/predict` call (about 25 ms).
const EXPLAIN_PERMUTATIONS: usize = 8;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictIn {
    pub device_id: Uuid,
    /// 10 consecutive flows of the device, oldest first, each the 78 raw (unscaled) features in
    /// `gatewatch_proto::FEATURES` order.
    pub window: Vec<Vec<f64>>,
    /// Compute Shapley-value feature importances (default true).
    #[serde(default)]
    pub explain: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeatureImportance {
    pub feature: String,
    /// Change of the attack probability attributed to the feature.
    pub importance: f32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PredictOut {
    pub prediction_id: Uuid,
    pub device_id: Uuid,
    pub score: f32,
    pub label: Label,
    pub confidence: f32,
    /// Most probable family: benign, scan, dos_ddos, brute_force, slow_rate, botnet_c2,
    /// exfiltration, web_attack, iot_flood.
    pub family: String,
    pub family_probs: std::collections::BTreeMap<String, f32>,
    pub inference_latency_ms: f64,
    /// The 10 features with the largest Shapley values, largest |importance| first.
    pub feature_importance: Option<Vec<FeatureImportance>>,
    pub model_version: String,
    pub timestamp: DateTime<Utc>,
}

fn window_of(rows: &[Vec<f64>]) -> ApiResult<gatewatch_models::Window> {
    use gatewatch_models::{FEATURE_COUNT, WINDOW};
    if rows.len() != WINDOW {
        return Err(ApiError::field(
            "window",
            format!("expected {WINDOW} flows (rows), got {}", rows.len()),
        ));
    }
    let mut w = [[0f32; FEATURE_COUNT]; WINDOW];
    for (t, row) in rows.iter().enumerate() {
        if row.len() != FEATURE_COUNT {
            return Err(ApiError::field(
                format!("window[{t}]"),
                format!("expected {FEATURE_COUNT} features, got {}", row.len()),
            ));
        }
        for (j, &v) in row.iter().enumerate() {
            w[t][j] = v as f32;
        }
    }
    Ok(w)
}

/// Scores one window with the active model, stores the prediction and publishes it live.
#[rocket::post("/predict", data = "<body>")]
pub async fn predict(_a: Auth<Operator>, app: &State<App>, body: Body<PredictIn>) -> ApiResult<Json<PredictOut>> {
    let input = body.0;
    let window = window_of(&input.window)?;
    let device = super::devices::load_device(app, input.device_id).await?;
    let model = app
        .models
        .active()
        .map_err(|e| ApiError::new(rocket::http::Status::ServiceUnavailable, "no_model", e.to_string()))?;
    let explain = input.explain.unwrap_or(true);
    let scored = rocket::tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let p = model.score(std::slice::from_ref(&window))?.into_iter().next();
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let top = if explain {
            let e = gatewatch_models::explain::explain(&model, &window, EXPLAIN_PERMUTATIONS, 1)?;
            Some(
                e.top
                    .into_iter()
                    .map(|c| FeatureImportance {
                        feature: c.name,
                        importance: c.value,
                    })
                    .collect::<Vec<_>>(),
            )
        } else {
            None
        };
        Ok::<_, gatewatch_models::Error>((p, latency_ms, top, model.metadata().model_version.clone()))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(format!("scoring failed: {e}")))?;
    let (Some(p), latency_ms, top, model_version) = scored else {
        return Err(ApiError::internal("the model returned no prediction"));
    };
    let attack = p.label == gatewatch_models::score::Label::Attack;
    let row = Prediction {
        id: Uuid::new_v4(),
        device_id: device.id,
        score: f64::from(p.score),
        label: if attack { Label::Attack } else { Label::Benign }.as_str().into(),
        confidence: f64::from(p.confidence),
        attack_type: attack.then(|| p.family.name().to_string()),
        model_version: model_version.clone(),
        window_start: None,
        window_end: None,
        feature_importance: top.as_ref().map(|t| serde_json::json!(t)),
        inference_latency_ms: latency_ms,
        ts: Utc::now(),
        attack_session_id: None,
        attack_step: None,
        clean_score: None,
    };
    let stored = row.clone();
    app.db
        .run(move |c| {
            diesel::insert_into(predictions::table).values(&stored).execute(c)?;
            Ok(())
        })
        .await?;
    super::traffic::publish_prediction(app, &row, &device.name);
    Ok(Json(PredictOut {
        prediction_id: row.id,
        device_id: row.device_id,
        score: p.score,
        label: if attack { Label::Attack } else { Label::Benign },
        confidence: p.confidence,
        family: p.family.name().into(),
        family_probs: gatewatch_models::FAMILIES
            .iter()
            .zip(&p.family_probs)
            .map(|(f, &v)| (f.name().to_string(), v))
            .collect(),
        inference_latency_ms: latency_ms,
        feature_importance: top,
        model_version,
        timestamp: row.ts,
    }))
}

#[derive(Debug, rocket::FromForm)]
pub struct PredictionQuery {
    pub label: Opt<Label>,
    pub from: Option<String>,
    pub to: Option<String>,
    #[field(default = 1, validate = range(1..=1_000_000))]
    pub page: i64,
    #[field(default = 50, validate = range(1..=200))]
    pub size: i64,
}

#[rocket::get("/predictions/<device_id>?<q..>")]
pub async fn list(
    _a: Auth<Viewer>,
    app: &State<App>,
    device_id: Uuid,
    q: Result<PredictionQuery, Errors<'_>>,
) -> ApiResult<Json<Page<Prediction>>> {
    let q = query(q)?;
    let (from, to) = (
        time_param("from", q.from.as_deref())?,
        time_param("to", q.to.as_deref())?,
    );
    super::devices::load_device(app, device_id).await?;
    let page = PageQuery {
        page: q.page,
        size: q.size,
    };
    let label = q.label.0;
    let filter = move || {
        let mut f = predictions::table
            .filter(predictions::device_id.eq(device_id))
            .into_boxed();
        if let Some(l) = label {
            f = f.filter(predictions::label.eq(l.as_str()));
        }
        if let Some(t) = from {
            f = f.filter(predictions::ts.ge(t));
        }
        if let Some(t) = to {
            f = f.filter(predictions::ts.le(t));
        }
        f
    };
    let (items, total) = app
        .db
        .run(move |c| {
            let total = filter().count().get_result(c)?;
            let items = filter()
                .order((predictions::ts.desc(), predictions::id.asc()))
                .limit(page.size)
                .offset(page.offset())
                .select(Prediction::as_select())
                .load(c)?;
            Ok((items, total))
        })
        .await?;
    Ok(Json(page.page_of(items, total)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PredictionStats {
    pub total: i64,
    pub attacks: i64,
    pub benign: i64,
    pub attack_pct: f64,
    pub benign_pct: f64,
    pub avg_score: Option<f64>,
    pub avg_latency_ms: Option<f64>,
}

#[derive(Debug, rocket::FromForm)]
pub struct StatsQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

#[rocket::get("/predictions/stats?<q..>")]
pub async fn stats(
    _a: Auth<Viewer>,
    app: &State<App>,
    q: Result<StatsQuery, Errors<'_>>,
) -> ApiResult<Json<PredictionStats>> {
    let q = query(q)?;
    let (from, to) = (
        time_param("from", q.from.as_deref())?,
        time_param("to", q.to.as_deref())?,
    );
    let filter = move || {
        let mut f = predictions::table.into_boxed();
        if let Some(t) = from {
            f = f.filter(predictions::ts.ge(t));
        }
        if let Some(t) = to {
            f = f.filter(predictions::ts.le(t));
        }
        f
    };
    let s = app
        .db
        .run(move |c| {
            // One statement, one snapshot: counts taken apart disagree while agents insert.
            let (total, attacks, avg_score, avg_latency_ms): (i64, i64, Option<f64>, Option<f64>) = filter()
                .select((
                    count_star(),
                    diesel::dsl::sql::<diesel::sql_types::BigInt>("count(*) FILTER (WHERE label = 'attack')"),
                    avg(predictions::score),
                    avg(predictions::inference_latency_ms),
                ))
                .first(c)?;
            let pct = |n: i64| {
                if total == 0 {
                    0.0
                } else {
                    n as f64 * 100.0 / total as f64
                }
            };
            Ok(PredictionStats {
                total,
                attacks,
                benign: total - attacks,
                attack_pct: pct(attacks),
                benign_pct: pct(total - attacks),
                avg_score,
                avg_latency_ms,
            })
        })
        .await?;
    Ok(Json(s))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    pub prediction_id: Uuid,
    pub score: f64,
    pub label: String,
    pub model_version: String,
    /// Shapley-value estimates `[{feature, importance}]` computed by the scorer.
    #[schema(value_type = Object)]
    pub feature_importance: serde_json::Value,
    pub timestamp: DateTime<Utc>,
}

#[rocket::get("/predictions/<id>/explain")]
pub async fn explain(_a: Auth<Viewer>, app: &State<App>, id: Uuid) -> ApiResult<Json<Explanation>> {
    let p = app
        .db
        .run(move |c| {
            predictions::table
                .find(id)
                .select(Prediction::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| ApiError::not_found("prediction"))
        })
        .await?;
    let Some(fi) = p.feature_importance else {
        return Err(ApiError::not_found(
            "explanation for this prediction (none was computed when it was scored)",
        ));
    };
    Ok(Json(Explanation {
        prediction_id: p.id,
        score: p.score,
        label: p.label,
        model_version: p.model_version,
        feature_importance: fi,
        timestamp: p.ts,
    }))
}
