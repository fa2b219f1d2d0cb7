//! Federated learning on the gateway. The agent keeps a local training set of its own
//! traffic ([`dataset`], filled by [`collect`]), and when the hub asks it takes part in a
//! run: as a key-committee member ([`committee`]) it makes its share of the collective CKKS
//! key and decrypts aggregates, and as a client it trains the global model on its local set
//! plus attack windows it synthesises ([`synth`], [`train`]), encrypts the update under the
//! collective key and uploads it over QUIC with a receipt signed by its enrollment key.
//! Local windows never leave the gateway; only the encrypted update and plaintext metrics do.

pub mod collect;
pub mod committee;
pub mod dataset;
pub mod synth;
pub mod train;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatewatch_ckks::{PublicKey, WireFormat};
use gatewatch_models::{Family, FAMILIES};
use gatewatch_proto::bulk::{Request, Response};
use gatewatch_proto::fl::{ClientMetrics, TrainOrder};
use gatewatch_proto::fleet::Action;
use rand::SeedableRng;

use crate::flow::FlowConfig;
use crate::uplink::bulk::BulkClient;
use crate::uplink::identity::Identity;
use dataset::LocalSet;
use train::Labelled;

/// `[fl]` in the agent's configuration.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FlConfig {
    /// Take part in federated learning when the hub asks.
    pub enabled: bool,
    /// Windows kept in the local training set (oldest out).
    pub max_windows: usize,
    /// Share of the local windows held out for validation.
    pub validation_fraction: f64,
    /// A window scored at most this is a benign pseudo-label.
    pub benign_max_score: f32,
    /// ... if its device had no flagged window within this many seconds.
    pub quiet_secs: u64,
    /// Attack families synthesised for local training (names; empty = none).
    pub synth_families: Vec<String>,
    /// Synthesised windows per family and round.
    pub synth_windows: usize,
    /// A round's local training stops after this many seconds (between epochs).
    pub max_train_seconds: u64,
}

impl Default for FlConfig {
    fn default() -> Self {
        FlConfig {
            enabled: true,
            max_windows: 4000,
            validation_fraction: 0.2,
            benign_max_score: 0.1,
            quiet_secs: 60,
            synth_families: synth::families().iter().map(|f| f.name().to_string()).collect(),
            synth_windows: 150,
            max_train_seconds: 300,
        }
    }
}

impl FlConfig {
    /// The synthesised families, or the name that is not one.
    pub fn families(&self) -> Result<Vec<Family>, String> {
        self.synth_families
            .iter()
            .map(|name| {
                let f = Family::from_label(name)
                    .filter(|f| f.name() == name)
                    .ok_or_else(|| format!("{name:?} is not a family"))?;
                if synth::scenarios(f).is_empty() {
                    return Err(format!("the simulator cannot make {name:?}"));
                }
                Ok(f)
            })
            .collect()
    }
}

/// The FL side of an enrolled agent.
#[derive(Debug)]
pub struct Client {
    identity: Identity,
    bulk: Arc<BulkClient>,
    dir: PathBuf,
    models_dir: PathBuf,
    set: Arc<Mutex<LocalSet>>,
    config: FlConfig,
    families: Vec<Family>,
    flow_config: FlowConfig,
    tap: collect::Tap,
    members: committee::Memberships,
    training: AtomicBool,
    metrics: Arc<crate::metrics::AgentMetrics>,
}

