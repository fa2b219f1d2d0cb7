//! Detection: completed flows → per-device windows → batched tract scoring → detections.
//!
//! Windows that become ready together are scored in one tract run: up to `batch` of them
//! wait in `pending`, and the caller flushes on a timer (live capture) or at the end of a
//! file, so a quiet network still gets its verdicts promptly. The same timer
//! ([`Detector::tick`]) makes the partial windows of quiet devices with fewer than 10 flows
//! ready, and [`Detector::finish`] those still waiting when the data ends.

pub mod monitor;
pub mod window;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use gatewatch_models::data::Network;
use gatewatch_models::score::{Label, Prediction};
use gatewatch_models::{Model, FAMILIES, FAMILY_COUNT, FEATURE_COUNT};
use gatewatch_proto::detection::SimulationMark;
use gatewatch_proto::{Detection, FlowRecord};
use uuid::Uuid;

pub use window::{ReadyWindow, WindowStats, Windows};

/// Quiet time after which a device with fewer than 10 flows is scored: 5 s.
pub const DEFAULT_PARTIAL_AFTER_NS: i64 = 5_000_000_000;

/// How the detector groups and batches.
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// Addresses that are monitored devices.
    pub networks: Vec<Network>,
    /// Devices started or stopped from the hub.
    pub overrides: monitor::Overrides,
    /// Windows scored together at most.
    pub batch: usize,
    pub max_devices: usize,
    /// A device without flows for this long is forgotten (its window starts over).
    pub device_idle_ns: i64,
    /// A device with fewer than 10 flows is scored on a padded window after this long
    /// without a new flow (0: only when the data ends).
    pub partial_after_ns: i64,
}

impl DetectConfig {
    pub fn new(networks: Vec<Network>) -> DetectConfig {
        DetectConfig {
            networks,
            overrides: monitor::Overrides::default(),
            batch: 64,
            max_devices: 65_536,
            device_idle_ns: 3_600 * 1_000_000_000,
            partial_after_ns: DEFAULT_PARTIAL_AFTER_NS,
        }
    }
}

/// Totals for summaries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DetectStats {
    pub windows: WindowStats,
    pub scored: u64,
    /// Of the scored windows, partial ones (a device with fewer than 10 flows).
    pub scored_partial: u64,
    pub attacks: u64,
    /// Attack windows per most probable family, in [`FAMILIES`] order.
    pub attacks_per_family: [u64; FAMILY_COUNT],
    pub batches: u64,
    /// Windows lost to a model error.
    pub failed: u64,
    /// Wall time spent in tract.
    pub inference_seconds: f64,
}

/// An attack-simulation step whose flows reach the detector marked (see
/// [`Detector::push_marked`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SimStep {
    pub session_id: Uuid,
    /// 1-based position in its session.
    pub order: u32,
    /// FGSM budget: the step's windows are perturbed before they are scored.
    pub epsilon: Option<f32>,
    /// The simulator's family for the step's windows (the local training set's label).
    pub family: Option<gatewatch_models::Family>,
}

/// The active model as a differentiable network, for FGSM against it.
pub struct Adversary {
    net: gatewatch_models::Net,
    floor: [f32; FEATURE_COUNT],
    model_version: String,
}

impl std::fmt::Debug for Adversary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adversary")
            .field("model_version", &self.model_version)
            .finish()
    }
}

impl Adversary {
    /// The network of `model` from its directory's `params.bin`: the same weights as its
    /// ONNX file, which tract runs.
    pub fn load(dir: &Path, model: &Model) -> Result<Adversary, String> {
        let version = &model.metadata().model_version;
        let (flat, _, metadata) = gatewatch_models::store::load_training_state(dir).map_err(|e| {
            format!(
                "adversarial steps need the parameters of model {version} ({}): {e}",
                dir.display()
            )
        })?;
        if &metadata.model_version != version {
            return Err(format!(
                "{} holds the parameters of model {}, not of the active model {version}",
                dir.display(),
                metadata.model_version
            ));
        }
        let net = gatewatch_models::Net::from_flat(&flat).map_err(|e| e.to_string())?;
        Ok(Adversary {
            net,
            floor: gatewatch_models::fgsm::scaled_floor(model.scaler()),
            model_version: version.clone(),
        })
    }

    pub fn model_version(&self) -> &str {
        &self.model_version
    }
}

/// Scores the windows of monitored devices as their flows complete.
#[derive(Debug)]
pub struct Detector {
    model: Arc<Model>,
    windows: Windows,
    pending: Vec<ReadyWindow>,
    batch: usize,
    stats: DetectStats,
    /// When the windows' data clock last moved: between flows, [`Detector::tick`] lets it
    /// run on with the wall clock, so a quiet device's partial window is not held back until
    /// some other flow completes.
    clock_moved: (i64, Instant),
    /// Steps of attack-simulation sessions by the mark their flows carry.
    sim_steps: HashMap<u32, SimStep>,
    adversary: Option<Adversary>,
    /// Where scored windows go for the local training set (federated learning).
    fl_tap: Option<crate::fl::collect::Tap>,
}

