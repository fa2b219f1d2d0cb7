//! `/fl`: federated-learning rounds (read), status, current model, start/stop intents.

use diesel::prelude::*;
use rocket::form::Errors;
use rocket::serde::json::Json;
use rocket::State;
use serde::{Deserialize, Serialize};

use super::{query, Page, PageQuery};
use crate::auth::guard::{Admin, Auth, Body, Viewer};
use crate::db::models::{FlClientMetric, FlRound};
use crate::db::schema::{agent_commands, fl_client_metrics, fl_rounds, system_settings};
use crate::error::{ApiError, ApiResult};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![rounds, round, status, start, stop, model_current]
}

#[rocket::get("/fl/rounds?<q..>")]
pub async fn rounds(
    _a: Auth<Viewer>,
    app: &State<App>,
    q: Result<PageQuery, Errors<'_>>,
) -> ApiResult<Json<Page<FlRound>>> {
    let page = query(q)?;
    let (items, total) = app
        .db
        .run(move |c| {
            let total = fl_rounds::table.count().get_result(c)?;
            let items = fl_rounds::table
                .order(fl_rounds::round_number.asc())
                .limit(page.size)
                .offset(page.offset())
                .select(FlRound::as_select())
                .load(c)?;
            Ok((items, total))
        })
        .await?;
    Ok(Json(page.page_of(items, total)))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RoundDetail {
    #[serde(flatten)]
    pub round: FlRound,
    pub clients: Vec<FlClientMetric>,
}

#[rocket::get("/fl/rounds/<round_number>")]
pub async fn round(_a: Auth<Viewer>, app: &State<App>, round_number: i32) -> ApiResult<Json<RoundDetail>> {
    let d = app
        .db
        .run(move |c| {
            let round = fl_rounds::table
                .filter(fl_rounds::round_number.eq(round_number))
                .select(FlRound::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| ApiError::not_found("FL round"))?;
            let clients = fl_client_metrics::table
                .filter(fl_client_metrics::round_id.eq(round.id))
                .order(fl_client_metrics::client_id.asc())
                .select(FlClientMetric::as_select())
                .load(c)?;
            Ok(RoundDetail { round, clients })
        })
        .await?;
    Ok(Json(d))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlStatus {
    /// `idle` until the FL coordinator runs rounds with connected agents.
    pub state: &'static str,
    pub rounds_completed: i64,
    pub last_round: Option<i32>,
    pub pending_requests: i64,
    pub connected_agents: i64,
}

#[rocket::get("/fl/status")]
pub async fn status(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<FlStatus>> {
    let s = app
        .db
        .run(|c| {
            let rounds_completed = fl_rounds::table.count().get_result(c)?;
            let last_round = fl_rounds::table
                .select(diesel::dsl::max(fl_rounds::round_number))
                .first(c)?;
            let pending_requests = agent_commands::table
                .filter(agent_commands::command.like("fl.%"))
                .filter(agent_commands::status.eq("pending"))
                .count()
                .get_result(c)?;
            Ok(FlStatus {
                state: "idle",
                rounds_completed,
                last_round,
                pending_requests,
                connected_agents: 0,
            })
        })
        .await?;
    Ok(Json(s))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlStartIn {
    pub num_rounds: i32,
    #[serde(default)]
    pub min_clients: Option<i32>,
    #[serde(default)]
    pub local_epochs: Option<i32>,
}

/// Requests a training run; recorded, 409 until agents are connected.
#[rocket::post("/fl/start", data = "<body>")]
pub async fn start(a: Auth<Admin>, app: &State<App>, body: Body<FlStartIn>) -> ApiResult<ApiError> {
    let b = body.0;
    if !(1..=1000).contains(&b.num_rounds) {
        return Err(ApiError::field("num_rounds", "1-1000"));
    }
    if b.min_clients.is_some_and(|n| !(1..=10_000).contains(&n)) {
        return Err(ApiError::field("min_clients", "1-10000"));
    }
    if b.local_epochs.is_some_and(|n| !(1..=100).contains(&n)) {
        return Err(ApiError::field("local_epochs", "1-100"));
    }
    let payload = serde_json::to_value(&b).map_err(|e| ApiError::internal(e.to_string()))?;
    let user = a.user_id();
    let cmd = app
        .db
        .run(move |c| super::record_intent(c, None, None, "fl.start", payload, user))
        .await?;
    Ok(super::no_agent("training run", cmd))
}

#[rocket::post("/fl/stop")]
pub async fn stop(a: Auth<Admin>, app: &State<App>) -> ApiResult<ApiError> {
    let user = a.user_id();
    let cmd = app
        .db
        .run(move |c| super::record_intent(c, None, None, "fl.stop", serde_json::json!({}), user))
        .await?;
    Ok(super::no_agent("training run", cmd))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelInfo {
    pub active_model: String,
    pub last_round: Option<i32>,
    pub checkpoint: Option<String>,
}

#[rocket::get("/fl/model/current")]
pub async fn model_current(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<ModelInfo>> {
    let info = app
        .db
        .run(|c| {
            let active: Option<serde_json::Value> = system_settings::table
                .find("active_model")
                .select(system_settings::value)
                .first(c)
                .optional()?;
            let last: Option<FlRound> = fl_rounds::table
                .order(fl_rounds::round_number.desc())
                .select(FlRound::as_select())
                .first(c)
                .optional()?;
            Ok(ModelInfo {
                active_model: active
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_else(|| super::settings::DEFAULT_MODEL.into()),
                last_round: last.as_ref().map(|r| r.round_number),
                checkpoint: last.and_then(|r| r.model_checkpoint_path),
            })
        })
        .await?;
    Ok(Json(info))
}
