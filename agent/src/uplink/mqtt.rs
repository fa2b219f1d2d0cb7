//! The MQTT side of the uplink: one task polls rumqttc's event loop (which reconnects by
//! itself) and reports link events; the uplink loop feeds detections into the [`Sender`],
//! publishes what is due while connected, and applies the hub's acknowledgements.

use std::time::{Duration, Instant};

use crate::prevent::Scored;
use gatewatch_proto::fleet::{self, Ack, Action, AgentState, AgentStatus, Channel, Command};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::sender::{Sender, SenderStats};
use gatewatch_proto::fleet::BrokerUrl;

/// Who this agent is and how it reaches the broker.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub broker: BrokerUrl,
    /// Mutual TLS settings, for an `mqtts://` broker.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub agent_id: Uuid,
    pub name: String,
    pub hostname: String,
    pub heartbeat: Duration,
    /// At shutdown, wait this long for the hub to acknowledge what is in flight.
    pub drain_timeout: Duration,
    /// Where the uplink's counters are copied for the metrics endpoint.
    pub metrics: std::sync::Arc<crate::metrics::AgentMetrics>,
}

enum LinkEvent {
    Up,
    Down(String),
    Ack(Ack),
    Command(Command),
    /// A rollout finished: the version now scoring, or why not.
    Rolled(Result<String, String>),
    /// A command that ran in a task (a replay) ended.
    Finished(Uuid, Result<String, String>),
}

/// What the uplink did, for the summary at exit.
#[derive(Debug, Clone, Copy, Default)]
pub struct UplinkReport {
    pub sender: SenderStats,
    pub connects: u64,
    pub disconnects: u64,
}

impl LinkConfig {
    fn status(&self, state: AgentState, model_version: Option<String>) -> Vec<u8> {
        let status = AgentStatus {
            schema: fleet::SCHEMA,
            agent_id: self.agent_id,
            state,
            name: self.name.clone(),
            hostname: self.hostname.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            model_version,
            heartbeat_secs: self.heartbeat.as_secs().max(1) as u32,
            sent_at_ms: chrono_ms(),
            fl_local_windows: gatewatch_models::FAMILIES
                .iter()
                .zip(&self.metrics.fl_local_windows)
                .map(|(f, n)| {
                    (
                        f.name().to_string(),
                        n.load(std::sync::atomic::Ordering::Relaxed) as u32,
                    )
                })
                .filter(|(_, n)| *n > 0)
                .collect(),
        };
        fleet::payload(&status)
    }
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn copy_metrics(m: &crate::metrics::AgentMetrics, s: &SenderStats, report: &UplinkReport) {
    use std::sync::atomic::Ordering::Relaxed;
    m.detections.store(s.detections, Relaxed);
    m.batches_sent.store(s.batches_sent, Relaxed);
    m.batches_acked.store(s.acked_batches, Relaxed);
    m.spool_records.store(s.spool.pending_records, Relaxed);
    m.spool_bytes.store(s.spool.disk_bytes, Relaxed);
    m.spool_dropped
        .store(s.spool.dropped_new + s.spool.dropped_old, Relaxed);
    m.reconnects.store(report.connects.saturating_sub(1), Relaxed);
}

/// Who carries out what the hub orders: model rollouts, operators' commands, federated
/// learning.
#[derive(Debug)]
pub struct Orders {
    pub rollout: Option<std::sync::Arc<super::rollout::Rollout>>,
    pub commands: super::commands::Commands,
    pub fl: Option<std::sync::Arc<crate::fl::Client>>,
}

/// Runs until `detections` closes (the pipeline ended, e.g. on SIGTERM), then drains: nothing
/// the pipeline produced is dropped, it is spooled at least.
pub async fn run(
    link: LinkConfig,
    mut sender: Sender,
    mut detections: mpsc::Receiver<Scored>,
    mut attack_reports: mpsc::UnboundedReceiver<fleet::AttackReport>,
    model_version: watch::Sender<Option<String>>,
    orders: Orders,
) -> Result<UplinkReport, super::SpoolError> {
    let Orders {
        rollout,
        mut commands,
        fl,
    } = orders;
    let status_topic = fleet::topic(link.agent_id, Channel::Status);
    let result_topic = fleet::topic(link.agent_id, Channel::CommandResult);
    let predictions_topic = fleet::topic(link.agent_id, Channel::Predictions);
    let ack_topic = fleet::topic(link.agent_id, Channel::Ack);
    let command_topic = fleet::topic(link.agent_id, Channel::Command);
    let attack_topic = fleet::topic(link.agent_id, Channel::Attack);
    // Session progress made while the hub is away goes when it is back (the newest kept).
    let mut attack_backlog: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
    const ATTACK_BACKLOG: usize = 1024;

    let mut options = MqttOptions::new(
        fleet::agent_client_id(link.agent_id),
        &link.broker.host,
        link.broker.port,
    );
    options.set_keep_alive(Duration::from_secs(5));
    options.set_max_packet_size(4 << 20, 4 << 20);
    if let Some(tls) = &link.tls {
        options.set_transport(rumqttc::Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(
            tls.clone(),
        )));
    }
    options.set_last_will(LastWill::new(
        &status_topic,
        link.status(AgentState::Offline, None),
        QoS::AtLeastOnce,
        true,
    ));
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let (events_tx, mut events) = mpsc::channel::<LinkEvent>(256);
    let rolled_tx = events_tx.clone();
    let ack_filter = ack_topic.clone();
    let command_filter = command_topic.clone();
    let poller = tokio::spawn(async move {
        let mut backoff = super::backoff::Backoff::mqtt();
        loop {
            let event = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff.reset();
                    Some(LinkEvent::Up)
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_filter => {
                    serde_json::from_slice::<Ack>(&p.payload).ok().map(LinkEvent::Ack)
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == command_filter => {
                    match serde_json::from_slice::<Command>(&p.payload) {
                        Ok(c) if c.schema == fleet::SCHEMA => Some(LinkEvent::Command(c)),
                        _ => {
                            tracing::warn!(bytes = p.payload.len(), "a command from the hub was not understood");
                            None
                        }
                    }
                }
                Ok(_) => None,
                Err(e) => {
                    let _ = events_tx.send(LinkEvent::Down(e.to_string())).await;
                    let delay = backoff.next_delay(&mut rand::thread_rng());
                    tokio::time::sleep(delay).await;
                    None
                }
            };
            if let Some(event) = event {
                if events_tx.send(event).await.is_err() {
                    break;
                }
            }
        }
    });

