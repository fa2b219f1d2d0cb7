//! What the hub does with agents' messages: store them (idempotently, many batches per
//! transaction), then tell WebSocket clients, then say which batch is committed.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use chrono::{DateTime, TimeZone, Utc};
use diesel::prelude::*;
use gatewatch_proto::bulk::FlowUpload;
use gatewatch_proto::fleet::{AgentState, AgentStatus, PredictionBatch, PredictionMsg};
use ipnetwork::IpNetwork;
use uuid::Uuid;

use crate::db::models::{DeviceRow, Prediction, TrafficRow};
use crate::db::schema::{agents, devices, traffic_logs};

/// What a committed batch produced, for the WebSocket fan-out and the acknowledgement.
#[derive(Debug)]
pub struct Stored {
    /// Predictions inserted now (a re-delivered batch inserts none).
    pub new: Vec<Prediction>,
    pub device_names: HashMap<Uuid, String>,
    /// Every batch of the agent's epoch up to this one is stored: what the hub acknowledges.
    /// It only moves over batches without a gap, so a batch lost on the way is sent again.
    pub acked_seq: u64,
}

/// A name unique among agents: the agent's own, with its id's start if another agent has it.
pub(crate) fn agent_name(conn: &mut PgConnection, id: Uuid, wanted: &str) -> QueryResult<String> {
    let wanted: String = wanted.chars().take(80).collect();
    let taken: Option<Uuid> = agents::table
        .filter(agents::name.eq(&wanted))
        .select(agents::id)
        .first(conn)
        .optional()?;
    Ok(match taken {
        Some(other) if other != id => format!("{wanted}-{}", &id.simple().to_string()[..8]),
        _ => wanted,
    })
}

/// Records an agent's status or heartbeat; its devices follow it online and offline. True when
/// the agent has just come online (its unanswered commands are then due again).
pub fn status(conn: &mut PgConnection, agent: Uuid, s: &AgentStatus, now: DateTime<Utc>) -> QueryResult<bool> {
    conn.transaction(|c| {
        let name = agent_name(c, agent, &s.name)?;
        // An offline message (the last will) does not know the model; keep the last one known.
        let model_version: Option<String> = match &s.model_version {
            Some(v) => Some(v.chars().take(100).collect()),
            None => agents::table
                .find(agent)
                .select(agents::model_version)
                .first(c)
                .optional()?
                .flatten(),
        };
        let state = match s.state {
            AgentState::Online => "online",
            AgentState::Offline => "offline",
        };
        // A revoked agent stays revoked whatever it says.
        let (revoked, was): (bool, Option<String>) = agents::table
            .find(agent)
            .select((agents::revoked_at.is_not_null(), agents::status))
            .first(c)
            .optional()?
            .map_or((false, None), |(r, s)| (r, Some(s)));
        if revoked {
            return Ok(false);
        }
        diesel::insert_into(agents::table)
            .values((
                agents::id.eq(agent),
                agents::name.eq(&name),
                agents::hostname.eq(&s.hostname),
                agents::version.eq(&s.version),
                agents::status.eq(state),
                agents::last_heartbeat_at.eq(now),
                agents::model_version.eq(&model_version),
            ))
            .on_conflict(agents::id)
            .do_update()
            .set((
                agents::name.eq(&name),
                agents::hostname.eq(&s.hostname),
                agents::version.eq(&s.version),
                agents::status.eq(state),
                agents::last_heartbeat_at.eq(now),
                agents::model_version.eq(&model_version),
            ))
            .execute(c)?;
        set_devices(c, &[agent], state)?;
        let came_online = state == "online" && was.as_deref() != Some("online");
        if came_online {
            super::commands::redeliver(c, agent)?;
        }
        Ok(came_online)
    })
}

/// Devices of these agents that are plain online/offline follow their agent.
fn set_devices(conn: &mut PgConnection, agents_: &[Uuid], state: &str) -> QueryResult<usize> {
    let from = if state == "online" { "offline" } else { "online" };
    diesel::update(
        devices::table
            .filter(devices::agent_id.eq_any(agents_))
            .filter(devices::status.eq(from)),
    )
    .set((devices::status.eq(state), devices::updated_at.eq(Utc::now())))
    .execute(conn)
}

