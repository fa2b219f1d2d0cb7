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

use crate::db::models::{Alert, DeviceRow, Prediction, PreventionLog, TrafficRow};
use crate::db::schema::{agents, alerts, devices, prevention_logs, prevention_rules, traffic_logs};

/// A device gets at most one `threshold_breach` alert in this long; and it is back to
/// `online` once its predictions are benign and it has had no alert for this long.
pub const ALERT_COOLDOWN_SECS: i64 = 60;

/// What a committed batch produced, for the WebSocket fan-out and the acknowledgement.
#[derive(Debug)]
pub struct Stored {
    /// Predictions inserted now (a re-delivered batch inserts none).
    pub new: Vec<Prediction>,
    pub device_names: HashMap<Uuid, String>,
    /// Every batch of the agent's epoch up to this one is stored: what the hub acknowledges.
    /// It only moves over batches without a gap, so a batch lost on the way is sent again.
    pub acked_seq: u64,
    /// Alerts raised by this batch's new predictions.
    pub alerts: Vec<Alert>,
    /// What the agent's prevention rules did on this batch's new predictions.
    pub prevention: Vec<PreventionLog>,
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
        // Reported while online; an offline message keeps the last one.
        let fl_local = (!s.fl_local_windows.is_empty())
            .then(|| serde_json::to_value(&s.fl_local_windows).ok())
            .flatten();
        diesel::insert_into(agents::table)
            .values((
                agents::id.eq(agent),
                agents::name.eq(&name),
                agents::hostname.eq(&s.hostname),
                agents::version.eq(&s.version),
                agents::status.eq(state),
                agents::last_heartbeat_at.eq(now),
                agents::model_version.eq(&model_version),
                agents::fl_local_windows.eq(&fl_local),
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
                agents::fl_local_windows.eq(
                    diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Jsonb>>(
                        "COALESCE(excluded.fl_local_windows, agents.fl_local_windows)",
                    ),
                ),
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

/// Devices of these agents follow their agent: offline with it, whatever they were (nobody
/// watches them), and online again with it.
fn set_devices(conn: &mut PgConnection, agents_: &[Uuid], state: &str) -> QueryResult<usize> {
    let from: &[&str] = if state == "online" {
        &["offline"]
    } else {
        &["online", "under_attack", "quarantined"]
    };
    diesel::update(
        devices::table
            .filter(devices::agent_id.eq_any(agents_))
            .filter(devices::status.eq_any(from)),
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
        alerts: Vec::new(),
        prevention: Vec::new(),
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
             inference_latency_ms, ts, attack_session_id, attack_step, clean_score) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::float8[], $4::text[], $5::float8[], $6::text[], \
             $7::varchar[], $8::float8[], $9::timestamptz[], $10::uuid[], $11::int4[], $12::float8[]) \
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
        .bind::<Array<Timestamptz>, _>(all.clone().map(|r| r.ts).collect::<Vec<_>>())
        .bind::<Array<Nullable<SqlUuid>>, _>(all.clone().map(|r| r.attack_session_id).collect::<Vec<_>>())
        .bind::<Array<Nullable<diesel::sql_types::Integer>>, _>(all.clone().map(|r| r.attack_step).collect::<Vec<_>>())
        .bind::<Array<Nullable<Double>>, _>(all.map(|r| r.clean_score).collect::<Vec<_>>())
        .load(c)?;
        // A batch delivered twice within one group: its rows go to the first copy only.
        let mut inserted: HashSet<Uuid> = inserted.into_iter().map(|r| r.id).collect();
        let (mut alerts_by_batch, mut logs_by_batch) = respond(c, batches, &rows, &inserted, &devices)?;

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
            .enumerate()
            .map(|(i, (((agent, _), rows), acked_seq))| {
                let device_names = names_by_agent.get(agent).cloned().unwrap_or_default();
                Stored {
                    new: rows.into_iter().filter(|r| inserted.remove(&r.id)).collect(),
                    device_names,
                    acked_seq,
                    alerts: alerts_by_batch.remove(&i).unwrap_or_default(),
                    prevention: logs_by_batch.remove(&i).unwrap_or_default(),
                }
            })
            .collect())
    })
}

type ByBatch<T> = HashMap<usize, Vec<T>>;

