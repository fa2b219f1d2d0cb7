//! `/agents`: the gateways that report to this hub (they register themselves on first contact).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rocket::serde::json::Json;
use rocket::State;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::guard::{Auth, Viewer};
use crate::db::schema::{agents, devices};
use crate::error::ApiResult;
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![list]
}

#[derive(Debug, Serialize, Queryable, utoipa::ToSchema)]
pub struct AgentOut {
    pub id: Uuid,
    pub name: String,
    pub hostname: Option<String>,
    pub version: Option<String>,
    /// online, offline or revoked.
    pub status: String,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Devices the agent watches.
    pub devices: i64,
}

#[rocket::get("/agents")]
pub async fn list(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<Vec<AgentOut>>> {
    let rows = app
        .db
        .run(|c| {
            let device_count = devices::table
                .filter(devices::agent_id.eq(agents::id.nullable()))
                .count()
                .single_value();
            Ok(agents::table
                .order(agents::name.asc())
                .select((
                    agents::id,
                    agents::name,
                    agents::hostname,
                    agents::version,
                    agents::status,
                    agents::last_heartbeat_at,
                    agents::revoked_at,
                    agents::created_at,
                    device_count.assume_not_null(),
                ))
                .load::<AgentOut>(c)?)
        })
        .await?;
    Ok(Json(rows))
}
