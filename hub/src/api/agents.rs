//! `/agents`: the gateways that report to this hub. An admin issues a one-time enrollment
//! token; the agent trades it for a client certificate of the hub's CA; an admin can revoke it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use gatewatch_proto::enroll::{EnrollRequest, EnrollResponse};
use rocket::http::Status;
use rocket::serde::json::Json;
use rocket::State;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::guard::{Admin, Auth, Body, Viewer};
use crate::db::schema::{agents, devices, enrollment_tokens};
use crate::error::{ApiError, ApiResult};
use crate::App;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![list, create_token, enroll, revoke]
}

/// Longest life of an enrollment token: a week.
pub const MAX_TOKEN_MINUTES: u32 = 7 * 24 * 60;

#[derive(Debug, Serialize, Queryable, utoipa::ToSchema)]
pub struct AgentOut {
    pub id: Uuid,
    pub name: String,
    pub hostname: Option<String>,
    pub version: Option<String>,
    /// online, offline or revoked.
    pub status: String,
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// The model version the agent scores with, as it last reported.
    pub model_version: Option<String>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Devices the agent watches.
    pub devices: i64,
    /// Its local training set for federated learning, windows per family (as last reported).
    #[schema(value_type = Option<Object>)]
    pub fl_local_windows: Option<serde_json::Value>,
}

/// The agents, by name; `only` narrows to one.
pub fn load_agents(c: &mut PgConnection, only: Option<Uuid>) -> QueryResult<Vec<AgentOut>> {
    let device_count = devices::table
        .filter(devices::agent_id.eq(agents::id.nullable()))
        .count()
        .single_value();
    let mut query = agents::table
        .order(agents::name.asc())
        .select((
            agents::id,
            agents::name,
            agents::hostname,
            agents::version,
            agents::status,
            agents::last_heartbeat_at,
            agents::model_version,
            agents::revoked_at,
            agents::created_at,
            device_count.assume_not_null(),
            agents::fl_local_windows,
        ))
        .into_boxed();
    if let Some(id) = only {
        query = query.filter(agents::id.eq(id));
    }
    query.load::<AgentOut>(c)
}

