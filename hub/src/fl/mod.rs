//! Federated learning at the hub: one supervised run at a time. The hub picks a key
//! committee among online agents, relays their key exchange (it never holds a secret key or
//! a share of one), sends each round to selected clients, adds their CKKS-encrypted updates as
//! they arrive, has `t` committee members decrypt only the sum, applies the average update,
//! stores the result as a new model version and records every round and client. Protocol
//! state lives in [`relay`]; the run's sequence in [`run`].

pub mod relay;
mod run;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::Db;
use crate::model::ModelStore;
use crate::ws::Broadcaster;

/// When a round's new model replaces the active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activate {
    /// Never by itself: an admin activates a version (PUT /settings/active_model).
    #[default]
    Manual,
    /// When the clients' validation figures say it is no worse than the active model: weighted
    /// F1 does not drop and no family's recall drops by more than 0.02.
    IfBetter,
}

/// A run's parameters (`POST /fl/start`), with defaults for what is left out.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RunParams {
    pub num_rounds: u32,
    /// Uploads a round needs to be aggregated (at least 2: one update is never decrypted alone).
    pub min_clients: u32,
    pub local_epochs: u32,
    /// Share of online agents selected per round (at least `min_clients`).
    pub fraction: f64,
    /// Seconds a round waits for uploads.
    pub deadline_secs: u32,
    pub committee_size: u8,
    pub threshold: u8,
    pub learning_rate: f64,
    pub batch_size: u32,
    /// L2 norm updates are clipped to.
    pub clip_norm: f32,
    /// Largest weight (training windows) one update counts for.
    pub max_weight: u32,
    pub activate: Activate,
    /// The run stops after this many failed rounds.
    pub max_failed_rounds: u32,
    /// CKKS parameter set (`gw-4096`, `gw-8192`, `gw-16384`).
    pub ckks_params: String,
}

impl Default for RunParams {
    fn default() -> Self {
        RunParams {
            num_rounds: 3,
            min_clients: 2,
            local_epochs: 2,
            fraction: 1.0,
            deadline_secs: 300,
            committee_size: 3,
            threshold: 2,
            learning_rate: 1e-3,
            batch_size: 64,
            clip_norm: 10.0,
            max_weight: 10_000,
            activate: Activate::Manual,
            max_failed_rounds: 3,
            ckks_params: "gw-8192".into(),
        }
    }
}

impl RunParams {
    /// The first parameter out of range, as (field, what it takes).
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let bad = |f: &'static str, m: &str| Err((f, m.to_string()));
        if !(1..=1000).contains(&self.num_rounds) {
            return bad("num_rounds", "1-1000");
        }
        if !(2..=10_000).contains(&self.min_clients) {
            return bad("min_clients", "2-10000 (one update is never decrypted alone)");
        }
        if self.local_epochs > 100 {
            return bad("local_epochs", "0-100 (0: measure only)");
        }
        if !(self.fraction > 0.0 && self.fraction <= 1.0) {
            return bad("fraction", "above 0, at most 1");
        }
        if !(10..=86_400).contains(&self.deadline_secs) {
            return bad("deadline_secs", "10-86400");
        }
        if !(1..=gatewatch_ckks::MAX_COMMITTEE).contains(&self.committee_size) {
            return bad("committee_size", "1-16");
        }
        if self.threshold == 0 || self.threshold > self.committee_size {
            return bad("threshold", "1 to committee_size");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad("learning_rate", "above 0, at most 1");
        }
        if !(1..=4096).contains(&self.batch_size) {
            return bad("batch_size", "1-4096");
        }
        if !(self.clip_norm > 0.0 && self.clip_norm.is_finite()) {
            return bad("clip_norm", "a positive number");
        }
        if self.max_weight == 0 {
            return bad("max_weight", "1 or more");
        }
        if gatewatch_ckks::ParamSetId::ALL
            .iter()
            .all(|p| p.name() != self.ckks_params)
        {
            return bad("ckks_params", "gw-4096, gw-8192 or gw-16384");
        }
        Ok(())
    }
}

/// A committee seat as `/fl/status` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemberStatus {
    pub member: u8,
    pub agent_id: Uuid,
    pub online: bool,
}

/// What `/fl/status` tells.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// `idle`, `keygen`, `training`, `aggregating` or `decrypting`.
    pub state: &'static str,
    pub run_id: Option<Uuid>,
    /// Round within the run (1-based).
    pub round: Option<u64>,
    pub num_rounds: Option<u32>,
    pub epoch: Option<u64>,
    pub clients_selected: usize,
    pub clients_uploaded: usize,
    pub committee: Vec<MemberStatus>,
    pub deadline: Option<DateTime<Utc>>,
    /// The global model the round trains.
    pub global_model: Option<String>,
    /// How the last run ended, or what the current one waits for.
    pub message: Option<String>,
}