    let mut report = UplinkReport::default();
    let mut connected = false;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut heartbeat = tokio::time::interval(link.heartbeat);
    let mut sync = tokio::time::interval(Duration::from_secs(1));
    let mut input_open = true;
    let mut last_down: Option<String> = None;
    let mut rolling_out: Option<String> = None;
    loop {
        tokio::select! {
            d = detections.recv(), if input_open => match d {
                Some(d) => sender.push(d, Instant::now())?,
                None => input_open = false,
            },
            Some(r) = attack_reports.recv() => {
                if attack_backlog.len() == ATTACK_BACKLOG {
                    attack_backlog.pop_front();
                }
                attack_backlog.push_back(fleet::payload(&r));
            },
            Some(event) = events.recv() => match event {
                LinkEvent::Up => {
                    connected = true;
                    report.connects += 1;
                    last_down = None;
                    tracing::info!(broker = %link.broker, "connected to the hub's broker");
                    let _ = client.try_subscribe(&ack_topic, QoS::AtLeastOnce);
                    let _ = client.try_subscribe(&command_topic, QoS::AtLeastOnce);
                    let _ = client.try_publish(&status_topic, QoS::AtLeastOnce, true, link.status(AgentState::Online, model_version.borrow().clone()));
                    sender.restart(Instant::now())?;
                }
                LinkEvent::Down(reason) => {
                    if connected {
                        report.disconnects += 1;
                    }
                    if connected || last_down.as_deref() != Some(reason.as_str()) {
                        tracing::warn!(%reason, spooled = sender.stats().spool.pending_records, "hub unreachable; spooling");
                    }
                    connected = false;
                    last_down = Some(reason);
                }
                LinkEvent::Ack(ack) => sender.acked(ack, Instant::now())?,
                LinkEvent::Command(Command { action: Action::UseModel { version }, .. }) => {
                    let current = model_version.borrow().clone();
                    match &rollout {
                        _ if current.as_ref() == Some(&version) || rolling_out.is_some() => {}
                        None => tracing::warn!(%version, "the hub rolls out a model, but this agent has no QUIC identity (enroll it)"),
                        Some(rollout) => {
                            tracing::info!(%version, "the hub rolls out a new model; downloading");
                            rolling_out = Some(version.clone());
                            let (rollout, done) = (rollout.clone(), rolled_tx.clone());
                            tokio::spawn(async move {
                                let outcome = rollout.apply(&version).await.map_err(|e| e.to_string());
                                let _ = done.send(LinkEvent::Rolled(outcome)).await;
                            });
                        }
                    }
                }
                LinkEvent::Command(Command {
                    action: action @ (Action::FlKeygen(_) | Action::FlTrain(_) | Action::FlDecrypt(_) | Action::FlLabel(_)),
                    ..
                }) => match &fl {
                    Some(fl) => fl.handle(action),
                    None => tracing::warn!("the hub asks for federated learning, which is off on this agent (fl.enabled) or needs enrollment"),
                },
                LinkEvent::Command(Command { action, .. }) => {
                    let finished_tx = rolled_tx.clone();
                    let handled = commands.handle(action, move |id, work| {
                        tokio::spawn(async move {
                            let outcome = work.await;
                            let _ = finished_tx.send(LinkEvent::Finished(id, outcome)).await;
                        });
                    });
                    if let (super::commands::Handled::Answer(answer), true) = (handled, connected) {
                        let _ = client.try_publish(&result_topic, QoS::AtLeastOnce, false, fleet::payload(&answer));
                    }
                }
                LinkEvent::Finished(id, outcome) => {
                    let answer = commands.finished(id, outcome);
                    // If the hub is away it delivers the command again on reconnection, and
                    // the remembered answer goes then.
                    if connected {
                        let _ = client.try_publish(&result_topic, QoS::AtLeastOnce, false, fleet::payload(&answer));
                    }
                }
                LinkEvent::Rolled(outcome) => {
                    let wanted = rolling_out.take().unwrap_or_default();
                    match outcome {
                        Ok(version) => {
                            tracing::info!(%version, "model rolled out");
                            model_version.send_replace(Some(version));
                            if connected {
                                let _ = client.try_publish(&status_topic, QoS::AtLeastOnce, true, link.status(AgentState::Online, model_version.borrow().clone()));
                            }
                        }
                        Err(reason) => tracing::warn!(version = %wanted, %reason, "model rollout failed; the hub will ask again"),
                    }
                }
            },
            _ = tick.tick() => sender.tick(Instant::now())?,
            _ = heartbeat.tick() => if connected {
                let _ = client.try_publish(&status_topic, QoS::AtLeastOnce, true, link.status(AgentState::Online, model_version.borrow().clone()));
            },
            _ = sync.tick() => {
                sender.sync()?;
                copy_metrics(&link.metrics, &sender.stats(), &report);
            }
        }
        if connected {
            for payload in sender.due()? {
                // A full request queue only delays: unacknowledged batches are sent again.
                let _ = client.try_publish(&predictions_topic, QoS::AtLeastOnce, false, payload);
            }
            while let Some(payload) = attack_backlog.pop_front() {
                if client
                    .try_publish(&attack_topic, QoS::AtLeastOnce, false, payload.clone())
                    .is_err()
                {
                    attack_backlog.push_front(payload);
                    break;
                }
            }
        }
        if !input_open {
            break;
        }
    }