/// Agents whose last heartbeat is older than `silence` are marked offline with their devices.
pub fn expire(conn: &mut PgConnection, silence: chrono::Duration, now: DateTime<Utc>) -> QueryResult<Vec<Uuid>> {
    conn.transaction(|c| {
        let stale: Vec<Uuid> = diesel::update(
            agents::table
                .filter(agents::status.eq("online"))
                .filter(agents::last_heartbeat_at.lt(now - silence)),
        )
        .set(agents::status.eq("offline"))
        .returning(agents::id)
        .get_results(c)?;
        if !stale.is_empty() {
            set_devices(c, &stale, "offline")?;
        }
        Ok(stale)
    })
}

/// The agent's devices at these addresses, created on first sight (`10.0.0.5 @ gateway-1`);
/// the agent too, if it never sent a status.
fn resolve_devices(
    c: &mut PgConnection,
    agent: Uuid,
    ips: impl IntoIterator<Item = IpAddr>,
) -> QueryResult<HashMap<IpAddr, (Uuid, String)>> {
    let agent_name = match agents::table
        .find(agent)
        .select(agents::name)
        .first::<String>(c)
        .optional()?
    {
        Some(name) => name,
        None => {
            let name = agent_name(c, agent, &format!("agent-{}", &agent.simple().to_string()[..8]))?;
            diesel::insert_into(agents::table)
                .values((
                    agents::id.eq(agent),
                    agents::name.eq(&name),
                    agents::status.eq("online"),
                ))
                .on_conflict_do_nothing()
                .execute(c)?;
            name
        }
    };
    let mut ids: HashMap<IpAddr, (Uuid, String)> = HashMap::new();
    for ip in ips {
        if ids.contains_key(&ip) {
            continue;
        }
        let found: Option<DeviceRow> = devices::table
            .filter(devices::agent_id.eq(agent))
            .filter(devices::ip_address.eq(IpNetwork::from(ip)))
            .select(DeviceRow::as_select())
            .first(c)
            .optional()?;
        let device = match found {
            Some(d) => (d.id, d.name),
            None => {
                let now = Utc::now();
                let row = DeviceRow {
                    id: Uuid::new_v4(),
                    agent_id: Some(agent),
                    name: format!("{ip} @ {agent_name}").chars().take(100).collect(),
                    device_type: "custom".into(),
                    ip_address: IpNetwork::from(ip),
                    protocol: "tcp".into(),
                    port: None,
                    status: "online".into(),
                    traffic_source: "live_capture".into(),
                    description: Some("discovered by its agent".into()),
                    last_seen_at: Some(now),
                    threat_count_today: 0,
                    created_at: now,
                    updated_at: now,
                };
                diesel::insert_into(devices::table).values(&row).execute(c)?;
                (row.id, row.name)
            }
        };
        ids.insert(ip, device);
    }
    Ok(ids)
}

/// Stores an agent's flow records in the traffic log; records already stored are skipped.
pub fn flows(conn: &mut PgConnection, agent: Uuid, records: &[FlowUpload]) -> QueryResult<usize> {
    conn.transaction(|c| {
        let ids = resolve_devices_of(c, records.iter().map(|r| (agent, r.device)))?;
        let rows: Vec<TrafficRow> = records
            .iter()
            .filter_map(|r| {
                Some(TrafficRow {
                    id: r.id,
                    ts: Utc.timestamp_millis_opt(r.ts_ms).single()?,
                    device_id: ids.get(&(agent, r.device))?.0,
                    features: r.features.clone(),
                    source_type: r.source.as_str().into(),
                    flow_index: None,
                    metadata: None,
                })
            })
            .collect();
        let mut stored = 0;
        // Multi-row inserts, chunked under PostgreSQL's 65,535 bind parameters.
        for chunk in rows.chunks(5_000) {
            stored += diesel::insert_into(traffic_logs::table)
                .values(chunk)
                .on_conflict_do_nothing()
                .execute(c)?;
        }
        Ok(stored)
    })
}