impl Default for Status {
    fn default() -> Self {
        Status {
            state: "idle",
            run_id: None,
            round: None,
            num_rounds: None,
            epoch: None,
            clients_selected: 0,
            clients_uploaded: 0,
            committee: Vec::new(),
            deadline: None,
            global_model: None,
            message: None,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct FlStats {
    pub updates_accepted: AtomicU64,
    pub updates_rejected: AtomicU64,
    pub update_bytes: AtomicU64,
    pub rounds_completed: AtomicU64,
    pub rounds_failed: AtomicU64,
    /// Microseconds spent adding updates to aggregates.
    pub aggregate_micros: AtomicU64,
}

/// Why a run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("a training run is in progress ({0}); stop it first")]
    Running(Uuid),
    #[error("federated learning needs the hub's own broker and QUIC endpoint (broker = \"embedded\")")]
    NoFleetLink,
    #[error("{0}")]
    Db(String),
}

/// The hub's federated-learning coordinator.
#[derive(Debug)]
pub struct Coordinator {
    db: Db,
    models: Arc<ModelStore>,
    events: Arc<Broadcaster>,
    publisher: OnceLock<rumqttc::AsyncClient>,
    pub(crate) relay: tokio::sync::Mutex<Option<relay::State>>,
    /// Woken when the relay state changes (an upload, a share, a key).
    pub(crate) progress: tokio::sync::Notify,
    status: Mutex<Status>,
    /// The running run and its stop switch.
    running: Mutex<Option<(Uuid, Arc<AtomicBool>)>>,
    pub stats: FlStats,
}

impl Coordinator {
    pub fn new(db: Db, models: Arc<ModelStore>, events: Arc<Broadcaster>) -> Coordinator {
        Coordinator {
            db,
            models,
            events,
            publisher: OnceLock::new(),
            relay: tokio::sync::Mutex::new(None),
            progress: tokio::sync::Notify::new(),
            status: Mutex::new(Status::default()),
            running: Mutex::new(None),
            stats: FlStats::default(),
        }
    }

    /// Called once the fleet link runs: commands to agents go through this client.
    pub fn set_publisher(&self, client: rumqttc::AsyncClient) {
        let _ = self.publisher.set(client);
    }

    pub fn status(&self) -> Status {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn update_status(&self, f: impl FnOnce(&mut Status)) {
        let snapshot = {
            let mut s = match self.status.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            f(&mut s);
            s.clone()
        };
        self.events.publish("fl.status", &snapshot, &[crate::ws::Topic::Fl]);
    }

    /// Starts a supervised run; returns its id.
    pub async fn start(self: &Arc<Self>, params: RunParams, user: Option<Uuid>) -> Result<Uuid, StartError> {
        let client = self.publisher.get().cloned().ok_or(StartError::NoFleetLink)?;
        let run_id = Uuid::now_v7();
        let stop = Arc::new(AtomicBool::new(false));
        {
            let mut running = match self.running.lock() {
                Ok(r) => r,
                Err(p) => p.into_inner(),
            };
            if let Some((id, _)) = running.as_ref() {
                return Err(StartError::Running(*id));
            }
            *running = Some((run_id, stop.clone()));
        }
        let start_model = self.models.active_files().map(|(v, _)| v).unwrap_or_default();
        let json = serde_json::to_value(&params).map_err(|e| StartError::Db(e.to_string()));
        let inserted = match json {
            Ok(json) => {
                let model = start_model.clone();
                crate::broker::run(&self.db, move |c| {
                    use crate::db::schema::fl_runs;
                    let epoch: Option<i64> = fl_runs::table.select(diesel::dsl::max(fl_runs::epoch)).first(c)?;
                    let epoch = epoch.unwrap_or(0) + 1;
                    diesel::insert_into(fl_runs::table)
                        .values((
                            fl_runs::id.eq(run_id),
                            fl_runs::status.eq("keygen"),
                            fl_runs::params.eq(json),
                            fl_runs::start_model.eq(model),
                            fl_runs::epoch.eq(epoch),
                            fl_runs::started_by.eq(user),
                        ))
                        .execute(c)?;
                    Ok(epoch)
                })
                .await
                .map_err(StartError::Db)
            }
            Err(e) => Err(e),
        };
        let epoch = match inserted {
            Ok(e) => e as u64,
            Err(e) => {
                self.finish_running(run_id);
                return Err(e);
            }
        };
        self.update_status(|s| {
            *s = Status {
                state: "keygen",
                run_id: Some(run_id),
                num_rounds: Some(params.num_rounds),
                epoch: Some(epoch),
                global_model: Some(start_model),
                ..Status::default()
            }
        });
        tracing::info!(run = %run_id, rounds = params.num_rounds, committee = params.committee_size, "federated learning run started");
        let me = self.clone();
        tokio::spawn(async move {
            run::supervise(me, client, run_id, epoch, params, stop).await;
        });
        Ok(run_id)
    }

    /// Asks the running run to stop; false if none runs.
    pub fn stop(&self) -> Option<Uuid> {
        let running = match self.running.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        running.as_ref().map(|(id, stop)| {
            stop.store(true, Relaxed);
            self.progress.notify_waiters();
            *id
        })
    }

    fn finish_running(&self, run_id: Uuid) {
        let mut running = match self.running.lock() {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        if running.as_ref().is_some_and(|(id, _)| *id == run_id) {
            *running = None;
        }
    }

    /// Sends an operator's verdict to an agent (its local training set); false if the fleet
    /// link cannot carry it.
    pub async fn send_label(&self, agent: Uuid, order: gatewatch_proto::fl::LabelOrder) -> bool {
        use gatewatch_proto::fleet::{self, Action, Channel};
        let Some(client) = self.publisher.get() else {
            return false;
        };
        let payload = fleet::payload(&fleet::Command {
            schema: fleet::SCHEMA,
            action: Action::FlLabel(order),
        });
        client
            .publish(
                fleet::topic(agent, Channel::Command),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .is_ok()
    }

    /// Runs `f` on the relay state of the run in progress (QUIC requests).
    pub async fn with_relay<T>(
        &self,
        f: impl FnOnce(&mut relay::State) -> T,
    ) -> Result<T, gatewatch_proto::bulk::Response> {
        let mut guard = self.relay.lock().await;
        let out = match guard.as_mut() {
            Some(state) => Ok(f(state)),
            None => Err(gatewatch_proto::bulk::Response::Error {
                message: "no federated-learning run is in progress".into(),
            }),
        };
        drop(guard);
        self.progress.notify_waiters();
        out
    }
}