    // Drain: close the open batch, give the hub a moment to acknowledge what is in flight.
    sender.close_batch()?;
    sender.sync()?;
    let deadline = Instant::now() + link.drain_timeout;
    while connected && !sender.is_drained() && Instant::now() < deadline {
        for payload in sender.due()? {
            let _ = client.try_publish(&predictions_topic, QoS::AtLeastOnce, false, payload);
        }
        // A session cut short by the stop says so.
        while let Ok(r) = attack_reports.try_recv() {
            attack_backlog.push_back(fleet::payload(&r));
        }
        while let Some(payload) = attack_backlog.pop_front() {
            let _ = client.try_publish(&attack_topic, QoS::AtLeastOnce, false, payload);
        }
        match tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
            Ok(Some(LinkEvent::Ack(ack))) => sender.acked(ack, Instant::now())?,
            Ok(Some(LinkEvent::Down(_))) | Ok(None) => connected = false,
            // Commands wait for the next run; a model in flight is loaded from disk then.
            Ok(Some(LinkEvent::Up | LinkEvent::Command(_) | LinkEvent::Rolled(_) | LinkEvent::Finished(..)))
            | Err(_) => sender.tick(Instant::now())?,
        }
    }
    if connected {
        let _ = client.try_publish(
            &status_topic,
            QoS::AtLeastOnce,
            true,
            link.status(AgentState::Offline, None),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = client.try_disconnect();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    poller.abort();
    sender.sync()?;
    report.sender = sender.stats();
    Ok(report)
}