/// Stores one batch of predictions in its own transaction; see [`prediction_batches`].
pub fn predictions(conn: &mut PgConnection, agent: Uuid, batch: &PredictionBatch) -> QueryResult<Stored> {
    let mut stored = prediction_batches(conn, &[(agent, batch)])?;
    Ok(stored.pop().unwrap_or(Stored {
        new: Vec::new(),
        device_names: HashMap::new(),
        acked_seq: 0,
    }))
}

/// Stores many agents' batches in one transaction with a handful of set-based statements
/// (whatever the number of batches): devices resolved together, predictions inserted from
/// arrays with `unnest`, acknowledgement state and device last-seen updated together.
/// Predictions whose id exists are skipped, so a batch that arrives twice stores nothing the
/// second time. Batches are taken in order: one `Stored` per batch, in the same order.
pub fn prediction_batches(conn: &mut PgConnection, batches: &[(Uuid, &PredictionBatch)]) -> QueryResult<Vec<Stored>> {
    use diesel::sql_types::{Array, Double, Nullable, Text, Timestamptz, Uuid as SqlUuid, Varchar};

    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }

    conn.transaction(|c| {
        let devices = resolve_devices_of(
            c,
            batches
                .iter()
                .flat_map(|(agent, b)| b.predictions.iter().map(|p| (*agent, p.detection.device))),
        )?;
        let rows: Vec<Vec<Prediction>> = batches
            .iter()
            .map(|(agent, b)| {
                b.predictions
                    .iter()
                    .filter_map(|p| Some(prediction_row(p, devices.get(&(*agent, p.detection.device))?.0)))
                    .collect()
            })
            .collect();
        let all = rows.iter().flatten();
        let inserted: Vec<Inserted> = diesel::sql_query(
            "INSERT INTO predictions (id, device_id, score, label, confidence, attack_type, model_version, \
             inference_latency_ms, ts) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::float8[], $4::text[], $5::float8[], $6::text[], \
             $7::varchar[], $8::float8[], $9::timestamptz[]) \
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .bind::<Array<SqlUuid>, _>(all.clone().map(|r| r.id).collect::<Vec<_>>())
        .bind::<Array<SqlUuid>, _>(all.clone().map(|r| r.device_id).collect::<Vec<_>>())
        .bind::<Array<Double>, _>(all.clone().map(|r| r.score).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(all.clone().map(|r| r.label.as_str()).collect::<Vec<_>>())
        .bind::<Array<Double>, _>(all.clone().map(|r| r.confidence).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(all.clone().map(|r| r.attack_type.as_deref()).collect::<Vec<_>>())
        .bind::<Array<Varchar>, _>(all.clone().map(|r| r.model_version.as_str()).collect::<Vec<_>>())
        .bind::<Array<Double>, _>(all.clone().map(|r| r.inference_latency_ms).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(all.map(|r| r.ts).collect::<Vec<_>>())
        .load(c)?;
        // A batch delivered twice within one group: its rows go to the first copy only.
        let mut inserted: HashSet<Uuid> = inserted.into_iter().map(|r| r.id).collect();

        // Acknowledgement state, walked through the batches in order.
        let mut agent_ids: Vec<Uuid> = batches.iter().map(|(a, _)| *a).collect();
        agent_ids.sort_unstable();
        agent_ids.dedup();
        let mut acks: HashMap<Uuid, (Option<Uuid>, i64)> = agents::table
            .filter(agents::id.eq_any(&agent_ids))
            .select((agents::id, agents::acked_epoch, agents::acked_seq))
            .load::<(Uuid, Option<Uuid>, i64)>(c)?
            .into_iter()
            .map(|(id, epoch, seq)| (id, (epoch, seq)))
            .collect();
        let mut acked_seqs = Vec::with_capacity(batches.len());
        for (agent, batch) in batches {
            let (epoch, acked) = acks.get(agent).copied().unwrap_or((None, 0));
            // A new epoch is a new spool, numbered from 1.
            let acked = if epoch == Some(batch.epoch) {
                acked.max(0) as u64
            } else {
                0
            };
            let acked_seq = if batch.seq <= acked + 1 {
                acked.max(batch.seq)
            } else {
                acked
            };
            acks.insert(
                *agent,
                (Some(batch.epoch), i64::try_from(acked_seq).unwrap_or(i64::MAX)),
            );
            acked_seqs.push(acked_seq);
        }
        let (ids, (epochs, seqs)): (Vec<Uuid>, (Vec<Uuid>, Vec<i64>)) = acks
            .iter()
            .filter_map(|(id, (epoch, seq))| Some((*id, ((*epoch)?, *seq))))
            .unzip();
        diesel::sql_query(
            "UPDATE agents SET acked_epoch = v.epoch, acked_seq = v.seq \
             FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) AS v(id, epoch, seq) WHERE agents.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Array<SqlUuid>, _>(epochs)
        .bind::<Array<diesel::sql_types::BigInt>, _>(seqs)
        .execute(c)?;

        let mut seen: Vec<Uuid> = devices.values().map(|(id, _)| *id).collect();
        seen.sort_unstable();
        seen.dedup();
        diesel::update(devices::table.filter(devices::id.eq_any(&seen)))
            .set(devices::last_seen_at.eq(Utc::now()))
            .execute(c)?;

        let mut names_by_agent: HashMap<Uuid, HashMap<Uuid, String>> = HashMap::new();
        for ((agent, _), (id, name)) in &devices {
            names_by_agent.entry(*agent).or_default().insert(*id, name.clone());
        }
        Ok(batches
            .iter()
            .zip(rows)
            .zip(acked_seqs)
            .map(|(((agent, _), rows), acked_seq)| {
                let device_names = names_by_agent.get(agent).cloned().unwrap_or_default();
                Stored {
                    new: rows.into_iter().filter(|r| inserted.remove(&r.id)).collect(),
                    device_names,
                    acked_seq,
                }
            })
            .collect())
    })
}

fn prediction_row(p: &PredictionMsg, device_id: Uuid) -> Prediction {
    let d = &p.detection;
    let attack = d.is_attack();
    Prediction {
        id: p.id,
        device_id,
        score: f64::from(d.score),
        label: if attack { "attack" } else { "benign" }.into(),
        confidence: f64::from(d.confidence),
        attack_type: attack.then(|| d.family.chars().take(50).collect()),
        model_version: d.model_version.chars().take(100).collect(),
        window_start: None,
        window_end: None,
        feature_importance: None,
        inference_latency_ms: d.inference_latency_ms,
        ts: Utc
            .timestamp_nanos(d.window.last_ts_ns)
            .max(DateTime::<Utc>::UNIX_EPOCH),
    }
}

/// Devices for many (agent, address) pairs with one query; the few not seen before go through
/// [`resolve_devices`], which creates them (and their agent).
fn resolve_devices_of(
    c: &mut PgConnection,
    wanted: impl IntoIterator<Item = (Uuid, IpAddr)>,
) -> QueryResult<HashMap<(Uuid, IpAddr), (Uuid, String)>> {
    let wanted: HashSet<(Uuid, IpAddr)> = wanted.into_iter().collect();
    let mut agents_: Vec<Uuid> = wanted.iter().map(|(a, _)| *a).collect();
    agents_.sort_unstable();
    agents_.dedup();
    let mut ips: Vec<IpNetwork> = wanted.iter().map(|(_, ip)| IpNetwork::from(*ip)).collect();
    ips.sort_unstable();
    ips.dedup();
    let mut found: HashMap<(Uuid, IpAddr), (Uuid, String)> = devices::table
        .filter(devices::agent_id.eq_any(&agents_))
        .filter(devices::ip_address.eq_any(&ips))
        .select((devices::agent_id, devices::ip_address, devices::id, devices::name))
        .load::<(Option<Uuid>, IpNetwork, Uuid, String)>(c)?
        .into_iter()
        .filter_map(|(agent, ip, id, name)| Some(((agent?, ip.ip()), (id, name))))
        .filter(|(key, _)| wanted.contains(key))
        .collect();
    let mut missing: HashMap<Uuid, Vec<IpAddr>> = HashMap::new();
    for (agent, ip) in &wanted {
        if !found.contains_key(&(*agent, *ip)) {
            missing.entry(*agent).or_default().push(*ip);
        }
    }
    for (agent, ips) in missing {
        for (ip, device) in resolve_devices(c, agent, ips)? {
            found.insert((agent, ip), device);
        }
    }
    Ok(found)
}