impl Client {
    /// Opens the local set under `state_dir/fl` and starts its collector; hand
    /// [`Client::tap`] to the detector.
    pub fn start(
        state_dir: &Path,
        models_dir: &Path,
        identity: Identity,
        bulk: Arc<BulkClient>,
        config: FlConfig,
        flow_config: FlowConfig,
        metrics: Arc<crate::metrics::AgentMetrics>,
    ) -> Result<Arc<Client>, String> {
        let dir = state_dir.join("fl");
        let families = config.families().map_err(|e| format!("fl.synth_families: {e}"))?;
        let set = Arc::new(Mutex::new(
            LocalSet::open(&dir, config.max_windows, config.validation_fraction).map_err(|e| e.to_string())?,
        ));
        let tap = collect::start(
            set.clone(),
            collect::Rules {
                benign_max_score: config.benign_max_score,
                quiet: Duration::from_secs(config.quiet_secs),
                per_device_gap: Duration::from_secs(1),
            },
            Duration::from_secs(30),
        );
        let client = Arc::new(Client {
            members: committee::Memberships::new(&dir),
            identity,
            bulk,
            dir,
            models_dir: models_dir.to_path_buf(),
            set,
            config,
            families,
            flow_config,
            tap,
            training: AtomicBool::new(false),
            metrics,
        });
        client.publish_composition();
        Ok(client)
    }

    pub fn tap(&self) -> collect::Tap {
        self.tap.clone()
    }

    /// Runs an FL order from the hub in the background; answers go back over QUIC.
    pub fn handle(self: &Arc<Self>, action: Action) {
        let me = self.clone();
        match action {
            Action::FlKeygen(order) => {
                tokio::spawn(async move {
                    me.members.retain(order.run_id).await;
                    if let Err(e) = me.members.keygen(&order, &me.identity, &me.bulk).await {
                        tracing::warn!(run = %order.run_id, epoch = order.epoch, error = %e, "committee keygen failed");
                    }
                });
            }
            Action::FlDecrypt(order) => {
                tokio::spawn(async move {
                    if let Err(e) = me.members.decrypt(&order, &me.identity, &me.bulk).await {
                        tracing::warn!(run = %order.run_id, round = order.round, error = %e, "decryption share not given");
                    }
                });
            }
            Action::FlTrain(order) => {
                if me.training.swap(true, Ordering::AcqRel) {
                    tracing::warn!(round = order.round, "a round is training already; this one is declined");
                    tokio::spawn(async move {
                        me.decline(&order, "a round is training already").await;
                    });
                    return;
                }
                tokio::spawn(async move {
                    let outcome = me.round(&order).await;
                    me.training.store(false, Ordering::Release);
                    match outcome {
                        Ok(()) => {}
                        Err(reason) => {
                            tracing::warn!(run = %order.run_id, round = order.round, %reason, "FL round not completed");
                            me.decline(&order, &reason).await;
                        }
                    }
                });
            }
            Action::FlLabel(order) => match Family::from_label(&order.family).filter(|f| f.name() == order.family) {
                Some(family) => self.tap.label(order.windows, family),
                None => tracing::warn!(family = %order.family, "an operator label names no family"),
            },
            _ => {}
        }
    }

    async fn decline(&self, order: &TrainOrder, reason: &str) {
        let _ = self
            .bulk
            .exchange(
                &Request::FlDeclined {
                    run_id: order.run_id,
                    round: order.round,
                    reason: reason.to_string(),
                },
                &[],
            )
            .await;
    }

