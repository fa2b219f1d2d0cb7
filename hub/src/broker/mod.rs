//! The hub's end of the fleet link over MQTT. The hub is a client of a broker: its own
//! (`embedded`: rumqttd on loopback, agents coming in over mutual TLS through the
//! [`gateway`]) or an external one (e.g. Mosquitto). It subscribes with manual
//! acknowledgements: a message is acknowledged to the broker only after its data is committed
//! to PostgreSQL, so a hub that dies mid-stream gets it again. Agents learn what is stored from
//! an [`Ack`] on their own topic and keep everything else in their spool.

pub mod commands;
pub mod embedded;
pub mod gateway;
pub mod identity;
pub mod ingest;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use gatewatch_proto::fleet::{self, Ack, AgentState, AgentStatus, Channel, PredictionBatch};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::db::Db;
use crate::model::ModelStore;
use crate::ws::{Broadcaster, Topic};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BrokerMode {
    /// No fleet link (API only).
    Off,
    /// Connect to an MQTT broker at `broker_url`.
    External,
    /// Run a broker in the hub; agents connect over mutual TLS.
    Embedded,
}

/// Broker settings from the hub configuration.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub link: Link,
    /// Agents silent for this long are marked offline.
    pub offline_after: Duration,
}

#[derive(Debug, Clone)]
pub enum Link {
    External {
        host: String,
        port: u16,
        client_id: String,
        username: Option<String>,
        password: Option<String>,
    },
    Embedded {
        listen: std::net::SocketAddr,
        quic: std::net::SocketAddr,
        tls_names: Vec<String>,
        max_agents: usize,
    },
}

