//! Detection: completed flows → per-device windows → batched tract scoring → detections.
//!
//! Windows that become ready together are scored in one tract run: up to `batch` of them
//! wait in `pending`, and the caller flushes on a timer (live capture) or at the end of a
//! file, so a quiet network still gets its verdicts promptly. The same timer
//! ([`Detector::tick`]) makes the partial windows of quiet devices with fewer than 10 flows
//! ready, and [`Detector::finish`] those still waiting when the data ends.

pub mod monitor;
pub mod window;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use gatewatch_models::data::Network;
use gatewatch_models::score::Label;
use gatewatch_models::{Model, FAMILIES, FAMILY_COUNT};
use gatewatch_proto::{Detection, FlowRecord};

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
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Swaps in another model; windows already collected are kept (the features do not
    /// depend on the model), so no flow is lost across a model update.
    pub fn set_model(&mut self, model: Arc<Model>) {
        self.model = model;
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
        self.windows.push(flow, &mut self.pending);
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
        let seconds = started.elapsed().as_secs_f64();
        self.stats.batches += 1;
        self.stats.inference_seconds += seconds;
        let version = &self.model.metadata().model_version;
        for (window, p) in ready.into_iter().zip(predictions) {
            let attack = p.label == Label::Attack;
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
            });
        }
        // Keep the capacity: batches come again and again.
        self.pending.reserve(self.batch);
        Ok(())
    }
}
