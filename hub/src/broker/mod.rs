//! The hub's end of the fleet link over MQTT. With `broker_mode = "external"` the hub is a
//! client of an MQTT broker (e.g. Mosquitto) with a persistent session and manual
//! acknowledgements: a message is acknowledged to the broker only after its data is committed
//! to PostgreSQL, so a hub that dies mid-stream gets it again. Agents learn what is stored from
//! an [`Ack`] on their own topic and keep everything else in their spool.

pub mod ingest;

use std::sync::Arc;
use std::time::Duration;

use gatewatch_proto::fleet::{self, Ack, AgentStatus, Channel, PredictionBatch};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::db::Db;
use crate::ws::{Broadcaster, Topic};

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BrokerMode {
    /// No fleet link (API only).
    Off,
    /// Connect to an MQTT broker at `broker_url`.
    External,
}

/// Broker settings from the hub configuration.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Agents silent for this long are marked offline.
    pub offline_after: Duration,
}

/// Counters for logs and metrics.
#[derive(Debug, Default)]
pub struct BrokerStats {
    pub batches: std::sync::atomic::AtomicU64,
    pub predictions: std::sync::atomic::AtomicU64,
    pub rejected: std::sync::atomic::AtomicU64,
}

/// Starts the link: one task keeps the MQTT connection, one stores messages in order, one
/// marks silent agents offline.
pub fn spawn(settings: BrokerSettings, db: Db, events: Arc<Broadcaster>, stats: Arc<BrokerStats>) {
    let mut options = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
    options.set_keep_alive(Duration::from_secs(5));
    options.set_clean_session(false);
    options.set_manual_acks(true);
    options.set_max_packet_size(16 << 20, 16 << 20);
    options.set_inflight(100);
    if let (Some(u), Some(p)) = (&settings.username, &settings.password) {
        options.set_credentials(u, p);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    let (work_tx, work_rx) = mpsc::channel::<Publish>(1024);
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
                        let _ = subscriber.subscribe(filter, QoS::AtLeastOnce).await;
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
    tokio::spawn(store(client, work_rx, db.clone(), events, stats));
    tokio::spawn(expire(db, settings.offline_after));
}

/// Stores messages one by one, in arrival order, and acknowledges each after its commit.
async fn store(
    client: AsyncClient,
    mut work: mpsc::Receiver<Publish>,
    db: Db,
    events: Arc<Broadcaster>,
    stats: Arc<BrokerStats>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    while let Some(p) = work.recv().await {
        let Some((agent, channel)) = fleet::parse_topic(&p.topic) else {
            stats.rejected.fetch_add(1, Relaxed);
            let _ = client.ack(&p).await;
            continue;
        };
        let outcome = match channel {
            Channel::Status => match serde_json::from_slice::<AgentStatus>(&p.payload) {
                Ok(s) if s.agent_id == agent && s.schema == fleet::SCHEMA => {
                    let db = db.clone();
                    let done = run(&db, move |c| ingest::status(c, agent, &s, chrono::Utc::now())).await;
                    if done.is_ok() {
                        events.publish("agent_status", &serde_json::json!({"agent_id": agent}), &[Topic::Live]);
                    }
                    done.map(|_| ())
                }
                _ => Err(Reject::Malformed),
            },
            Channel::Predictions => match serde_json::from_slice::<PredictionBatch>(&p.payload) {
                // An agent speaks only for itself: the payload's id must match its topic's.
                Ok(batch) if batch.agent_id == agent && batch.schema == fleet::SCHEMA => {
                    let (epoch, n) = (batch.epoch, batch.predictions.len());
                    let db = db.clone();
                    match run(&db, move |c| ingest::predictions(c, agent, &batch)).await {
                        Ok(stored) => {
                            stats.batches.fetch_add(1, Relaxed);
                            stats.predictions.fetch_add(n as u64, Relaxed);
                            for row in &stored.new {
                                let name = stored
                                    .device_names
                                    .get(&row.device_id)
                                    .map(String::as_str)
                                    .unwrap_or("");
                                crate::api::traffic::publish_prediction_to(&events, row, name);
                            }
                            let ack = Ack {
                                schema: fleet::SCHEMA,
                                epoch,
                                seq: stored.acked_seq,
                            };
                            let payload = serde_json::to_vec(&ack).unwrap_or_default();
                            let _ = client
                                .publish(fleet::topic(agent, Channel::Ack), QoS::AtLeastOnce, false, payload)
                                .await;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                _ => Err(Reject::Malformed),
            },
            // Acks go the other way; an agent publishing one is ignored.
            Channel::Ack => Err(Reject::Malformed),
        };
        match outcome {
            Ok(()) => {
                let _ = client.ack(&p).await;
            }
            Err(Reject::Malformed) => {
                stats.rejected.fetch_add(1, Relaxed);
                tracing::warn!(topic = %p.topic, bytes = p.payload.len(), "fleet link: message refused");
                let _ = client.ack(&p).await;
            }
            Err(Reject::Database(e)) => {
                // Not acknowledged: the broker and the agent's spool both still have it.
                tracing::error!(topic = %p.topic, error = %e, "fleet link: storing failed; the agent will send it again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

#[derive(Debug)]
enum Reject {
    Malformed,
    Database(String),
}

async fn run<T: Send + 'static>(
    db: &Db,
    f: impl FnOnce(&mut diesel::PgConnection) -> diesel::QueryResult<T> + Send + 'static,
) -> Result<T, Reject> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = db.get().map_err(|e| Reject::Database(e.to_string()))?;
        f(&mut conn).map_err(|e| Reject::Database(e.to_string()))
    })
    .await
    .map_err(|e| Reject::Database(e.to_string()))?
}

/// Marks agents offline when their heartbeats stop (the broker's last will covers clean
/// disconnects and dead TCP connections; this covers a broker that lost the agent silently).
async fn expire(db: Db, offline_after: Duration) {
    let silence = chrono::Duration::from_std(offline_after).unwrap_or(chrono::Duration::seconds(30));
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        match run(&db, move |c| ingest::expire(c, silence, chrono::Utc::now())).await {
            Ok(stale) if !stale.is_empty() => {
                tracing::info!(agents = stale.len(), "agents went silent; marked offline")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = ?e, "marking silent agents offline failed"),
        }
    }
}
