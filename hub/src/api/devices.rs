//! `/devices`: CRUD with pagination, filters and search; live status and stats; start/stop intents.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use ipnetwork::IpNetwork;
use rocket::form::Errors;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::State;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::commands::AgentCommand;
use super::{query, DeviceSort, DeviceStatus, DeviceType, Opt, Page, PageQuery, Protocol, TrafficSource};
use crate::auth::guard::{Auth, Body, Operator, Viewer};
use crate::db::models::DeviceRow;
use crate::db::schema::{agents, alerts, devices, predictions, traffic_logs};
use crate::error::{ApiError, ApiResult};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![list, get, create, update, delete, start, stop, status, stats]
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Device {
    pub id: Uuid,
    pub agent_id: Option<Uuid>,
    pub name: String,
    pub device_type: String,
    pub ip_address: String,
    pub protocol: String,
    /// Service port; none for devices an agent discovered.
    pub port: Option<i32>,
    pub status: String,
    pub traffic_source: String,
    pub description: Option<String>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub threat_count_today: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DeviceRow> for Device {
    fn from(d: DeviceRow) -> Self {
        Device {
            id: d.id,
            agent_id: d.agent_id,
            name: d.name,
            device_type: d.device_type,
            ip_address: d.ip_address.ip().to_string(),
            protocol: d.protocol,
            port: d.port,
            status: d.status,
            traffic_source: d.traffic_source,
            description: d.description,
            last_seen_at: d.last_seen_at,
            threat_count_today: d.threat_count_today,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    pub name: String,
    pub device_type: DeviceType,
    #[schema(value_type = String, example = "192.168.1.101")]
    pub ip_address: std::net::IpAddr,
    pub protocol: Protocol,
    pub port: u16,
    #[serde(default)]
    pub traffic_source: Option<TrafficSource>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub agent_id: Option<Uuid>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDevice {
    pub name: Option<String>,
    pub device_type: Option<DeviceType>,
    #[schema(value_type = Option<String>)]
    pub ip_address: Option<std::net::IpAddr>,
    pub protocol: Option<Protocol>,
    pub port: Option<u16>,
    pub status: Option<DeviceStatus>,
    pub traffic_source: Option<TrafficSource>,
    pub description: Option<String>,
    pub agent_id: Option<Uuid>,
}

#[derive(AsChangeset)]
#[diesel(table_name = devices)]
struct DeviceChanges {
    name: Option<String>,
    device_type: Option<String>,
    ip_address: Option<IpNetwork>,
    protocol: Option<String>,
    port: Option<i32>,
    status: Option<String>,
    traffic_source: Option<String>,
    description: Option<String>,
    agent_id: Option<Uuid>,
    updated_at: DateTime<Utc>,
}

fn check_name(name: &str) -> ApiResult<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 100 {
        return Err(ApiError::field("name", "1-100 characters"));
    }
    Ok(n.to_string())
}

fn check_port(port: u16) -> ApiResult<i32> {
    if port == 0 {
        return Err(ApiError::field("port", "must be 1-65535"));
    }
    Ok(i32::from(port))
}

fn check_description(d: Option<String>) -> ApiResult<Option<String>> {
    match d {
        Some(d) if d.len() > 10_000 => Err(ApiError::field("description", "at most 10000 bytes")),
        other => Ok(other),
    }
}

#[derive(Debug, rocket::FromForm)]
pub struct DeviceQuery {
    pub status: Opt<DeviceStatus>,
    pub device_type: Opt<DeviceType>,
    pub agent_id: Opt<Uuid>,
    pub search: Option<String>,
    /// Order by this column (default: creation time).
    pub sort: Opt<DeviceSort>,
    /// Descending order.
    #[field(default = false)]
    pub desc: bool,
    #[field(default = 1, validate = range(1..=1_000_000))]
    pub page: i64,
    #[field(default = 50, validate = range(1..=200))]
    pub size: i64,
}

/// Escapes LIKE wildcards so that a search matches literally.
fn like_pattern(s: &str) -> String {
    let escaped: String = s
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

pub(crate) async fn load_device(app: &App, id: Uuid) -> ApiResult<DeviceRow> {
    app.db
        .run(move |c| {
            devices::table
                .find(id)
                .select(DeviceRow::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| ApiError::not_found("device"))
        })
        .await
}

#[rocket::get("/devices?<q..>")]
pub async fn list(
    _a: Auth<Viewer>,
    app: &State<App>,
    q: Result<DeviceQuery, Errors<'_>>,
) -> ApiResult<Json<Page<Device>>> {
    let q = query(q)?;
    if q.search.as_ref().is_some_and(|s| s.len() > 100) {
        return Err(ApiError::field("search", "at most 100 characters"));
    }
    let page = PageQuery {
        page: q.page,
        size: q.size,
    };
    let filter = move || {
        let mut f = devices::table.into_boxed();
        if let Some(s) = q.status.0 {
            f = f.filter(devices::status.eq(s.as_str()));
        }
        if let Some(t) = q.device_type.0 {
            f = f.filter(devices::device_type.eq(t.as_str()));
        }
        if let Some(a) = q.agent_id.0 {
            f = f.filter(devices::agent_id.eq(a));
        }
        if let Some(s) = q.search.as_deref().filter(|s| !s.is_empty()) {
            let p = like_pattern(s);
            f = f.filter(devices::name.ilike(p.clone()).or(devices::description.ilike(p)));
        }
        f
    };
    let (rows, total) = app
        .db
        .run(move |c| {
            let total: i64 = filter().count().get_result(c)?;
            let mut ordered = filter();
            ordered = match (q.sort.0.unwrap_or(DeviceSort::Created), q.desc) {
                (DeviceSort::Created, false) => ordered.order(devices::created_at.asc()),
                (DeviceSort::Created, true) => ordered.order(devices::created_at.desc()),
                (DeviceSort::Name, false) => ordered.order(devices::name.asc()),
                (DeviceSort::Name, true) => ordered.order(devices::name.desc()),
                (DeviceSort::Status, false) => ordered.order(devices::status.asc()),
                (DeviceSort::Status, true) => ordered.order(devices::status.desc()),
                (DeviceSort::LastSeen, false) => ordered.order(devices::last_seen_at.asc().nulls_first()),
                (DeviceSort::LastSeen, true) => ordered.order(devices::last_seen_at.desc().nulls_last()),
                (DeviceSort::Threats, false) => ordered.order(devices::threat_count_today.asc()),
                (DeviceSort::Threats, true) => ordered.order(devices::threat_count_today.desc()),
            };
            let rows = ordered
                .then_order_by(devices::id.asc())
                .limit(page.size)
                .offset(page.offset())
                .select(DeviceRow::as_select())
                .load(c)?;
            Ok((rows, total))
        })
        .await?;
    Ok(Json(Page {
        items: rows.into_iter().map(Device::from).collect(),
        total,
        page: q.page,
        size: q.size,
    }))
}

#[rocket::get("/devices/<id>")]
pub async fn get(_a: Auth<Viewer>, app: &State<App>, id: Uuid) -> ApiResult<Json<Device>> {
    Ok(Json(load_device(app, id).await?.into()))
}

async fn check_agent(app: &App, agent: Option<Uuid>) -> ApiResult<()> {
    let Some(agent) = agent else { return Ok(()) };
    let n: i64 = app
        .db
        .run(move |c| Ok(agents::table.find(agent).count().get_result(c)?))
        .await?;
    if n == 0 {
        return Err(ApiError::field("agent_id", "no such agent"));
    }
    Ok(())
}

#[rocket::post("/devices", data = "<body>")]
pub async fn create(_a: Auth<Operator>, app: &State<App>, body: Body<NewDevice>) -> ApiResult<(Status, Json<Device>)> {
    let d = body.0;
    let now = Utc::now();
    check_agent(app, d.agent_id).await?;
    let row = DeviceRow {
        id: Uuid::new_v4(),
        agent_id: d.agent_id,
        name: check_name(&d.name)?,
        device_type: d.device_type.as_str().into(),
        ip_address: IpNetwork::from(d.ip_address),
        protocol: d.protocol.as_str().into(),
        port: Some(check_port(d.port)?),
        status: "offline".into(),
        traffic_source: d.traffic_source.unwrap_or(TrafficSource::Simulated).as_str().into(),
        description: check_description(d.description)?,
        last_seen_at: None,
        threat_count_today: 0,
        created_at: now,
        updated_at: now,
    };
    let row = app
        .db
        .run(move |c| {
            Ok(diesel::insert_into(devices::table)
                .values(&row)
                .returning(DeviceRow::as_returning())
                .get_result(c)?)
        })
        .await?;
    tracing::info!(device = %row.id, name = %row.name, "device created");
    Ok((Status::Created, Json(row.into())))
}

#[rocket::put("/devices/<id>", data = "<body>")]
pub async fn update(
    _a: Auth<Operator>,
    app: &State<App>,
    id: Uuid,
    body: Body<UpdateDevice>,
) -> ApiResult<Json<Device>> {
    let u = body.0;
    check_agent(app, u.agent_id).await?;
    // A device rule's address or agent may change with the device.
    let rules_may_change = u.ip_address.is_some() || u.agent_id.is_some();
    let changes = DeviceChanges {
        name: u.name.as_deref().map(check_name).transpose()?,
        device_type: u.device_type.map(|v| v.as_str().into()),
        ip_address: u.ip_address.map(IpNetwork::from),
        protocol: u.protocol.map(|v| v.as_str().into()),
        port: u.port.map(check_port).transpose()?,
        status: u.status.map(|v| v.as_str().into()),
        traffic_source: u.traffic_source.map(|v| v.as_str().into()),
        description: check_description(u.description)?,
        agent_id: u.agent_id,
        updated_at: Utc::now(),
    };
    let row = app
        .db
        .run(move |c| {
            diesel::update(devices::table.find(id))
                .set(&changes)
                .returning(DeviceRow::as_returning())
                .get_result(c)
                .optional()?
                .ok_or_else(|| ApiError::not_found("device"))
        })
        .await?;
    if rules_may_change {
        app.rules_changed.notify_one();
    }
    Ok(Json(row.into()))
}

/// Deletes the device and, by design (plan §6.3), its flows, predictions, alerts and sessions.
#[rocket::delete("/devices/<id>")]
pub async fn delete(_a: Auth<Operator>, app: &State<App>, id: Uuid) -> ApiResult<Status> {
    let n = app
        .db
        .run(move |c| Ok(diesel::delete(devices::table.find(id)).execute(c)?))
        .await?;
    if n == 0 {
        return Err(ApiError::not_found("device"));
    }
    tracing::info!(device = %id, "device deleted");
    // Its rules went with it.
    app.rules_changed.notify_one();
    Ok(Status::NoContent)
}

/// Asks the device's agent to score (start) or stop scoring (stop) the device's windows.
async fn monitor(
    a: &Auth<Operator>,
    app: &App,
    id: Uuid,
    command: &'static str,
) -> ApiResult<(Status, Json<AgentCommand>)> {
    let device = load_device(app, id).await?;
    let payload = serde_json::json!({ "device_id": id, "ip": device.ip_address.ip() });
    super::commands::send_to_device(app, &device, command, payload, a.user_id()).await
}

/// Starts scoring the device on its agent: 202 with the command to follow.
#[rocket::post("/devices/<id>/start")]
pub async fn start(a: Auth<Operator>, app: &State<App>, id: Uuid) -> ApiResult<(Status, Json<AgentCommand>)> {
    monitor(&a, app, id, "device.start").await
}

#[rocket::post("/devices/<id>/stop")]
pub async fn stop(a: Auth<Operator>, app: &State<App>, id: Uuid) -> ApiResult<(Status, Json<AgentCommand>)> {
    monitor(&a, app, id, "device.stop").await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceLiveStatus {
    pub id: Uuid,
    pub status: String,
    pub agent_id: Option<Uuid>,
    pub agent_connected: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Flows waiting in the agent's window buffer; known only while the agent reports.
    pub buffer_fill: Option<i32>,
}

#[rocket::get("/devices/<id>/status")]
pub async fn status(_a: Auth<Viewer>, app: &State<App>, id: Uuid) -> ApiResult<Json<DeviceLiveStatus>> {
    let d = load_device(app, id).await?;
    // Connected: its agent is online (heartbeats within the offline timeout) and not revoked.
    let agent_connected = match d.agent_id {
        Some(agent) => {
            app.db
                .run(move |c| {
                    use crate::db::schema::agents;
                    Ok(agents::table
                        .find(agent)
                        .filter(agents::status.eq("online"))
                        .filter(agents::revoked_at.is_null())
                        .count()
                        .get_result::<i64>(c)?
                        > 0)
                })
                .await?
        }
        None => false,
    };
    Ok(Json(DeviceLiveStatus {
        id: d.id,
        status: d.status,
        agent_id: d.agent_id,
        agent_connected,
        last_seen_at: d.last_seen_at,
        buffer_fill: None,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceStats {
    pub id: Uuid,
    pub flows_total: i64,
    pub predictions_total: i64,
    pub attacks_total: i64,
    pub threats_today: i64,
    pub alerts_unacknowledged: i64,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub last_prediction_at: Option<DateTime<Utc>>,
}

#[rocket::get("/devices/<id>/stats")]
pub async fn stats(_a: Auth<Viewer>, app: &State<App>, id: Uuid) -> ApiResult<Json<DeviceStats>> {
    let d = load_device(app, id).await?;
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_else(Utc::now);
    let s = app
        .db
        .run(move |c| {
            let flows_total = traffic_logs::table
                .filter(traffic_logs::device_id.eq(id))
                .count()
                .get_result(c)?;
            let p = predictions::table.filter(predictions::device_id.eq(id));
            let predictions_total = p.count().get_result(c)?;
            let attacks = p.filter(predictions::label.eq("attack"));
            let attacks_total = attacks.count().get_result(c)?;
            let threats_today = attacks.filter(predictions::ts.ge(today)).count().get_result(c)?;
            let last_prediction_at = p.select(diesel::dsl::max(predictions::ts)).first(c)?;
            let alerts_unacknowledged = alerts::table
                .filter(alerts::device_id.eq(id))
                .filter(alerts::is_acknowledged.eq(false))
                .count()
                .get_result(c)?;
            Ok(DeviceStats {
                id,
                flows_total,
                predictions_total,
                attacks_total,
                threats_today,
                alerts_unacknowledged,
                last_seen_at: d.last_seen_at,
                last_prediction_at,
            })
        })
        .await?;
    Ok(Json(s))
}