#[rocket::get("/agents")]
pub async fn list(_a: Auth<Viewer>, app: &State<App>) -> ApiResult<Json<Vec<AgentOut>>> {
    Ok(Json(app.db.run(|c| Ok(load_agents(c, None)?)).await?))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct NewToken {
    /// Minutes until the token expires [60]; at most a week.
    pub ttl_minutes: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenIssued {
    /// Shown once; the hub keeps only its hash.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// SHA-256 of the hub's CA certificate: the agent checks the CA it receives against it.
    pub ca_sha256: String,
    /// What to run on the gateway (replace HUB with the address the gateway reaches the hub at).
    pub enroll_command: String,
}

/// A new one-time token, its hash, and when it expires.
pub fn issue_token(
    c: &mut PgConnection,
    created_by: Option<Uuid>,
    ttl_minutes: u32,
) -> QueryResult<(String, DateTime<Utc>)> {
    let secret: [u8; 32] = rand::random();
    let token: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let expires_at = Utc::now() + chrono::Duration::minutes(i64::from(ttl_minutes));
    diesel::insert_into(enrollment_tokens::table)
        .values((
            enrollment_tokens::id.eq(Uuid::now_v7()),
            enrollment_tokens::token_hash.eq(token_hash(&token)),
            enrollment_tokens::created_by.eq(created_by),
            enrollment_tokens::expires_at.eq(expires_at),
        ))
        .execute(c)?;
    Ok((token, expires_at))
}

fn token_hash(token: &str) -> String {
    gatewatch_proto::enroll::sha256_hex(token.trim().as_bytes())
}

/// The command an operator runs on the gateway.
pub fn enroll_command(hub: &str, token: &str, ca_sha256: &str) -> String {
    format!("gatewatch-agent enroll --hub {hub} --token {token} --ca-sha256 {ca_sha256}")
}

#[rocket::post("/agents/enrollment-tokens", data = "<body>")]
pub async fn create_token(
    a: Auth<Admin>,
    app: &State<App>,
    body: Body<NewToken>,
) -> ApiResult<(Status, Json<TokenIssued>)> {
    let ttl = body.0.ttl_minutes.unwrap_or(60);
    if ttl == 0 || ttl > MAX_TOKEN_MINUTES {
        return Err(ApiError::field(
            "ttl_minutes",
            format!("must be 1..={MAX_TOKEN_MINUTES}"),
        ));
    }
    let by = a.user_id();
    let (token, expires_at) = app.db.run(move |c| Ok(issue_token(c, Some(by), ttl)?)).await?;
    let ca_sha256 = app.ca.fingerprint();
    let hub = format!("http://HUB:{}", app.config.http_port);
    tracing::info!(user = %by, %expires_at, "enrollment token issued");
    Ok((
        Status::Created,
        Json(TokenIssued {
            enroll_command: enroll_command(&hub, &token, &ca_sha256),
            token,
            expires_at,
            ca_sha256,
        }),
    ))
}

/// Why an enrollment is refused.
#[derive(Debug)]
enum Refused {
    Token,
    Revoked,
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for Refused {
    fn from(e: diesel::result::Error) -> Self {
        Refused::Db(e)
    }
}

/// Trades a one-time token and a CSR for a client certificate. No user login: the token is
/// the credential. The token is spent only if the certificate is issued.
#[rocket::post("/agents/enroll", data = "<body>")]
pub async fn enroll(
    app: &State<App>,
    ip: Option<std::net::IpAddr>,
    host: Option<&rocket::http::uri::Host<'_>>,
    body: Body<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    let client = ip.map(|i| i.to_string()).unwrap_or_default();
    app.login_limit
        .check(&format!("{client}|enroll"))
        .map_err(ApiError::too_many)?;
    let req = body.0;
    if req.name.trim().is_empty() || req.name.len() > 100 {
        return Err(ApiError::field("name", "give 1-100 characters"));
    }
    if req.hostname.len() > 255 {
        return Err(ApiError::field("hostname", "at most 255 characters"));
    }
    if req.agent_id.is_nil() {
        return Err(ApiError::field("agent_id", "must not be the nil UUID"));
    }
    let issued = app
        .ca
        .sign_agent(&req.csr_pem, req.agent_id)
        .map_err(|e| ApiError::field("csr_pem", e.to_string()))?;
    let (hash, fingerprint, not_after) = (token_hash(&req.token), issued.fingerprint.clone(), issued.not_after);
    let (agent, name, hostname) = (req.agent_id, req.name.trim().to_string(), req.hostname.clone());
    let outcome = app
        .db
        .run(move |c| {
            Ok(c.transaction::<_, Refused, _>(|c| {
                let now = Utc::now();
                let token: Option<Uuid> = enrollment_tokens::table
                    .filter(enrollment_tokens::token_hash.eq(&hash))
                    .filter(enrollment_tokens::used_at.is_null())
                    .filter(enrollment_tokens::expires_at.gt(now))
                    .select(enrollment_tokens::id)
                    .for_update()
                    .first(c)
                    .optional()?;
                let Some(token) = token else { return Err(Refused::Token) };
                let revoked: Option<bool> = agents::table
                    .find(agent)
                    .select(agents::revoked_at.is_not_null())
                    .first(c)
                    .optional()?;
                if revoked == Some(true) {
                    return Err(Refused::Revoked);
                }
                let name = crate::broker::ingest::agent_name(c, agent, &name)?;
                // A re-enrolling agent gets a new certificate; its old one stops working.
                diesel::insert_into(agents::table)
                    .values((
                        agents::id.eq(agent),
                        agents::name.eq(&name),
                        agents::hostname.eq(&hostname),
                        agents::status.eq("offline"),
                        agents::cert_fingerprint.eq(&fingerprint),
                        agents::cert_not_after.eq(not_after),
                    ))
                    .on_conflict(agents::id)
                    .do_update()
                    .set((
                        agents::hostname.eq(&hostname),
                        agents::cert_fingerprint.eq(&fingerprint),
                        agents::cert_not_after.eq(not_after),
                    ))
                    .execute(c)?;
                diesel::update(enrollment_tokens::table.find(token))
                    .set((
                        enrollment_tokens::used_at.eq(now),
                        enrollment_tokens::agent_id.eq(agent),
                    ))
                    .execute(c)?;
                Ok(())
            }))
        })
        .await?;
    match outcome {
        Ok(()) => {}
        Err(Refused::Token) => {
            return Err(ApiError::unauthorized(
                "enrollment token unknown, used or expired; ask an admin for a new one",
            ))
        }
        Err(Refused::Revoked) => {
            return Err(ApiError::conflict(
                "this agent id was revoked; delete the agent's state directory so it makes a new id",
            ))
        }
        Err(Refused::Db(e)) => return Err(e.into()),
    }
    app.identities.trust(agent, issued.fingerprint.clone());
    tracing::info!(agent = %agent, "agent enrolled");
    let host = host
        .map(|h| h.domain().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let host = if host.contains(':') { format!("[{host}]") } else { host };
    Ok(Json(EnrollResponse {
        agent_id: agent,
        certificate_pem: issued.pem,
        ca_pem: app.ca.pem().to_string(),
        ca_sha256: app.ca.fingerprint(),
        mqtt_url: format!("mqtts://{host}:{}", app.config.mqtt_tls_port),
        quic_port: app.config.quic_port,
        not_after: not_after.to_rfc3339(),
    }))
}

/// Revokes an agent's certificate: refused on every channel from now on, and disconnected
/// within seconds if connected.
pub fn revoke_agent(c: &mut PgConnection, agent: Uuid) -> QueryResult<usize> {
    c.transaction(|c| {
        let n = diesel::update(agents::table.find(agent))
            .set((agents::status.eq("revoked"), agents::revoked_at.eq(Some(Utc::now()))))
            .filter(agents::revoked_at.is_null())
            .execute(c)?;
        diesel::update(devices::table.filter(devices::agent_id.eq(agent)))
            .set(devices::status.eq("offline"))
            .execute(c)?;
        Ok(n)
    })
}

#[rocket::post("/agents/<id>/revoke")]
pub async fn revoke(a: Auth<Admin>, app: &State<App>, id: Uuid) -> ApiResult<Json<AgentOut>> {
    let rows = app
        .db
        .run(move |c| {
            revoke_agent(c, id)?;
            Ok(load_agents(c, Some(id))?)
        })
        .await?;
    let agent = rows.into_iter().next().ok_or_else(|| ApiError::not_found("agent"))?;
    app.identities.revoke(id);
    tracing::warn!(agent = %id, by = %a.user_id(), "agent revoked");
    Ok(Json(agent))
}
