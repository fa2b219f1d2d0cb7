//! Operators' commands to agents (rows of `agent_commands`): published on the agent's command
//! topic while it is online, then marked delivered; the agent answers on `cmd/ack` and the row
//! becomes done or failed. An agent that comes back online gets its delivered but unanswered
//! commands again (it recognises ids it has already run), so a command is never lost between
//! the two. Commands for later features (FL runs) stay pending here.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel::prelude::*;
use gatewatch_proto::fleet::{self, Action, Channel, CommandResult};
use rumqttc::{AsyncClient, QoS};
use uuid::Uuid;

use crate::db::models::CommandRow;
use crate::db::schema::{agent_commands, agents};
use crate::db::Db;

/// The commands agents carry out now.
pub const DELIVERED: [&str; 5] = [
    "device.start",
    "device.stop",
    "traffic.replay_pcap",
    "attack.start",
    "attack.stop",
];
/// Commands published per pass at most; the rest go on the next.
const PER_PASS: i64 = 200;

/// The message an agent gets for a row, or why the row cannot become one.
pub fn action(row: &CommandRow) -> Result<Action, String> {
    let p = &row.payload;
    let ip = || {
        p["ip"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| "the command names no device address".to_string())
    };
    let session = || {
        p["session_id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| "the command names no attack session".to_string())
    };
    match row.command.as_str() {
        "device.start" => Ok(Action::StartMonitoring {
            command_id: row.id,
            device: ip()?,
        }),
        "device.stop" => Ok(Action::StopMonitoring {
            command_id: row.id,
            device: ip()?,
        }),
        "traffic.replay_pcap" => Ok(Action::ReplayPcap {
            command_id: row.id,
            device: ip()?,
            upload_id: p["upload_id"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or("the command names no upload")?,
            len: p["bytes"].as_u64().ok_or("the command has no size")?,
            sha256: p["sha256"].as_str().ok_or("the command has no checksum")?.to_string(),
        }),
        "attack.start" => Ok(Action::AttackStart {
            command_id: row.id,
            session_id: session()?,
            device: ip()?,
            steps: serde_json::from_value(p["steps"].clone())
                .map_err(|e| format!("the command's steps are not understood: {e}"))?,
            gap_secs: p["gap_secs"].as_u64().and_then(|g| u32::try_from(g).ok()).unwrap_or(10),
        }),
        "attack.stop" => Ok(Action::AttackStop {
            command_id: row.id,
            session_id: session()?,
        }),
        other => Err(format!("agents do not run {other:?} commands")),
    }
}

/// Pending commands of online, trusted agents, oldest first.
pub fn due(conn: &mut PgConnection) -> QueryResult<Vec<CommandRow>> {
    agent_commands::table
        .inner_join(agents::table)
        .filter(agent_commands::status.eq("pending"))
        .filter(agent_commands::command.eq_any(DELIVERED))
        .filter(agents::status.eq("online"))
        .filter(agents::revoked_at.is_null())
        .order(agent_commands::created_at.asc())
        .limit(PER_PASS)
        .select(CommandRow::as_select())
        .load(conn)
}

/// Moves a command on, unless the agent already answered it.
pub fn mark(conn: &mut PgConnection, id: Uuid, status: &str, result: Option<&str>) -> QueryResult<usize> {
    diesel::update(
        agent_commands::table
            .find(id)
            .filter(agent_commands::status.eq_any(["pending", "delivered"])),
    )
    .set((
        agent_commands::status.eq(status),
        agent_commands::result.eq(result),
        agent_commands::updated_at.eq(Utc::now()),
    ))
    .execute(conn)
}

/// An agent came (back) online: what it was sent but did not answer is sent again.
pub fn redeliver(conn: &mut PgConnection, agent: Uuid) -> QueryResult<usize> {
    diesel::update(
        agent_commands::table
            .filter(agent_commands::agent_id.eq(agent))
            .filter(agent_commands::status.eq("delivered")),
    )
    .set((
        agent_commands::status.eq("pending"),
        agent_commands::updated_at.eq(Utc::now()),
    ))
    .execute(conn)
}

/// Records an agent's answer to one of its own commands; returns the command when this
/// answer finished it (a repeated answer changes nothing).
pub fn finish(conn: &mut PgConnection, agent: Uuid, r: &CommandResult) -> QueryResult<Option<CommandRow>> {
    let message: String = r.message.chars().take(2000).collect();
    diesel::update(
        agent_commands::table
            .find(r.command_id)
            .filter(agent_commands::agent_id.eq(agent))
            .filter(agent_commands::status.eq_any(["pending", "delivered"])),
    )
    .set((
        agent_commands::status.eq(r.outcome.as_str()),
        agent_commands::result.eq(Some(message)),
        agent_commands::updated_at.eq(Utc::now()),
    ))
    .returning(CommandRow::as_returning())
    .get_result(conn)
    .optional()
}

/// Publishes due commands whenever woken (a new command, an agent coming online) and every
/// few seconds besides.
pub async fn deliver(client: AsyncClient, db: Db, wake: Arc<tokio::sync::Notify>) {
    loop {
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        let rows = match super::run(&db, due).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "commands: listing due commands failed");
                continue;
            }
        };
        for row in rows {
            let Some(agent) = row.agent_id else { continue };
            let (status, result) = match action(&row) {
                Ok(action) => {
                    let cmd = fleet::Command {
                        schema: fleet::SCHEMA,
                        action,
                    };
                    let payload = fleet::payload(&cmd);
                    let topic = fleet::topic(agent, Channel::Command);
                    if let Err(e) = client.publish(topic, QoS::AtLeastOnce, false, payload).await {
                        tracing::warn!(%agent, command = %row.id, error = %e, "command not sent; will retry");
                        continue;
                    }
                    tracing::info!(%agent, command = %row.id, kind = %row.command, "command delivered");
                    ("delivered", None)
                }
                Err(why) => ("failed", Some(why)),
            };
            let id = row.id;
            if let Err(e) = super::run(&db, move |c| mark(c, id, status, result.as_deref())).await {
                tracing::warn!(command = %id, error = %e, "commands: recording delivery failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(command: &str, payload: serde_json::Value) -> CommandRow {
        CommandRow {
            id: Uuid::new_v4(),
            agent_id: Some(Uuid::new_v4()),
            device_id: Some(Uuid::new_v4()),
            command: command.into(),
            payload,
            status: "pending".into(),
            result: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    #[test]
    fn rows_become_the_agents_messages() {
        let start = row("device.start", serde_json::json!({"ip": "10.0.0.9"}));
        assert_eq!(
            action(&start),
            Ok(Action::StartMonitoring {
                command_id: start.id,
                device: "10.0.0.9".parse().expect("ip")
            })
        );
        let upload = Uuid::new_v4();
        let replay = row(
            "traffic.replay_pcap",
            serde_json::json!({"ip": "fd00::7", "upload_id": upload, "bytes": 24, "sha256": "ab"}),
        );
        assert_eq!(
            action(&replay),
            Ok(Action::ReplayPcap {
                command_id: replay.id,
                device: "fd00::7".parse().expect("ip"),
                upload_id: upload,
                len: 24,
                sha256: "ab".into()
            })
        );
        assert!(action(&row("device.stop", serde_json::json!({"ip": "not an ip"}))).is_err());
        assert!(action(&row("traffic.replay_pcap", serde_json::json!({"ip": "10.0.0.1"}))).is_err());
        assert!(action(&row("fl.start", serde_json::json!({}))).is_err());
        let session = Uuid::new_v4();
        let start = row(
            "attack.start",
            serde_json::json!({"session_id": session, "ip": "10.0.0.9", "gap_secs": 3, "steps": [
                {"order": 1, "attack_type": "port_scan", "duration_secs": 5, "intensity": 0.5, "adversarial_epsilon": 0.01}
            ]}),
        );
        match action(&start) {
            Ok(Action::AttackStart {
                session_id,
                steps,
                gap_secs,
                ..
            }) => {
                assert_eq!((session_id, gap_secs, steps.len()), (session, 3, 1));
                assert_eq!(steps[0].adversarial_epsilon, Some(0.01));
            }
            other => panic!("{other:?}"),
        }
        assert!(action(&row(
            "attack.start",
            serde_json::json!({"session_id": session, "ip": "10.0.0.9", "steps": "x"})
        ))
        .is_err());
    }
}