    /// One round as a client: model, key, local training, encrypted upload.
    async fn round(self: &Arc<Self>, order: &TrainOrder) -> Result<(), String> {
        let global = self.global(&order.model_version).await?;
        let compare = match &order.compare_with {
            Some(v) => Some(self.global(v).await?),
            None => None,
        };
        if order.local_epochs == 0 {
            let me = self.clone();
            let order2 = order.clone();
            let metrics = tokio::task::spawn_blocking(move || me.evaluate_blocking(&order2, &global, compare.as_ref()))
                .await
                .map_err(|e| e.to_string())??;
            let (response, _) = self
                .bulk
                .exchange(
                    &Request::FlEvaluated {
                        run_id: order.run_id,
                        round: order.round,
                        metrics,
                    },
                    &[],
                )
                .await
                .map_err(|e| e.to_string())?;
            return match response {
                Response::Ok => Ok(()),
                other => Err(format!("the hub did not take the figures: {other:?}")),
            };
        }
        let (response, key_bytes) = self
            .bulk
            .exchange(
                &Request::FlPublicKey {
                    run_id: order.run_id,
                    epoch: order.epoch,
                },
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        if !matches!(response, Response::Blob { .. }) {
            return Err(format!("no collective key: {response:?}"));
        }
        let key = PublicKey::from_bytes(&key_bytes).map_err(|e| e.to_string())?;
        let me = self.clone();
        let order2 = order.clone();
        let (trained, metrics_base) =
            tokio::task::spawn_blocking(move || me.train_blocking(&order2, &global, compare.as_ref()))
                .await
                .map_err(|e| e.to_string())??;
        let now_ms = crate::pipeline::wall_clock_ns() / 1_000_000;
        if now_ms > order.deadline_ms {
            return Err(format!(
                "training ended {} ms after the round's deadline",
                now_ms - order.deadline_ms
            ));
        }
        let weight = metrics_base.samples.clamp(1, order.max_weight.max(1));
        let update = tokio::task::spawn_blocking(move || gatewatch_ckks::encrypt_update(&key, &trained.update, weight))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let mut receipt = update.receipt(order.round, &self.identity.agent_id.to_string());
        receipt.signature = self.identity.sign(&receipt.signed_bytes()).map_err(|e| e.to_string())?;
        let bytes = update.to_bytes();
        let metrics = ClientMetrics {
            upload_bytes: bytes.len() as u64,
            ..metrics_base
        };
        let (response, _) = self
            .bulk
            .exchange(
                &Request::FlUpdate {
                    run_id: order.run_id,
                    round: order.round,
                    receipt,
                    metrics: metrics.clone(),
                    len: bytes.len() as u64,
                },
                &bytes,
            )
            .await
            .map_err(|e| e.to_string())?;
        if response != Response::Ok {
            return Err(format!("the hub did not take the update: {response:?}"));
        }
        self.metrics.fl_rounds.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            run = %order.run_id,
            round = order.round,
            samples = metrics.samples,
            f1_before = metrics.before.f1,
            f1_after = metrics.after.f1,
            seconds = metrics.train_seconds,
            bytes = metrics.upload_bytes,
            "FL update uploaded"
        );
        Ok(())
    }