impl Detector {
    pub fn new(model: Arc<Model>, config: DetectConfig) -> Detector {
        Detector {
            model,
            windows: Windows::new(
                monitor::Monitored::new(config.networks, config.overrides),
                config.max_devices,
                config.device_idle_ns,
            )
            .with_partial_after(config.partial_after_ns),
            pending: Vec::with_capacity(config.batch.max(1)),
            batch: config.batch.max(1),
            stats: DetectStats::default(),
            clock_moved: (i64::MIN, Instant::now()),
            sim_steps: HashMap::new(),
            adversary: None,
            fl_tap: None,
        }
    }

    /// Hands every scored window to the local training set's collector from now on.
    pub fn set_fl_tap(&mut self, tap: Option<crate::fl::collect::Tap>) {
        self.fl_tap = tap;
    }

    /// Names the step behind a mark given to [`Detector::push_marked`].
    pub fn set_sim_step(&mut self, mark: u32, step: SimStep) {
        self.sim_steps.insert(mark, step);
    }

    /// Forgets the steps of other sessions than `keep` (their last windows are long scored).
    pub fn retain_sim_steps(&mut self, keep: Uuid) {
        self.sim_steps.retain(|_, s| s.session_id == keep);
    }

    /// The network FGSM steps are computed against; it must be the active model's.
    pub fn set_adversary(&mut self, adversary: Option<Adversary>) {
        self.adversary = adversary;
    }

