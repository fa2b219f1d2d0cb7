//! `/fl`: federated-learning runs (start, stop, status), their rounds and clients, and the
//! global model (current, download).

use diesel::prelude::*;
use rocket::form::Errors;
use rocket::http::{ContentType, Status};
use rocket::serde::json::Json;
use rocket::State;
use serde::Serialize;

use super::{query, Page, PageQuery};
use crate::auth::guard::{Admin, Auth, Body, Viewer};
use crate::db::models::{FlClientMetric, FlRound, FlRun};
use crate::db::schema::{fl_client_metrics, fl_rounds, fl_runs};
use crate::error::{ApiError, ApiResult};
use crate::fl::{RunParams, StartError};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![rounds, round, runs, status, start, stop, model_current, model_download]
}

#[rocket::get("/fl/rounds?<run_id>&<q..>")]
pub async fn rounds(
    _a: Auth<Viewer>,
    app: &State<App>,
    run_id: Option<&str>,
    q: Result<PageQuery, Errors<'_>>,
) -> ApiResult<Json<Page<FlRound>>> {
    let page = query(q)?;
    let run_id = match run_id {
        Some(s) => Some(uuid::Uuid::parse_str(s).map_err(|_| ApiError::field("run_id", "a run id (UUID)"))?),
        None => None,
    };
    let (items, total) = app
        .db
        .run(move |c| {
            let mut count = fl_rounds::table.into_boxed();
            let mut list = fl_rounds::table.into_boxed();
            if let Some(r) = run_id {
                count = count.filter(fl_rounds::run_id.eq(r));
                list = list.filter(fl_rounds::run_id.eq(r));
            }
            let total = count.count().get_result(c)?;
            let items = list
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

/// Runs, newest first (at most 100).
#[rocket::get("/fl/runs")]
pub async fn runs(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<Vec<FlRun>>> {
    let runs = app
        .db
        .run(|c| {
            Ok(fl_runs::table
                .order(fl_runs::started_at.desc())
                .limit(100)
                .select(FlRun::as_select())
                .load(c)?)
        })
        .await?;
    Ok(Json(runs))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlStatus {
    #[serde(flatten)]
    pub run: crate::fl::Status,
    pub rounds_completed: i64,
    pub rounds_failed: i64,
    pub last_round: Option<i32>,
    /// Agents online and enrolled (possible clients and committee members).
    pub connected_agents: i64,
}

#[rocket::get("/fl/status")]
pub async fn status(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<FlStatus>> {
    let run = app.fl.status();
    let s = app
        .db
        .run(move |c| {
            use crate::db::schema::agents;
            let rounds_completed = fl_rounds::table
                .filter(fl_rounds::status.eq("completed"))
                .count()
                .get_result(c)?;
            let rounds_failed = fl_rounds::table
                .filter(fl_rounds::status.eq("failed"))
                .count()
                .get_result(c)?;
            let last_round = fl_rounds::table
                .select(diesel::dsl::max(fl_rounds::round_number))
                .first(c)?;
            let connected_agents = agents::table
                .filter(agents::status.eq("online"))
                .filter(agents::cert_fingerprint.is_not_null())
                .filter(agents::revoked_at.is_null())
                .count()
                .get_result(c)?;
            Ok(FlStatus {
                run,
                rounds_completed,
                rounds_failed,
                last_round,
                connected_agents,
            })
        })
        .await?;
    Ok(Json(s))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunStarted {
    pub run_id: uuid::Uuid,
    pub params: RunParams,
}

/// Starts a supervised run (202); 409 if one runs or the fleet link has no QUIC side.
#[rocket::post("/fl/start", data = "<body>")]
pub async fn start(a: Auth<Admin>, app: &State<App>, body: Body<RunParams>) -> ApiResult<(Status, Json<RunStarted>)> {
    let params = body.0;
    params.check().map_err(|(field, m)| ApiError::field(field, m))?;
    match app.fl.start(params.clone(), Some(a.user_id())).await {
        Ok(run_id) => Ok((Status::Accepted, Json(RunStarted { run_id, params }))),
        Err(e @ (StartError::Running(_) | StartError::NoFleetLink)) => Err(ApiError::conflict(e.to_string())),
        Err(StartError::Db(e)) => Err(ApiError::internal(e)),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunStopping {
    pub run_id: uuid::Uuid,
}

/// Stops the running run at its next step (202); 409 if none runs.
#[rocket::post("/fl/stop")]
pub async fn stop(_a: Auth<Admin>, app: &State<App>) -> ApiResult<(Status, Json<RunStopping>)> {
    match app.fl.stop() {
        Some(run_id) => Ok((Status::Accepted, Json(RunStopping { run_id }))),
        None => Err(ApiError::conflict("no federated-learning run is in progress")),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelInfo {
    /// The `active_model` setting (`cnn_lstm_default` for the bundled model).
    pub active_model: String,
    /// The active model's version (what agents report scoring with).
    pub active_version: Option<String>,
    /// The newest model federated learning made, and its round.
    pub latest_fl_model: Option<String>,
    pub last_round: Option<i32>,
    pub checkpoint: Option<String>,
}

#[rocket::get("/fl/model/current")]
pub async fn model_current(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<ModelInfo>> {
    let active = app
        .models
        .active_name()
        .unwrap_or_else(|| super::settings::DEFAULT_MODEL.into());
    let active_version = app.models.active_files().map(|(v, _)| v);
    let info = app
        .db
        .run(move |c| {
            let last: Option<FlRound> = fl_rounds::table
                .filter(fl_rounds::status.eq("completed"))
                .order(fl_rounds::round_number.desc())
                .select(FlRound::as_select())
                .first(c)
                .optional()?;
            Ok(ModelInfo {
                active_model: active,
                active_version,
                latest_fl_model: last.as_ref().and_then(|r| r.model_version.clone()),
                last_round: last.as_ref().map(|r| r.round_number),
                checkpoint: last.and_then(|r| r.model_checkpoint_path),
            })
        })
        .await?;
    Ok(Json(info))
}

/// One file of a model (default: the active one): `model.onnx`, `params.bin` (flat
/// parameters), `scaler.json` or `metadata.json`.
#[rocket::get("/fl/model/download?<version>&<file>")]
pub async fn model_download(
    _a: Auth<Viewer>,
    app: &State<App>,
    version: Option<&str>,
    file: Option<&str>,
) -> ApiResult<(ContentType, Vec<u8>)> {
    use gatewatch_models::store::{METADATA_FILE, ONNX_FILE, PARAMS_FILE, SCALER_FILE};
    let file = file.unwrap_or(ONNX_FILE);
    if ![ONNX_FILE, PARAMS_FILE, SCALER_FILE, METADATA_FILE].contains(&file) {
        return Err(ApiError::field(
            "file",
            "model.onnx, params.bin, scaler.json or metadata.json",
        ));
    }
    let version = match version {
        Some(v) => v.to_string(),
        None => app
            .models
            .active_files()
            .map(|(v, _)| v)
            .ok_or_else(|| ApiError::not_found("active model"))?,
    };
    let dir = app
        .models
        .dir_of(&version)
        .ok_or_else(|| ApiError::not_found(&format!("model {version}")))?;
    let path = dir.join(file);
    let bytes = rocket::tokio::fs::read(&path)
        .await
        .map_err(|_| ApiError::not_found(&format!("{file} of model {version}")))?;
    let kind = if file.ends_with(".json") {
        ContentType::JSON
    } else {
        ContentType::Binary
    };
    Ok((kind, bytes))
}
