//! `/commands`: what operators asked an agent to do and how it ended. Start/stop monitoring
//! and capture replays are answered 202 with the command; the fleet link delivers it when the
//! agent is online and records the agent's answer (see `broker::commands`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::State;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::guard::{Auth, Viewer};
use crate::db::models::{CommandRow, DeviceRow, NewCommand};
use crate::db::schema::agent_commands;
use crate::error::{ApiError, ApiResult};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![get]
}

/// A command for an agent. `status`: pending (waiting for its agent to be online), delivered,
/// done or failed (`result` says what the agent did, or why not).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentCommand {
    pub id: Uuid,
    pub agent_id: Option<Uuid>,
    pub device_id: Option<Uuid>,
    pub command: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub status: String,
    pub result: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<CommandRow> for AgentCommand {
    fn from(r: CommandRow) -> Self {
        AgentCommand {
            id: r.id,
            agent_id: r.agent_id,
            device_id: r.device_id,
            command: r.command,
            payload: r.payload,
            status: r.status,
            result: r.result,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[rocket::get("/commands/<id>")]
pub async fn get(_a: Auth<Viewer>, app: &State<App>, id: Uuid) -> ApiResult<Json<AgentCommand>> {
    let row = app
        .db
        .run(move |c| {
            agent_commands::table
                .find(id)
                .select(CommandRow::as_select())
                .first(c)
                .optional()?
                .ok_or_else(|| ApiError::not_found("command"))
        })
        .await?;
    Ok(Json(row.into()))
}

/// The agent that watches `device`, or 409.
pub fn agent_of(device: &DeviceRow) -> ApiResult<Uuid> {
    device.agent_id.ok_or_else(|| {
        let mut e = ApiError::new(
            Status::Conflict,
            "no_agent",
            "no agent watches this device; set its agent_id first",
        );
        e.fields.clear();
        e
    })
}

/// Records `command` for the agent of `device` and wakes the delivery: 202 with the command,
/// or 409 if no agent watches the device.
pub async fn send_to_device(
    app: &App,
    device: &DeviceRow,
    command: &'static str,
    payload: serde_json::Value,
    user: Uuid,
) -> ApiResult<(Status, Json<AgentCommand>)> {
    let agent = agent_of(device)?;
    let new = NewCommand {
        id: Uuid::new_v4(),
        agent_id: Some(agent),
        device_id: Some(device.id),
        command: command.into(),
        payload,
        requested_by: Some(user),
    };
    let row = app
        .db
        .run(move |c| {
            Ok(diesel::insert_into(agent_commands::table)
                .values(&new)
                .returning(CommandRow::as_returning())
                .get_result(c)?)
        })
        .await?;
    tracing::info!(id = %row.id, command, %agent, device = %device.id, "command queued for the agent");
    app.commands.notify_one();
    Ok((Status::Accepted, Json(row.into())))
}