/// What new predictions set off, inside the group's transaction: the agent's prevention
/// events become the prevention log; a device's attack predictions raise one
/// `threshold_breach` alert per [`ALERT_COOLDOWN_SECS`] and put it `under_attack` (or
/// `quarantined` when a quarantine was enforced); a device whose predictions are benign again
/// and has had no alert for a while is back `online`. Results by batch index.
fn respond(
    c: &mut PgConnection,
    batches: &[(Uuid, &PredictionBatch)],
    rows: &[Vec<Prediction>],
    inserted: &HashSet<Uuid>,
    devices: &HashMap<(Uuid, IpAddr), (Uuid, String)>,
) -> QueryResult<(ByBatch<Alert>, ByBatch<PreventionLog>)> {
    let now = Utc::now();
    // Every new prediction with its message and batch.
    let mut fresh: Vec<(usize, &PredictionMsg, &Prediction)> = Vec::new();
    for (i, ((_, batch), rows)) in batches.iter().zip(rows).enumerate() {
        let by_id: HashMap<Uuid, &Prediction> = rows.iter().map(|r| (r.id, r)).collect();
        for p in &batch.predictions {
            if let (true, Some(row)) = (inserted.contains(&p.id), by_id.get(&p.id)) {
                fresh.push((i, p, row));
            }
        }
    }

    // Prevention log; a rule deleted since the agent got it is named in the details only.
    let mut logs: ByBatch<PreventionLog> = HashMap::new();
    let rule_ids: Vec<Uuid> = fresh
        .iter()
        .flat_map(|(_, p, _)| p.prevention.iter().map(|e| e.rule_id))
        .collect();
    if !rule_ids.is_empty() {
        let known: HashSet<Uuid> = prevention_rules::table
            .filter(prevention_rules::id.eq_any(&rule_ids))
            .select(prevention_rules::id)
            .load::<Uuid>(c)?
            .into_iter()
            .collect();
        let mut log_rows = Vec::new();
        let mut batch_of: HashMap<Uuid, usize> = HashMap::new();
        for (i, p, row) in &fresh {
            for e in &p.prevention {
                let action = e.action.as_str();
                batch_of.insert(e.id, *i);
                log_rows.push(PreventionLog {
                    id: e.id,
                    rule_id: known.contains(&e.rule_id).then_some(e.rule_id),
                    device_id: row.device_id,
                    prediction_id: Some(row.id),
                    action_executed: if e.enforced || e.action == gatewatch_proto::fleet::RuleAction::AlertOnly {
                        action.to_string()
                    } else {
                        format!("dry_run:{action}")
                    },
                    success: e.success,
                    details: Some(serde_json::json!({
                        "rule_id": e.rule_id,
                        "target": e.target,
                        "enforced": e.enforced,
                        "expires_at": e.expires_at_ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
                        "message": e.message.chars().take(1000).collect::<String>(),
                    })),
                    ts: now,
                });
            }
        }
        for chunk in log_rows.chunks(5_000) {
            let stored: Vec<PreventionLog> = diesel::insert_into(prevention_logs::table)
                .values(chunk)
                .on_conflict_do_nothing()
                .returning(PreventionLog::as_returning())
                .get_results(c)?;
            for log in stored {
                if let Some(i) = batch_of.get(&log.id) {
                    logs.entry(*i).or_default().push(log);
                }
            }
        }
    }

    // Per device: its strongest new attack prediction, whether any new one was an attack, and
    // the strongest measure enforced.
    struct Seen<'a> {
        batch: usize,
        top: Option<&'a Prediction>,
        measure: Option<&'static str>,
    }
    let mut seen: HashMap<Uuid, Seen<'_>> = HashMap::new();
    // A simulated attack is a test: it raises no alert and changes no device's status.
    for (i, p, row) in fresh.iter().filter(|(_, _, row)| row.attack_session_id.is_none()) {
        let s = seen.entry(row.device_id).or_insert(Seen {
            batch: *i,
            top: None,
            measure: None,
        });
        if row.label == "attack" && s.top.is_none_or(|t| row.score > t.score) {
            s.top = Some(row);
            s.batch = *i;
        }
        for e in p.prevention.iter().filter(|e| e.enforced && e.success) {
            use gatewatch_proto::fleet::RuleAction;
            let m = match e.action {
                RuleAction::Quarantine => "quarantined",
                RuleAction::BlockIp => "ip_blocked",
                RuleAction::RateLimit => "rate_limited",
                RuleAction::AlertOnly => continue,
            };
            let rank = |m: Option<&str>| {
                ["rate_limited", "ip_blocked", "quarantined"]
                    .iter()
                    .position(|x| Some(*x) == m)
            };
            if rank(Some(m)) > rank(s.measure) {
                s.measure = Some(m);
            }
        }
    }
    let attacked: Vec<Uuid> = seen.iter().filter(|(_, s)| s.top.is_some()).map(|(d, _)| *d).collect();
    let benign: Vec<Uuid> = seen.iter().filter(|(_, s)| s.top.is_none()).map(|(d, _)| *d).collect();
    let quarantined: Vec<Uuid> = seen
        .iter()
        .filter(|(_, s)| s.measure == Some("quarantined"))
        .map(|(d, _)| *d)
        .collect();
    let cooldown = chrono::Duration::seconds(ALERT_COOLDOWN_SECS);

    let mut alerts_out: ByBatch<Alert> = HashMap::new();
    if !attacked.is_empty() {
        let recent: HashSet<Uuid> = alerts::table
            .filter(alerts::device_id.eq_any(&attacked))
            .filter(alerts::alert_type.eq("threshold_breach"))
            .filter(alerts::ts.gt(now - cooldown))
            .select(alerts::device_id)
            .load::<Uuid>(c)?
            .into_iter()
            .collect();
        let names: HashMap<Uuid, &str> = devices.values().map(|(id, name)| (*id, name.as_str())).collect();
        let mut batch_of = HashMap::new();
        let new_alerts: Vec<Alert> = attacked
            .iter()
            .filter(|d| !recent.contains(d))
            .filter_map(|d| {
                let s = seen.get(d)?;
                let top = s.top?;
                let id = Uuid::now_v7();
                batch_of.insert(id, s.batch);
                let family = top.attack_type.as_deref().unwrap_or("attack");
                Some(Alert {
                    id,
                    device_id: *d,
                    prediction_id: Some(top.id),
                    alert_type: "threshold_breach".into(),
                    severity: severity(top.score).into(),
                    message: format!(
                        "{family} detected on {}: score {:.3} (model {})",
                        names.get(d).copied().unwrap_or("a device"),
                        top.score,
                        top.model_version
                    ),
                    is_acknowledged: false,
                    acknowledged_by: None,
                    acknowledged_at: None,
                    action_taken: Some(s.measure.unwrap_or("none").into()),
                    ts: now,
                })
            })
            .collect();
        if !new_alerts.is_empty() {
            let stored: Vec<Alert> = diesel::insert_into(alerts::table)
                .values(&new_alerts)
                .returning(Alert::as_returning())
                .get_results(c)?;
            for a in stored {
                if let Some(i) = batch_of.get(&a.id) {
                    alerts_out.entry(*i).or_default().push(a);
                }
            }
        }
        diesel::update(
            devices::table
                .filter(devices::id.eq_any(&attacked))
                .filter(devices::status.eq("online")),
        )
        .set((devices::status.eq("under_attack"), devices::updated_at.eq(now)))
        .execute(c)?;
    }
    if !quarantined.is_empty() {
        diesel::update(devices::table.filter(devices::id.eq_any(&quarantined)))
            .set((devices::status.eq("quarantined"), devices::updated_at.eq(now)))
            .execute(c)?;
    }
    if !benign.is_empty() {
        let still_alerted = alerts::table
            .filter(alerts::device_id.eq(devices::id))
            .filter(alerts::alert_type.eq("threshold_breach"))
            .filter(alerts::ts.gt(now - cooldown));
        diesel::update(
            devices::table
                .filter(devices::id.eq_any(&benign))
                .filter(devices::status.eq_any(["under_attack", "quarantined"]))
                .filter(diesel::dsl::not(diesel::dsl::exists(still_alerted))),
        )
        .set((devices::status.eq("online"), devices::updated_at.eq(now)))
        .execute(c)?;
    }
    Ok((alerts_out, logs))
}

/// Alert severity by attack score.
fn severity(score: f64) -> &'static str {
    match score {
        s if s >= 0.95 => "critical",
        s if s >= 0.85 => "high",
        s if s >= 0.7 => "medium",
        _ => "low",
    }
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
        attack_session_id: d.simulation.map(|m| m.session_id),
        attack_step: d.simulation.map(|m| i32::try_from(m.step).unwrap_or(i32::MAX)),
        clean_score: d
            .simulation
            .and_then(|m| m.clean_score)
            .map(|s| f64::from(s).clamp(0.0, 1.0)),
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