    /// The model `version` from the models directory, fetched from the hub if missing.
    async fn global(&self, version: &str) -> Result<train::Global, String> {
        let dir = self.models_dir.join(version);
        if !dir.join(gatewatch_models::store::PARAMS_FILE).is_file() {
            self.bulk
                .fetch_model(version, &self.models_dir)
                .await
                .map_err(|e| format!("model {version}: {e}"))?;
        }
        tokio::task::spawn_blocking(move || train::Global::load(&dir))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Measures the global (and the compared) model on the local validation windows.
    fn evaluate_blocking(
        &self,
        order: &TrainOrder,
        global: &train::Global,
        compare: Option<&train::Global>,
    ) -> Result<ClientMetrics, String> {
        let (train_s, val_s, composition) = self.round_samples(order, global)?;
        let before = train::evaluate_model(global, &val_s)?;
        let compared = match compare {
            Some(c) => Some(train::evaluate_model(c, &val_s)?),
            None => None,
        };
        Ok(ClientMetrics {
            samples: train_s.len() as u32,
            validation_windows: val_s.len() as u32,
            after: before.clone(),
            before,
            composition,
            compared,
            ..Default::default()
        })
    }

    /// Builds the round's windows and trains (blocking; lowest priority).
    fn train_blocking(
        &self,
        order: &TrainOrder,
        global: &train::Global,
        compare: Option<&train::Global>,
    ) -> Result<(train::Trained, ClientMetrics), String> {
        let (train_s, val_s, composition) = self.round_samples(order, global)?;
        let settings = train::Settings {
            epochs: order.local_epochs,
            learning_rate: order.learning_rate,
            batch_size: order.batch_size,
            clip_norm: order.clip_norm,
            max_seconds: Duration::from_secs(self.config.max_train_seconds),
            seed: order.round,
        };
        let compared = match compare {
            Some(c) => Some(train::evaluate_model(c, &val_s)?),
            None => None,
        };
        let trained = train::train_round(global, &train_s, &val_s, settings)?;
        let metrics = ClientMetrics {
            samples: train_s.len() as u32,
            validation_windows: val_s.len() as u32,
            before: trained.before.clone(),
            after: trained.after.clone(),
            train_seconds: trained.seconds,
            upload_bytes: 0,
            composition,
            compared,
        };
        Ok((trained, metrics))
    }

    /// The local windows and this round's synthesised attack windows, scaled for `global`,
    /// as (train, validation, windows per family).
    #[allow(clippy::type_complexity)]
    fn round_samples(
        &self,
        order: &TrainOrder,
        global: &train::Global,
    ) -> Result<
        (
            Vec<gatewatch_models::data::Sample>,
            Vec<gatewatch_models::data::Sample>,
            std::collections::BTreeMap<String, u32>,
        ),
        String,
    > {
        let (mut train_w, mut val_w, devices) = {
            let set = match self.set.lock() {
                Ok(s) => s,
                Err(p) => p.into_inner(),
            };
            let mut t = Vec::new();
            let mut v = Vec::new();
            let mut devices = Vec::new();
            for e in set.entries() {
                let l = Labelled {
                    window: e.window.clone(),
                    padded: e.padded,
                    family: e.family,
                };
                if e.validation {
                    v.push(l);
                } else {
                    t.push(l);
                }
                if !devices.contains(&e.device) {
                    devices.push(e.device);
                }
            }
            (t, v, devices)
        };
        // Attack windows made for this round from the real benign ones.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(order.round ^ crate::pipeline::wall_clock_ns() as u64);
        let target = synth::target(devices);
        let benign: Vec<gatewatch_models::Window> = train_w
            .iter()
            .filter(|l| l.family == Family::Benign && l.padded == 0)
            .map(|l| *l.window)
            .collect();
        let benign_refs: Vec<&gatewatch_models::Window> = benign.iter().collect();
        for (i, family) in self.families.iter().enumerate() {
            let scenarios = synth::scenarios(*family);
            let per = self.config.synth_windows.div_ceil(scenarios.len());
            for (j, attack) in scenarios.iter().enumerate() {
                let seed = order.round.wrapping_mul(131).wrapping_add((i * 16 + j) as u64);
                let rows = synth::attack_rows(target, *attack, seed, self.flow_config)?;
                let made = synth::windows(*family, &rows, &benign_refs, per, &mut rng);
                let held = (made.len() as f64 * self.config.validation_fraction).round() as usize;
                for (k, w) in made.into_iter().enumerate() {
                    if k < held {
                        val_w.push(w);
                    } else {
                        train_w.push(w);
                    }
                }
            }
        }
        let mut composition = std::collections::BTreeMap::new();
        for l in train_w.iter().chain(&val_w) {
            *composition.entry(l.family.name().to_string()).or_insert(0u32) += 1;
        }
        let train_s = train::samples(&train_w, &global.scaler);
        let val_s = train::samples(&val_w, &global.scaler);
        Ok((train_s, val_s, composition))
    }

    /// Publishes the local set's composition in the agent's metrics.
    pub fn publish_composition(&self) {
        let set = match self.set.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        let c = set.composition();
        for (i, f) in FAMILIES.iter().enumerate() {
            let n = c.get(f.name()).copied().unwrap_or(0);
            self.metrics.fl_local_windows[i].store(u64::from(n), Ordering::Relaxed);
        }
    }

    /// Where the local set lives (deleted by `purge`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
