//! `gatewatch-agent run`: the whole agent. A pipeline thread runs source → flows → windows →
//! tract and hands detections to the uplink, which batches them into the disk spool and
//! sends them to the hub over MQTT. A stop request (SIGTERM) ends the source; the uplink
//! then drains what is in flight and the agent exits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatewatch_models::score::{LoadOptions, Model};
use gatewatch_proto::{Detection, FlowRecord};

use crate::prevent::{Engine, PreventConfig, Scored};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::capture::live::LiveOptions;
use crate::capture::sim::{self, AttackType, SimConfig};
use crate::capture::{CaptureFile, Frame};
use crate::config::{AgentConfig, SourceKind};
use crate::detect::monitor::Overrides;
use crate::detect::{DetectConfig, DetectStats, Detector};
use crate::flow::FlowConfig;
use crate::pipeline::{self, Extractor};
use gatewatch_proto::bulk::FlowSource;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("state directory {path}: {source}. Set state_dir (GATEWATCH_STATE_DIR) to a writable directory")]
    State { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot load the model: {source}. Set detect.model_dir (GATEWATCH_MODEL_DIR)")]
    Model {
        path: PathBuf,
        source: gatewatch_models::Error,
    },
    #[error("no model found in ./models/default or /usr/share/gatewatch-agent/model: set detect.model_dir (GATEWATCH_MODEL_DIR)")]
    NoModel,
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Live(#[from] crate::capture::live::LiveError),
    #[error(transparent)]
    File(#[from] crate::capture::file::FileError),
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    #[error("scoring: {0}")]
    Score(#[from] gatewatch_models::Error),
    #[error("prevention: {0}. Or set prevent.enforce = false for a dry run")]
    Prevent(#[from] crate::prevent::NftError),
}

/// The model directory: the configured one, else a source checkout's, else the package's.
pub fn model_dir(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = configured {
        return Some(dir.to_path_buf());
    }
    [
        PathBuf::from("models/default"),
        PathBuf::from("/usr/share/gatewatch-agent/model"),
    ]
    .into_iter()
    .find(|d| d.join(gatewatch_models::store::ONNX_FILE).is_file())
}

pub fn load_model(config: &AgentConfig) -> Result<Model, RunError> {
    // A model the hub rolled out wins over the configured one; one that no longer loads does not.
    if let Some(dir) = crate::uplink::rollout::current_model(&config.state_dir.join("models")) {
        match Model::load_with(
            &dir,
            LoadOptions {
                batch: config.detect.batch,
            },
        ) {
            Ok(m) => return Ok(m),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "the rolled-out model does not load; using the configured one")
            }
        }
    }
    let dir = model_dir(config.detect.model_dir.as_deref()).ok_or(RunError::NoModel)?;
    Model::load_with(
        &dir,
        LoadOptions {
            batch: config.detect.batch,
        },
    )
    .map_err(|source| RunError::Model { path: dir, source })
}

/// Reads a UUID kept in `path`, or makes a new UUIDv7 and keeps it there (mode 0600).
pub fn persistent_id(path: &Path) -> Result<Uuid, RunError> {
    let state_err = |source| RunError::State {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Uuid::parse_str(text.trim()).map_err(|e| {
            state_err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("not an id ({e}); delete the file to make a new one"),
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(state_err)?;
            }
            let id = Uuid::now_v7();
            write_private(path, id.to_string().as_bytes()).map_err(state_err)?;
            Ok(id)
        }
        Err(e) => Err(state_err(e)),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// What the pipeline did, for the exit summary.
#[derive(Debug, Clone, Default)]
pub struct PipelineReport {
    pub packets: u64,
    pub flows: u64,
    pub detect: DetectStats,
}

/// What the running pipeline can be told.
#[derive(Debug)]
pub enum PipelineUpdate {
    /// Score with this model from the next batch on.
    Model(Arc<Model>),
    /// Monitor these networks (`detect.devices` after SIGHUP).
    Devices(Vec<gatewatch_models::data::Network>),
    /// The devices started and stopped from the hub.
    Overrides(Overrides),
    /// Replay a capture through the pipeline beside the running source.
    Replay(ReplayRequest),
    /// The hub's prevention rules, replacing the previous ones.
    Rules(Vec<gatewatch_proto::fleet::Rule>),
    /// Run an attack-simulation session beside the running source.
    Attack(crate::attack::AttackRequest),
}

/// A capture to replay; `done` gets the outcome once its last flow is in the detector.
#[derive(Debug)]
pub struct ReplayRequest {
    pub path: PathBuf,
    /// The device the operator uploaded it for (counted in the report).
    pub device: std::net::IpAddr,
    pub done: tokio::sync::oneshot::Sender<Result<ReplayReport, String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub packets: u64,
    pub flows: u64,
    /// Flows to or from the device.
    pub device_flows: u64,
}

/// A replay in progress: its thread reads and paces the capture, the pipeline takes its flows.
struct Replay {
    flows: std::sync::mpsc::Receiver<FlowRecord>,
    thread: Option<std::thread::JoinHandle<Result<u64, String>>>,
    device: std::net::IpAddr,
    report: ReplayReport,
    done: Option<tokio::sync::oneshot::Sender<Result<ReplayReport, String>>>,
}

/// Flows a replay may have waiting for the pipeline; the replay thread waits beyond that.
const REPLAY_QUEUE: usize = 4096;

/// Reads a capture as if it were happening now: times are shifted so that its first packet is
/// now (flows then carry current times) and packets are paced at `speed`. `each` gets every
/// packet and says whether to go on.
fn read_as_now(
    file: &mut CaptureFile,
    speed: f64,
    stopped: &impl Fn() -> bool,
    mut each: impl FnMut(&Frame<'_>) -> bool,
) -> Result<(), crate::capture::file::FileError> {
    let mut pacer = Pacer::new(speed);
    let mut first_offset: Option<i64> = None;
    file.for_each(|frame| {
        let offset = *first_offset.get_or_insert(pipeline::wall_clock_ns() - frame.ts_ns);
        let shifted = Frame {
            ts_ns: frame.ts_ns + offset,
            ..*frame
        };
        pacer.wait(shifted.ts_ns, stopped) && each(&shifted)
    })?;
    Ok(())
}

/// Reads `path` into flows as the pipeline's sources do (times shifted to now, paced at
/// `speed`); returns the number of packets.
fn replay_capture(
    path: &Path,
    flow_config: FlowConfig,
    speed: f64,
    out: std::sync::mpsc::SyncSender<FlowRecord>,
    stop: &AtomicBool,
) -> Result<u64, String> {
    let stopped = || stop.load(Ordering::Relaxed);
    let mut extractor = Extractor::new(flow_config);
    let mut file = CaptureFile::open(path).map_err(|e| e.to_string())?;
    let (mut packets, mut gone) = (0u64, false);
    read_as_now(&mut file, speed, &stopped, |frame| {
        packets += 1;
        extractor.push(frame, &mut |rec| gone |= out.send(rec).is_err());
        !gone
    })
    .map_err(|e| e.to_string())?;
    if stopped() {
        return Err("the agent stopped before the end of the capture".into());
    }
    extractor.flush(&mut |rec| {
        let _ = out.send(rec);
    });
    Ok(packets)
}

/// The pipeline's connections to the rest of the agent.
#[derive(Debug)]
pub struct PipelineLinks {
    /// Detections with what prevention did about them out, to the uplink.
    pub detections: mpsc::Sender<Scored>,
    /// How the hub's prevention rules are applied.
    pub prevent: PreventConfig,
    /// Models rolled out by the hub and reloaded settings, in.
    pub updates: std::sync::mpsc::Receiver<PipelineUpdate>,
    /// Flow records of monitored devices out, if they are uploaded.
    pub flows: Option<crate::uplink::flows::FlowTap>,
    /// Where the pipeline's counters are copied for the metrics endpoint.
    pub metrics: Arc<crate::metrics::AgentMetrics>,
    /// Progress of attack-simulation sessions out, to the uplink.
    pub attack_reports: mpsc::UnboundedSender<gatewatch_proto::fleet::AttackReport>,
    /// Scored windows out, to the local training set (federated learning).
    pub fl_tap: Option<crate::fl::collect::Tap>,
}

/// Runs the source until `stop` is set (or a pcap source fails), sending detections on
/// `out`. Runs on its own thread: capture and scoring are blocking work.
pub fn pipeline(
    config: &AgentConfig,
    model: Arc<Model>,
    links: PipelineLinks,
    stop: Arc<AtomicBool>,
) -> Result<PipelineReport, RunError> {
    let flow_config = FlowConfig {
        mode: config.mode()?,
        ..FlowConfig::default()
    };
    let mut detect_config = DetectConfig::new(config.networks()?);
    detect_config.batch = config.detect.batch;
    detect_config.partial_after_ns = i64::try_from(config.detect.partial_after_ms)
        .unwrap_or(i64::MAX / 1_000_000)
        .saturating_mul(1_000_000);
    let overrides_path = config.state_dir.join(crate::detect::monitor::FILE);
    detect_config.overrides = Overrides::load(&overrides_path).map_err(|source| RunError::State {
        path: overrides_path,
        source,
    })?;
    let rules = crate::prevent::load_rules(&config.state_dir).map_err(|source| RunError::State {
        path: config.state_dir.join(crate::prevent::RULES_FILE),
        source,
    })?;
    let prevent = Engine::new(&links.prevent, rules)?;
    tracing::info!(
        rules = prevent.rules().len(),
        dry_run = prevent.is_dry_run(),
        "prevention ready"
    );
    let mut stage = Stage {
        prevent,
        replays: Vec::new(),
        flow_config,
        replay_speed: config.source.replay_speed,
        stop: stop.clone(),
        detector: Detector::new(model, detect_config),
        updates: links.updates,
        flow_tap: links.flows,
        metrics: links.metrics,
        last_metrics: Instant::now(),
        out: links.detections,
        max_wait: config.max_wait(),
        last_flush: Instant::now(),
        flows: 0,
        packets: 0,
        closed: false,
        attack: None,
        next_mark: 1,
        attack_reports: links.attack_reports,
        model_dirs: [
            crate::uplink::rollout::current_model(&config.state_dir.join("models")),
            model_dir(config.detect.model_dir.as_deref()),
        ]
        .into_iter()
        .flatten()
        .collect(),
    };
    stage.detector.set_fl_tap(links.fl_tap);
    let stopped = || stop.load(Ordering::Relaxed);
    match config.source.kind {
        SourceKind::Interface => {
            let options = LiveOptions {
                interface: config.source.interface.clone().unwrap_or_default(),
                filter: config.source.filter.clone(),
                ..LiveOptions::default()
            };
            let cell = std::cell::RefCell::new(&mut stage);
            let mut emit = |rec: FlowRecord| cell.borrow_mut().flow(&rec);
            let (summary, _) = pipeline::run_live(&options, flow_config, &mut emit, |_| {
                let mut stage = cell.borrow_mut();
                stage.tick();
                stopped() || stage.closed
            })?;
            stage.packets = summary.read.frames;
        }
        SourceKind::Pcap => {
            let path = config.source.pcap.clone().unwrap_or_default();
            let speed = config.source.replay_speed;
            let cell = std::cell::RefCell::new(&mut stage);
            // Commands and timers are served while the pacer waits for the next packet.
            let waiting = || {
                let mut stage = cell.borrow_mut();
                stage.tick();
                stopped() || stage.closed
            };
            while !waiting() {
                let mut extractor = Extractor::new(flow_config);
                let mut file = CaptureFile::open(&path)?;
                // The pacer ticks the stage before every packet (`waiting`).
                read_as_now(&mut file, speed, &waiting, |frame| {
                    let mut stage = cell.borrow_mut();
                    stage.packets += 1;
                    extractor.push(frame, &mut |rec| stage.flow(&rec));
                    !stage.closed
                })?;
                extractor.flush(&mut |rec| cell.borrow_mut().flow(&rec));
            }
        }
        SourceKind::Simulator => {
            let mut extractor = Extractor::new(flow_config);
            let period = Duration::from_secs(config.source.attack_every_secs);
            let mut cycle: u64 = 0;
            while !stopped() && !stage.closed {
                // Benign and attack periods alternate; attacks rotate through every type.
                let attack = (cycle % 2 == 1).then(|| AttackType::ALL[(cycle / 2) as usize % AttackType::ALL.len()]);
                let mut cfg = SimConfig::new(config.source.simulator_target);
                cfg.attack = attack;
                cfg.intensity = config.source.simulator_intensity;
                cfg.duration = period;
                cfg.seed = config.source.simulator_seed.wrapping_add(cycle);
                cfg.start_ns = pipeline::wall_clock_ns();
                let simulation = sim::simulate(&cfg)?;
                tracing::info!(cycle, scenario = %attack.map_or_else(|| "benign".to_string(), |a| a.to_string()), packets = simulation.frames.len(), "simulating");
                let mut pacer = Pacer::new(1.0);
                {
                    let cell = std::cell::RefCell::new(&mut stage);
                    // Commands and timers are served while the pacer waits for the next packet.
                    let waiting = || {
                        let mut stage = cell.borrow_mut();
                        stage.tick();
                        stopped() || stage.closed
                    };
                    for frame in &simulation.frames {
                        if !pacer.wait(frame.ts_ns, &waiting) {
                            break;
                        }
                        // The pacer has ticked the stage before this packet (`waiting`).
                        let mut stage = cell.borrow_mut();
                        stage.packets += 1;
                        extractor.push(&frame.as_frame(), &mut |rec| stage.flow(&rec));
                    }
                }
                extractor.advance(pipeline::wall_clock_ns(), &mut |rec| stage.flow(&rec));
                cycle += 1;
            }
            extractor.flush(&mut |rec| stage.flow(&rec));
        }
    }
    stage.finish()?;
    Ok(PipelineReport {
        packets: stage.packets,
        flows: stage.flows,
        detect: stage.detector.stats(),
    })
}

/// Hands a detection to the uplink with what the prevention rules did about it; notes in
/// `closed` that the uplink is gone.
fn emit<'a>(
    out: &'a mpsc::Sender<Scored>,
    prevent: &'a mut Engine,
    closed: &'a mut bool,
    attack: &'a mut Option<crate::attack::Run>,
) -> impl FnMut(Detection) + 'a {
    move |detection| {
        let prevention = prevent.evaluate(&detection, Instant::now(), crate::pipeline::wall_clock_ns() / 1_000_000);
        if let (Some(_), Some(run)) = (detection.simulation, attack.as_mut()) {
            run.observe(&detection, &prevention);
        }
        *closed |= out.blocking_send(Scored { detection, prevention }).is_err();
    }
}

/// Flows into the detector, detections out to the uplink.
struct Stage {
    prevent: Engine,
    replays: Vec<Replay>,
    flow_config: FlowConfig,
    replay_speed: f64,
    stop: Arc<AtomicBool>,
    detector: Detector,
    /// Models rolled out by the hub (swapped in between batches) and reloaded settings.
    updates: std::sync::mpsc::Receiver<PipelineUpdate>,
    flow_tap: Option<crate::uplink::flows::FlowTap>,
    metrics: Arc<crate::metrics::AgentMetrics>,
    last_metrics: Instant,
    out: mpsc::Sender<Scored>,
    max_wait: Duration,
    last_flush: Instant,
    flows: u64,
    packets: u64,
    /// The uplink is gone: nothing more to do.
    closed: bool,
    /// The attack-simulation session running, if any (one at a time).
    attack: Option<crate::attack::Run>,
    /// The detector mark of the next simulation step's flows.
    next_mark: u32,
    attack_reports: mpsc::UnboundedSender<gatewatch_proto::fleet::AttackReport>,
    /// Where the active model's parameters may be (FGSM needs them).
    model_dirs: Vec<PathBuf>,
}

impl Stage {
    fn flow(&mut self, rec: &FlowRecord) {
        self.flow_from(rec, None);
    }

    /// A flow of the running source (`replayed` None) or of a replayed capture.
    fn flow_from(&mut self, rec: &FlowRecord, replayed: Option<FlowSource>) {
        self.flows += 1;
        if let Some(tap) = &self.flow_tap {
            // A flow between two monitored devices is recorded once, for its initiator.
            if let Some(device) = [rec.key.src, rec.key.dst]
                .into_iter()
                .find(|ip| self.detector.is_device(*ip))
            {
                tap.offer(rec, device, replayed);
            }
        }
        let mut emit = emit(&self.out, &mut self.prevent, &mut self.closed, &mut self.attack);
        if let Err(e) = self.detector.push(rec, &mut emit) {
            tracing::error!(error = %e, "scoring failed; windows dropped");
        }
    }

    /// A flow an attack-simulation step made for `device`.
    fn simulated_flow(&mut self, rec: &FlowRecord, mark: u32, device: std::net::IpAddr) {
        self.flows += 1;
        if let Some(tap) = &self.flow_tap {
            if self.detector.is_device(device) {
                tap.offer(rec, device, Some(FlowSource::AttackSim));
            }
        }
        let mut emit = emit(&self.out, &mut self.prevent, &mut self.closed, &mut self.attack);
        if let Err(e) = self.detector.push_marked(rec, Some((mark, device)), &mut emit) {
            tracing::error!(error = %e, "scoring failed; windows dropped");
        }
    }

    /// Starts an attack-simulation session, or answers why not.
    fn start_attack(&mut self, request: crate::attack::AttackRequest) {
        if let Some(run) = &self.attack {
            let why = format!(
                "attack session {} is running on this agent; stop it or wait for its end",
                run.session_id
            );
            let _ = request.done.send(Err(why));
            return;
        }
        if !self.detector.is_device(request.device) {
            let why = format!("{} is not a device this agent monitors", request.device);
            let _ = request.done.send(Err(why));
            return;
        }
        let model = self.detector.shared_model();
        let version = model.metadata().model_version.clone();
        if request.steps.iter().any(|s| s.adversarial_epsilon.is_some())
            && self.detector.adversary().is_none_or(|a| a.model_version() != version)
        {
            let mut why = Vec::new();
            let mut adversary = None;
            for dir in &self.model_dirs {
                match crate::detect::Adversary::load(dir, &model) {
                    Ok(a) => {
                        adversary = Some(a);
                        break;
                    }
                    Err(e) => why.push(e),
                }
            }
            match adversary {
                Some(a) => self.detector.set_adversary(Some(a)),
                None => {
                    let why = format!("FGSM steps need the active model's parameters: {}", why.join("; "));
                    let _ = request.done.send(Err(why));
                    return;
                }
            }
        }
        let threshold = model.metadata().threshold;
        let first_mark = self.next_mark;
        self.next_mark = self.next_mark.wrapping_add(request.steps.len() as u32 + 1);
        if let Some(run) = crate::attack::Run::start(
            request,
            first_mark,
            &version,
            threshold,
            self.flow_config,
            self.stop.clone(),
            self.attack_reports.clone(),
        ) {
            self.detector.retain_sim_steps(run.session_id);
            for (mark, order, epsilon, family) in run.steps() {
                self.detector.set_sim_step(
                    mark,
                    crate::detect::SimStep {
                        session_id: run.session_id,
                        order,
                        epsilon,
                        family,
                    },
                );
            }
            tracing::info!(session = %run.session_id, device = %run.device, "attack simulation session started");
            self.attack = Some(run);
        }
    }

    /// Scores the running session's flows (for at most a few tens of milliseconds, so the
    /// running source is not starved); closes its steps and the session as they end.
    fn pump_attack(&mut self) {
        const PER_PUMP: usize = 1024;
        let budget = Instant::now() + Duration::from_millis(40);
        loop {
            let (items, device) = match &mut self.attack {
                Some(run) => (run.pump(PER_PUMP), run.device),
                None => return,
            };
            let more = items.len() == PER_PUMP;
            self.pump_items(items, device);
            if !more || Instant::now() >= budget {
                return;
            }
        }
    }

    fn pump_items(&mut self, items: Vec<crate::attack::Pumped>, device: std::net::IpAddr) {
        for item in items {
            match item {
                crate::attack::Pumped::Flow(rec, mark) => self.simulated_flow(&rec, mark, device),
                crate::attack::Pumped::StepEnded(order, status, message) => {
                    // The step's last windows count for it.
                    self.flush();
                    if let Some(run) = &mut self.attack {
                        run.close_step(order, status, message);
                    }
                }
                crate::attack::Pumped::Over => {
                    self.flush();
                    if let Some(run) = self.attack.take() {
                        run.end(false);
                    }
                    return;
                }
            }
        }
    }

    /// Ready windows wait at most `max_wait` for the rest of their batch.
    fn tick(&mut self) {
        while let Ok(update) = self.updates.try_recv() {
            match update {
                PipelineUpdate::Model(model) => {
                    // Windows ready now were made for the old model's batch: score them first.
                    self.flush();
                    tracing::info!(version = %model.metadata().model_version, "scoring with the new model");
                    self.detector.set_model(model);
                }
                PipelineUpdate::Devices(networks) => {
                    tracing::info!(networks = networks.len(), "monitored devices reloaded");
                    self.detector.set_networks(networks);
                }
                PipelineUpdate::Overrides(overrides) => {
                    tracing::info!(
                        started = overrides.started.len(),
                        stopped = overrides.stopped.len(),
                        "devices started/stopped from the hub"
                    );
                    self.detector.set_overrides(overrides);
                }
                PipelineUpdate::Replay(request) => self.start_replay(request),
                PipelineUpdate::Attack(request) => self.start_attack(request),
                PipelineUpdate::Rules(rules) => {
                    tracing::info!(
                        rules = rules.len(),
                        dry_run = self.prevent.is_dry_run(),
                        "prevention rules from the hub"
                    );
                    self.prevent.set_rules(rules);
                }
            }
        }
        if !self.replays.is_empty() {
            self.pump_replays();
        }
        if self.attack.is_some() {
            self.pump_attack();
        }
        {
            let mut emit = emit(&self.out, &mut self.prevent, &mut self.closed, &mut self.attack);
            if let Err(e) = self.detector.tick(&mut emit) {
                tracing::error!(error = %e, "scoring failed; windows dropped");
            }
        }
        if self.detector.pending() > 0 && self.last_flush.elapsed() >= self.max_wait {
            self.flush();
        }
        if self.last_metrics.elapsed() >= Duration::from_secs(1) {
            self.copy_metrics();
        }
    }

    fn copy_metrics(&mut self) {
        use std::sync::atomic::Ordering::Relaxed;
        self.last_metrics = Instant::now();
        let m = &self.metrics;
        let d = self.detector.stats();
        m.packets.store(self.packets, Relaxed);
        m.flows.store(self.flows, Relaxed);
        m.windows_scored.store(d.scored, Relaxed);
        m.attack_windows.store(d.attacks, Relaxed);
        m.scoring_failures.store(d.failed, Relaxed);
        let p = self.prevent.stats();
        m.prevention_fired.store(p.fired, Relaxed);
        m.prevention_enforced.store(p.enforced, Relaxed);
        m.prevention_failed.store(p.failed, Relaxed);
        if let Some(tap) = &self.flow_tap {
            m.flow_records_dropped.store(tap.dropped.load(Relaxed), Relaxed);
        }
        if let Ok(mut v) = m.model_version.lock() {
            if *v != self.detector.model().metadata().model_version {
                v.clone_from(&self.detector.model().metadata().model_version);
            }
        }
    }

    fn flush(&mut self) {
        self.last_flush = Instant::now();
        let mut emit = emit(&self.out, &mut self.prevent, &mut self.closed, &mut self.attack);
        if let Err(e) = self.detector.flush(&mut emit) {
            tracing::error!(error = %e, "scoring failed; windows dropped");
        }
    }

    fn start_replay(&mut self, request: ReplayRequest) {
        let (tx, rx) = std::sync::mpsc::sync_channel(REPLAY_QUEUE);
        let (path, flow_config, speed, stop) = (
            request.path.clone(),
            self.flow_config,
            self.replay_speed,
            self.stop.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("replay".into())
            .spawn(move || replay_capture(&path, flow_config, speed, tx, &stop));
        match thread {
            Ok(thread) => {
                tracing::info!(path = %request.path.display(), device = %request.device, "replaying a capture from the hub");
                self.replays.push(Replay {
                    flows: rx,
                    thread: Some(thread),
                    device: request.device,
                    report: ReplayReport::default(),
                    done: Some(request.done),
                });
            }
            Err(e) => {
                let _ = request.done.send(Err(format!("cannot start the replay: {e}")));
            }
        }
    }

    /// Takes the flows replays have ready (a bounded number per call, so the running source
    /// is not starved) and reports replays that have ended.
    fn pump_replays(&mut self) {
        const PER_TICK: usize = 2048;
        let mut replays = std::mem::take(&mut self.replays);
        for replay in &mut replays {
            let mut ended = false;
            for _ in 0..PER_TICK {
                match replay.flows.try_recv() {
                    Ok(rec) => {
                        replay.report.flows += 1;
                        if rec.key.src == replay.device || rec.key.dst == replay.device {
                            replay.report.device_flows += 1;
                        }
                        self.flow_from(&rec, Some(FlowSource::Pcap));
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        ended = true;
                        break;
                    }
                }
            }
            if ended {
                // Its last windows are scored now rather than at the next timer.
                self.flush();
                let outcome = match replay.thread.take().map(|t| t.join()) {
                    Some(Ok(Ok(packets))) => Ok(ReplayReport {
                        packets,
                        ..replay.report
                    }),
                    Some(Ok(Err(e))) => Err(e),
                    _ => Err("the replay thread failed".to_string()),
                };
                if let Some(done) = replay.done.take() {
                    let _ = done.send(outcome);
                }
            }
        }
        replays.retain(|r| r.done.is_some());
        self.replays.append(&mut replays);
    }

    fn finish(&mut self) -> Result<(), RunError> {
        // Replays see the stop and end; what they read before it is scored.
        self.stop.store(true, Ordering::Relaxed);
        while !self.replays.is_empty() {
            self.pump_replays();
            std::thread::sleep(Duration::from_millis(5));
        }
        // A session cut short by the stop ends as failed, with what its windows showed.
        if self.attack.is_some() {
            self.flush();
            if let Some(run) = self.attack.take() {
                run.end(true);
            }
        }
        // Devices with fewer than 10 flows are scored on what they have.
        self.last_flush = Instant::now();
        {
            let mut emit = emit(&self.out, &mut self.prevent, &mut self.closed, &mut self.attack);
            if let Err(e) = self.detector.finish(&mut emit) {
                tracing::error!(error = %e, "scoring failed; windows dropped");
            }
        }
        self.copy_metrics();
        Ok(())
    }
}

/// Sleeps until a packet's time comes (scaled by `speed`), waking up to check for a stop.
pub(crate) struct Pacer {
    speed: f64,
    origin: Option<(i64, Instant)>,
}

impl Pacer {
    pub(crate) fn new(speed: f64) -> Pacer {
        Pacer { speed, origin: None }
    }

    /// False if a stop was requested while waiting.
    pub(crate) fn wait(&mut self, ts_ns: i64, stopped: &impl Fn() -> bool) -> bool {
        let (first, wall) = *self.origin.get_or_insert((ts_ns, Instant::now()));
        let due = wall + Duration::from_nanos(((ts_ns - first).max(0) as f64 / self.speed) as u64);
        loop {
            if stopped() {
                return false;
            }
            let now = Instant::now();
            if due <= now {
                return true;
            }
            std::thread::sleep((due - now).min(Duration::from_millis(100)));
        }
    }
}
