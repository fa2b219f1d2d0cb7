//! `/predictions`: history per device, global stats, stored explanations.

use chrono::{DateTime, Utc};
use diesel::dsl::{avg, count_star};
use diesel::prelude::*;
use rocket::form::Errors;
use rocket::serde::json::Json;
use rocket::State;
use serde::Serialize;
use uuid::Uuid;

use super::{query, time_param, Label, Opt, Page, PageQuery};
use crate::auth::guard::{Auth, Viewer};
use crate::db::models::Prediction;
use crate::db::schema::predictions;
use crate::error::{ApiError, ApiResult};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![list, stats, explain]
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
            let (total, avg_score, avg_latency_ms): (i64, Option<f64>, Option<f64>) = filter()
                .select((
                    count_star(),
                    avg(predictions::score),
                    avg(predictions::inference_latency_ms),
                ))
                .first(c)?;
            let attacks: i64 = filter().filter(predictions::label.eq("attack")).count().get_result(c)?;
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