/// Where the hub's consumer connects.
#[derive(Debug, Clone)]
struct Consumer {
    host: String,
    port: u16,
    client_id: String,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Embedded(#[from] embedded::EmbeddedError),
    #[error("cannot listen for agents on {addr} (config key mqtt_tls_port): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Bulk(#[from] crate::bulk::BulkError),
    #[error("loading agent certificates: {0}")]
    Registry(String),
}

/// Starts the fleet link: in embedded mode the broker and the agents' TLS listener first
/// (so a taken port fails the start), then the consumer and the offline sweeper.
pub async fn start(settings: BrokerSettings, app: &crate::App) -> Result<(), StartError> {
    // Models are rolled out only to agents with certificates: they download over QUIC.
    let mut rollout = None;
    let consumer = match settings.link {
        Link::External {
            host,
            port,
            client_id,
            username,
            password,
        } => Consumer {
            host,
            port,
            client_id,
            username,
            password,
        },
        Link::Embedded {
            listen,
            quic,
            tls_names,
            max_agents,
        } => {
            let upstream = tokio::task::spawn_blocking(move || embedded::start(max_agents))
                .await
                .map_err(|e| embedded::EmbeddedError::Start(e.to_string()))??;
            let db = app.db.clone();
            let registry = app.identities.clone();
            tokio::task::spawn_blocking(move || {
                let mut conn = db.get().map_err(|e| e.to_string())?;
                registry.reload(&mut conn).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| StartError::Registry(e.to_string()))?
            .map_err(StartError::Registry)?;
            tokio::spawn(app.identities.clone().follow(app.db.clone()));
            // One server certificate for both listeners; each names its own protocol.
            let server_tls = app.ca.server_config(&tls_names)?;
            let mut quic_tls = server_tls.clone();
            quic_tls.alpn_protocols = vec![gatewatch_proto::bulk::ALPN.to_vec()];
            let mut mqtt_tls = server_tls;
            mqtt_tls.alpn_protocols = vec![b"mqtt".to_vec()];
            let tls = Arc::new(mqtt_tls);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| StartError::Listen { addr: listen, source })?;
            tracing::info!(addr = %listen, "agents' MQTT over mutual TLS listening");
            let endpoint = crate::bulk::bind(quic, quic_tls)?;
            tracing::info!(addr = %quic, "agents' QUIC listening");
            tokio::spawn(crate::bulk::serve(
                endpoint,
                crate::bulk::Context {
                    registry: app.identities.clone(),
                    models: app.models.clone(),
                    db: app.db.clone(),
                    stats: app.bulk_stats.clone(),
                    data_dir: app.config.data_dir.clone(),
                    fl: app.fl.clone(),
                },
            ));
            rollout = Some(app.models.clone());
            tokio::spawn(gateway::serve(
                listener,
                tls,
                upstream.clone(),
                app.identities.clone(),
                app.gateway_stats.clone(),
            ));
            Consumer {
                host: upstream.addr.ip().to_string(),
                port: upstream.addr.port(),
                client_id: "gatewatch-hub".into(),
                username: Some(upstream.username),
                password: Some(upstream.password),
            }
        }
    };
    spawn(consumer, settings.offline_after, app, rollout);
    Ok(())
}

/// Counters for logs and metrics.
#[derive(Debug, Default)]
pub struct BrokerStats {
    pub batches: std::sync::atomic::AtomicU64,
    pub predictions: std::sync::atomic::AtomicU64,
    pub rejected: std::sync::atomic::AtomicU64,
}

/// One task keeps the MQTT connection, one stores messages in order, one marks silent agents
/// offline.
fn spawn(settings: Consumer, offline_after: Duration, app: &crate::App, rollout: Option<Arc<ModelStore>>) {
    let db = app.db.clone();
    let mut options = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_max_packet_size(16 << 20, 16 << 20);
    // Acknowledgements to agents are QoS 1 too: many may be on their way at once.
    options.set_inflight(1024);
    if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
        options.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(options, embedded::IN_FLIGHT);
    // Messages waiting for the storing task; a full queue holds the broker connection back.
    let (work_tx, work_rx) = mpsc::channel::<Publish>(embedded::IN_FLIGHT);
    let subscriber = client.clone();
    let broker = format!("{}:{}", settings.host, settings.port);
    tokio::spawn(async move {
        let mut connected = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected = true;
                    tracing::info!(%broker, "fleet link: connected to the broker");
                    for filter in fleet::hub_subscriptions() {
                        // Predictions come at most once from the broker: their delivery is
                        // guaranteed end to end (the agent's spool keeps a batch until the
                        // hub's own acknowledgement, and sends it again otherwise), and QoS 1
                        // here would let a broker hold back all but a few unacknowledged
                        // messages while a group is committed (rumqttd: 100).
                        let qos = match fleet::parse_topic(&filter.replace('+', &Uuid::nil().to_string())) {
                            Some((_, Channel::Predictions)) => QoS::AtMostOnce,
                            _ => QoS::AtLeastOnce,
                        };
                        let _ = subscriber.subscribe(filter, qos).await;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if work_tx.send(p).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    if connected {
                        tracing::warn!(%broker, error = %e, "fleet link: broker connection lost; retrying");
                    }
                    connected = false;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    if rollout.is_some() {
        // Federated learning needs the QUIC side, which only the embedded link has.
        app.fl.set_publisher(client.clone());
    }
    if let Some(models) = &rollout {
        tokio::spawn(roll_out(client.clone(), db.clone(), models.clone()));
    }
    tokio::spawn(commands::deliver(client.clone(), db.clone(), app.commands.clone()));
    tokio::spawn(rules::push(client.clone(), db.clone(), app.rules_changed.clone()));
    let store_cx = StoreContext {
        client,
        db: db.clone(),
        events: app.events.clone(),
        stats: app.broker_stats.clone(),
        rollout,
        commands: app.commands.clone(),
        uploads: app.config.data_dir.clone(),
        webhooks: app.webhooks.clone(),
    };
    tokio::spawn(store(store_cx, work_rx));
    tokio::spawn(expire(db, app.events.clone(), offline_after));
}

/// Most prediction messages stored in one transaction, and most predictions in them.
const GROUP_MESSAGES: usize = 4096;
const GROUP_PREDICTIONS: usize = 25_000;

/// A prediction batch that passed the checks, waiting for its group's commit.
struct Pending {
    publish: Publish,
    agent: Uuid,
    batch: PredictionBatch,
}

/// What the storing task works with.
struct StoreContext {
    client: AsyncClient,
    db: Db,
    events: Arc<Broadcaster>,
    stats: Arc<BrokerStats>,
    rollout: Option<Arc<ModelStore>>,
    /// Wakes the command delivery when an agent comes online.
    commands: Arc<tokio::sync::Notify>,
    /// The hub's data directory (uploaded captures are removed once replayed).
    uploads: std::path::PathBuf,
    webhooks: Arc<crate::webhooks::Webhooks>,
}

/// Stores messages in arrival order and acknowledges each after its commit. Prediction
/// batches that are waiting together are stored together, in one transaction (group commit):
/// under load the cost of a transaction is shared by many agents' batches, and when idle a
/// batch is stored alone at once.
async fn store(cx: StoreContext, mut work: mpsc::Receiver<Publish>) {
    use std::sync::atomic::Ordering::Relaxed;
    let (client, stats) = (&cx.client, &cx.stats);
    let mut group: Vec<Pending> = Vec::new();
    while let Some(first) = work.recv().await {
        let mut next = Some(first);
        while let Some(p) = next.take() {
            let Some((agent, channel)) = fleet::parse_topic(&p.topic) else {
                stats.rejected.fetch_add(1, Relaxed);
                let _ = client.ack(&p).await;
                continue;
            };
            match channel {
                Channel::Predictions => match serde_json::from_slice::<PredictionBatch>(&p.payload) {
                    // An agent speaks only for itself: the payload's id must match its topic's.
                    Ok(batch) if batch.agent_id == agent && batch.schema == fleet::SCHEMA && plausible(&batch) => {
                        group.push(Pending {
                            publish: p,
                            agent,
                            batch,
                        });
                    }
                    _ => refuse(client, stats, &p).await,
                },
                Channel::Status => {
                    // In order: what came before the status is stored before it.
                    store_group(&cx, std::mem::take(&mut group)).await;
                    match serde_json::from_slice::<AgentStatus>(&p.payload) {
                        Ok(s) if s.agent_id == agent && s.schema == fleet::SCHEMA => {
                            store_status(&cx, agent, s, &p).await
                        }
                        _ => refuse(client, stats, &p).await,
                    }
                }
                Channel::CommandResult => match serde_json::from_slice::<fleet::CommandResult>(&p.payload) {
                    Ok(r) if r.schema == fleet::SCHEMA => store_result(&cx, agent, r, &p).await,
                    _ => refuse(client, stats, &p).await,
                },
                Channel::Attack => {
                    // In order with the predictions of the same session.
                    store_group(&cx, std::mem::take(&mut group)).await;
                    match serde_json::from_slice::<fleet::AttackReport>(&p.payload) {
                        Ok(r) if r.schema == fleet::SCHEMA => store_attack(&cx, agent, r, &p).await,
                        _ => refuse(client, stats, &p).await,
                    }
                }
                // Acks and commands go the other way; an agent publishing one is ignored.
                Channel::Ack | Channel::Command => refuse(client, stats, &p).await,
            }
            let predictions: usize = group.iter().map(|g| g.batch.predictions.len()).sum();
            if group.len() < GROUP_MESSAGES && predictions < GROUP_PREDICTIONS {
                next = work.try_recv().ok();
            }
        }
        store_group(&cx, std::mem::take(&mut group)).await;
    }
}

/// An agent's answer to a command: recorded against its own commands only. A replayed
/// capture is no longer needed once the agent has it.
async fn store_result(cx: &StoreContext, agent: Uuid, r: fleet::CommandResult, p: &Publish) {
    let outcome = r.outcome;
    match run(&cx.db, move |c| commands::finish(c, agent, &r)).await {
        Ok(Some(row)) => {
            tracing::info!(%agent, command = %row.id, kind = %row.command, status = %row.status, result = row.result.as_deref().unwrap_or(""), "agent answered a command");
            cx.events.publish(
                "agent_command",
                &serde_json::json!({"id": row.id, "agent_id": agent, "device_id": row.device_id, "command": row.command, "status": row.status}),
                &[Topic::Live],
            );
            let upload = row.payload["upload_id"].as_str().and_then(|u| Uuid::parse_str(u).ok());
            if let (fleet::Outcome::Done, Some(upload)) = (outcome, upload) {
                let _ = tokio::fs::remove_file(crate::api::traffic::upload_path(&cx.uploads, upload)).await;
            }
            let _ = cx.client.ack(p).await;
        }
        Ok(None) => {
            tracing::debug!(%agent, topic = %p.topic, "an answer to no open command of this agent");
            let _ = cx.client.ack(p).await;
        }
        Err(e) => {
            tracing::error!(topic = %p.topic, error = %e, "fleet link: storing a command result failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// An agent's report on an attack-simulation session it runs.
async fn store_attack(cx: &StoreContext, agent: Uuid, r: fleet::AttackReport, p: &Publish) {
    match run(&cx.db, move |c| crate::attack::record(c, agent, &r)).await {
        Ok(Some(progress)) => {
            crate::attack::publish(&cx.events, &progress);
            let _ = cx.client.ack(p).await;
        }
        Ok(None) => {
            tracing::debug!(%agent, "a report on no running session of this agent's devices");
            let _ = cx.client.ack(p).await;
        }
        Err(e) => {
            tracing::error!(topic = %p.topic, error = %e, "fleet link: storing an attack report failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Scores and confidences in 0..=1: anything else would break the whole group's transaction
/// on the table's checks.
fn plausible(batch: &PredictionBatch) -> bool {
    let unit = |x: f32| (0.0..=1.0).contains(&x);
    batch.predictions.iter().all(|p| {
        unit(p.detection.score) && unit(p.detection.confidence) && p.detection.inference_latency_ms.is_finite()
    })
}

async fn refuse(client: &AsyncClient, stats: &BrokerStats, p: &Publish) {
    stats.rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(topic = %p.topic, bytes = p.payload.len(), "fleet link: message refused");
    let _ = client.ack(p).await;
}

/// Stores a group of prediction batches in one transaction, then publishes their new
/// predictions, acknowledges them to the broker and tells each agent what is stored. If the
/// group fails, its batches are tried one by one so that one bad batch holds up only itself.
async fn store_group(cx: &StoreContext, group: Vec<Pending>) {
    use std::sync::atomic::Ordering::Relaxed;
    let (client, db, events, stats) = (&cx.client, &cx.db, &cx.events, &cx.stats);
    if group.is_empty() {
        return;
    }
    let (group, outcome) = {
        let db = db.clone();
        let done = tokio::task::spawn_blocking(move || {
            let outcome = db.get().map_err(|e| e.to_string()).and_then(|mut c| {
                let batches: Vec<(Uuid, &PredictionBatch)> = group.iter().map(|g| (g.agent, &g.batch)).collect();
                ingest::prediction_batches(&mut c, &batches).map_err(|e| e.to_string())
            });
            (group, outcome)
        })
        .await;
        match done {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "fleet link: storing task failed");
                return;
            }
        }
    };
    let stored = match outcome {
        Ok(stored) => stored,
        Err(e) if group.len() > 1 => {
            tracing::warn!(batches = group.len(), error = %e, "fleet link: storing a group failed; storing its batches one by one");
            for one in group {
                Box::pin(store_group(cx, vec![one])).await;
            }
            return;
        }
        Err(e) => {
            // Not acknowledged: the broker and the agent's spool both still have it.
            tracing::error!(error = %e, "fleet link: storing failed; the agent will send it again");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
    };
    for (pending, stored) in group.iter().zip(stored) {
        stats.batches.fetch_add(1, Relaxed);
        stats
            .predictions
            .fetch_add(pending.batch.predictions.len() as u64, Relaxed);
        for row in &stored.new {
            let name = stored
                .device_names
                .get(&row.device_id)
                .map(String::as_str)
                .unwrap_or("");
            crate::api::traffic::publish_prediction_to(events, row, name);
        }
        for alert in &stored.alerts {
            crate::api::traffic::publish_alert_to(events, alert);
        }
        for log in &stored.prevention {
            events.publish("prevention", log, &[Topic::Live, Topic::Device(log.device_id)]);
        }
        cx.webhooks.on_alerts(db, events, &stored.alerts);
        let ack = Ack {
            schema: fleet::SCHEMA,
            epoch: pending.batch.epoch,
            seq: stored.acked_seq,
        };
        let payload = fleet::payload(&ack);
        let _ = client
            .publish(
                fleet::topic(pending.agent, Channel::Ack),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await;
        let _ = client.ack(&pending.publish).await;
    }
}

async fn store_status(cx: &StoreContext, agent: Uuid, s: AgentStatus, p: &Publish) {
    let (client, db, events) = (&cx.client, &cx.db, &cx.events);
    // An online agent scoring with another model than the hub's is told to switch.
    let state = s.state;
    let behind = cx
        .rollout
        .as_deref()
        .and_then(|m| m.active_files())
        .map(|(active, _)| active)
        .filter(|active| s.state == AgentState::Online && s.model_version.as_ref() != Some(active));
    match run(db, move |c| ingest::status(c, agent, &s, chrono::Utc::now())).await {
        Ok(came_online) => {
            events.publish("agent_status", &serde_json::json!({"agent_id": agent}), &[Topic::Live]);
            // A session outlives neither its agent going away nor a restart (which forgets it).
            let gone = match (state, came_online) {
                (AgentState::Offline, _) => Some("the agent went offline during the session"),
                (AgentState::Online, true) => Some("the agent restarted or reconnected during the session"),
                _ => None,
            };
            if let Some(reason) = gone {
                match run(db, move |c| crate::attack::fail_for_agents(c, &[agent], reason)).await {
                    Ok(failed) => failed.iter().for_each(|p| crate::attack::publish(events, p)),
                    Err(e) => tracing::warn!(%agent, error = %e, "failing the agent's attack sessions failed"),
                }
            }
            if came_online {
                cx.commands.notify_one();
                rules::send_to(client, db, agent).await;
            }
            if let Some(version) = behind {
                command(client, agent, fleet::Action::UseModel { version }).await;
            }
            let _ = client.ack(p).await;
        }
        Err(e) => {
            tracing::error!(topic = %p.topic, error = %e, "fleet link: storing a status failed");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn command(client: &AsyncClient, agent: Uuid, action: fleet::Action) {
    let cmd = fleet::Command {
        schema: fleet::SCHEMA,
        action,
    };
    let payload = fleet::payload(&cmd);
    if let Err(e) = client
        .publish(fleet::topic(agent, Channel::Command), QoS::AtLeastOnce, false, payload)
        .await
    {
        tracing::warn!(%agent, error = %e, "command not sent");
    }
}

/// When the active model changes, tells every online, enrolled agent at once (the others
/// hear of it with their next status message).
async fn roll_out(client: AsyncClient, db: Db, models: Arc<ModelStore>) {
    use diesel::prelude::*;
    let mut versions = models.watch_version();
    versions.mark_unchanged();
    while versions.changed().await.is_ok() {
        let Some(version) = versions.borrow_and_update().clone() else {
            continue;
        };
        let wanted = version.clone();
        let online = run(&db, move |c| {
            use crate::db::schema::agents;
            agents::table
                .filter(agents::status.eq("online"))
                .filter(agents::cert_fingerprint.is_not_null())
                .filter(agents::revoked_at.is_null())
                .filter(agents::model_version.is_distinct_from(&wanted))
                .select(agents::id)
                .load::<Uuid>(c)
        })
        .await;
        match online {
            Ok(agents) => {
                tracing::info!(%version, agents = agents.len(), "rolling out the active model");
                for agent in agents {
                    command(
                        &client,
                        agent,
                        fleet::Action::UseModel {
                            version: version.clone(),
                        },
                    )
                    .await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "model rollout: listing agents failed"),
        }
    }
}

/// Runs a database call on the blocking pool.
pub(crate) async fn run<T: Send + 'static>(
    db: &Db,
    f: impl FnOnce(&mut diesel::PgConnection) -> diesel::QueryResult<T> + Send + 'static,
) -> Result<T, String> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = db.get().map_err(|e| e.to_string())?;
        f(&mut conn).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Marks agents offline when their heartbeats stop (the broker's last will covers clean
/// disconnects and dead TCP connections; this covers a broker that lost the agent silently).
async fn expire(db: Db, events: Arc<Broadcaster>, offline_after: Duration) {
    let silence = chrono::Duration::from_std(offline_after).unwrap_or(chrono::Duration::seconds(30));
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        match run(&db, move |c| ingest::expire(c, silence, chrono::Utc::now())).await {
            Ok(stale) if !stale.is_empty() => {
                tracing::info!(agents = stale.len(), "agents went silent; marked offline");
                let reason = "the agent went silent (offline) during the session";
                match run(&db, move |c| crate::attack::fail_for_agents(c, &stale, reason)).await {
                    Ok(failed) => failed.iter().for_each(|p| crate::attack::publish(&events, p)),
                    Err(e) => tracing::warn!(error = %e, "failing silent agents' attack sessions failed"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "marking silent agents offline failed"),
        }
    }
}