    pub fn adversary(&self) -> Option<&Adversary> {
        self.adversary.as_ref()
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The model in use, shared.
    pub fn shared_model(&self) -> Arc<Model> {
        self.model.clone()
    }

    /// Swaps in another model; windows already collected are kept (the features do not
    /// depend on the model), so no flow is lost across a model update.
    pub fn set_model(&mut self, model: Arc<Model>) {
        self.model = model;
        // FGSM against another model than the one scoring would measure nothing.
        if self
            .adversary
            .as_ref()
            .is_some_and(|a| a.model_version != self.model.metadata().model_version)
        {
            self.adversary = None;
        }
    }

    pub fn stats(&self) -> DetectStats {
        DetectStats {
            windows: self.windows.stats(),
            ..self.stats.clone()
        }
    }

    /// Monitors these networks from now on (a configuration reload).
    pub fn set_networks(&mut self, networks: Vec<Network>) {
        self.windows.set_networks(networks);
    }

    /// Applies the hub's start/stop choices (see [`Windows::set_overrides`]).
    pub fn set_overrides(&mut self, overrides: monitor::Overrides) {
        self.windows.set_overrides(overrides);
    }

    /// Whether `ip` is a monitored device.
    pub fn is_device(&self, ip: std::net::IpAddr) -> bool {
        self.windows.is_device(ip)
    }

    /// Windows waiting for the next batch.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds a completed flow; scores a full batch when one is ready.
    pub fn push(&mut self, flow: &FlowRecord, emit: &mut impl FnMut(Detection)) -> Result<(), gatewatch_models::Error> {
        self.push_marked(flow, None, emit)
    }

    /// Adds a flow that an attack-simulation step made for a device (`mark`, named by
    /// [`Detector::set_sim_step`]), or a real one (`None`).
    pub fn push_marked(
        &mut self,
        flow: &FlowRecord,
        mark: Option<(u32, std::net::IpAddr)>,
        emit: &mut impl FnMut(Detection),
    ) -> Result<(), gatewatch_models::Error> {
        self.windows.push_marked(flow, mark, &mut self.pending);
        if self.windows.clock_ns() > self.clock_moved.0 {
            self.clock_moved = (self.windows.clock_ns(), Instant::now());
        }
        if self.pending.len() >= self.batch {
            self.flush(emit)?;
        }
        Ok(())
    }

    /// Makes the partial windows that are due ready, with the data clock moved on by the wall
    /// time since the last flow (sources at their own pace: live capture, paced replay).
    /// Scores a batch if one is full; the caller's timer flushes the rest.
    pub fn tick(&mut self, emit: &mut impl FnMut(Detection)) -> Result<(), gatewatch_models::Error> {
        let (clock, at) = self.clock_moved;
        // Called per packet by paced sources: no clock read when nothing waits.
        if clock == i64::MIN || !self.windows.partial_due() {
            return Ok(());
        }
        let now = clock.saturating_add(i64::try_from(at.elapsed().as_nanos()).unwrap_or(i64::MAX));
        self.windows.advance(now, &mut self.pending);
        if self.pending.len() >= self.batch {
            self.flush(emit)?;
        }
        Ok(())
    }

    /// The data has ended (end of a file, shutdown): scores every waiting partial window and
    /// everything pending.
    pub fn finish(&mut self, emit: &mut impl FnMut(Detection)) -> Result<(), gatewatch_models::Error> {
        self.windows.finish(&mut self.pending);
        self.flush(emit)
    }

    /// Scores every pending window. On a model error the pending windows are dropped
    /// (counted as not scored) so one bad batch cannot wedge the pipeline.
    pub fn flush(&mut self, emit: &mut impl FnMut(Detection)) -> Result<(), gatewatch_models::Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let ready = std::mem::take(&mut self.pending);
        let windows: Vec<gatewatch_models::Window> = ready.iter().map(|r| *r.features).collect();
        let padded: Vec<usize> = ready.iter().map(|r| r.padded).collect();
        let started = Instant::now();
        let predictions = match self.model.score_padded(&windows, &padded) {
            Ok(p) => p,
            Err(e) => {
                self.stats.failed += windows.len() as u64;
                return Err(e);
            }
        };
        let mut perturbed = self.perturbed(&ready, &windows, &padded)?;
        let seconds = started.elapsed().as_secs_f64();
        self.stats.batches += 1;
        self.stats.inference_seconds += seconds;
        let version = &self.model.metadata().model_version;
        for (i, (window, clean)) in ready.into_iter().zip(predictions).enumerate() {
            let (clean_score, clean_attack) = (clean.score, clean.label == Label::Attack);
            let simulation = window
                .simulated
                .and_then(|mark| self.sim_steps.get(&mark))
                .map(|step| SimulationMark {
                    session_id: step.session_id,
                    step: step.order,
                    clean_score: None,
                });
            let (p, simulation) = match perturbed.remove(&i) {
                Some(p) => (
                    p,
                    simulation.map(|m| SimulationMark {
                        clean_score: Some(clean.score),
                        ..m
                    }),
                ),
                None => (clean, simulation),
            };
            let attack = p.label == Label::Attack;
            if let Some(tap) = &self.fl_tap {
                let simulated = window
                    .simulated
                    .and_then(|mark| self.sim_steps.get(&mark))
                    .map(|step| step.family);
                // A simulation window of a step without a single family is not a label.
                if simulated != Some(None) {
                    tap.offer(crate::fl::collect::Scored {
                        device: window.device,
                        window: window.features.clone(),
                        padded: window.padded as u8,
                        score: clean_score,
                        attack: clean_attack,
                        simulated: simulated.flatten(),
                        end_ms: window.span.last_ts_ns / 1_000_000,
                    });
                }
            }
            self.stats.scored += 1;
            self.stats.scored_partial += u64::from(window.padded > 0);
            if attack {
                self.stats.attacks += 1;
                self.stats.attacks_per_family[p.family.index()] += 1;
            }
            let family_probs: BTreeMap<String, f32> = FAMILIES
                .iter()
                .zip(&p.family_probs)
                .map(|(f, &prob)| (f.name().to_string(), prob))
                .collect();
            emit(Detection {
                device: window.device,
                window: window.span,
                score: p.score,
                label: if attack { "attack" } else { "benign" }.into(),
                confidence: p.confidence,
                family: p.family.name().into(),
                family_probs,
                model_version: version.clone(),
                inference_latency_ms: seconds * 1e3,
                peer: Some(window.peer),
                padded_flows: window.padded as u8,
                simulation,
            });
        }
        // Keep the capacity: batches come again and again.
        self.pending.reserve(self.batch);
        Ok(())
    }

    /// The verdicts on the FGSM-perturbed copies of the windows of adversarial simulation
    /// steps, by index in `ready`.
    fn perturbed(
        &self,
        ready: &[ReadyWindow],
        windows: &[gatewatch_models::Window],
        padded: &[usize],
    ) -> Result<HashMap<usize, Prediction>, gatewatch_models::Error> {
        let mut out = HashMap::new();
        let Some(adversary) = &self.adversary else {
            return Ok(out);
        };
        // Windows grouped by budget: one gradient pass per group.
        let mut by_eps: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, r) in ready.iter().enumerate() {
            if let Some(eps) = r.simulated.and_then(|m| self.sim_steps.get(&m)).and_then(|s| s.epsilon) {
                by_eps.entry(eps.to_bits()).or_default().push(i);
            }
        }
        let scaler = self.model.scaler();
        for (eps, idx) in by_eps {
            let scaled: Vec<gatewatch_models::Window> = idx
                .iter()
                .map(|&i| scaler.scale_window_padded(&windows[i], padded[i]))
                .collect();
            let pads: Vec<usize> = idx.iter().map(|&i| padded[i]).collect();
            let moved = gatewatch_models::fgsm::perturb_bounded(
                &adversary.net,
                &scaled,
                &pads,
                f32::from_bits(eps),
                &adversary.floor,
            )?;
            let verdicts = self.model.verdicts(self.model.score_scaled(&moved)?);
            out.extend(idx.into_iter().zip(verdicts));
        }
        Ok(out)
    }
}
