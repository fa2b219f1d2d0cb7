//! Attack-simulation sessions on this gateway. The hub sends a session's steps; a feed thread
//! makes each step's packets with the packet simulator, aimed at the device's own address,
//! turns them into flows with a flow table of their own (the same code and settings as the
//! capture's, so simulated packets never mix into a real flow's counters) and hands them to
//! the pipeline, which scores them with the device's real flows in the same windows and
//! model. Nothing is sent onto the network: the frames exist only in this process.
//!
//! The pipeline side ([`Run`]) tallies each step's windows, reports progress to the hub and
//! answers the session's command when it ends, completed, aborted or failed.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatewatch_models::Family;
use gatewatch_proto::fleet::{
    self, AttackEvent, AttackReport, AttackStepSpec, PreventionEvent, RunStatus, StepMetrics,
};
use gatewatch_proto::{Detection, FlowRecord};
use uuid::Uuid;

use crate::capture::sim::{self, AttackType, FloodVariant, SimConfig};
use crate::flow::FlowConfig;
use crate::pipeline::{self, Extractor};

/// Benign time between two steps unless the hub says otherwise.
pub const DEFAULT_GAP: Duration = Duration::from_secs(10);
/// Flows the feed may have waiting for the pipeline.
const FEED_QUEUE: usize = 4096;

/// A session to run, from the hub's `attack.start` command.
#[derive(Debug)]
pub struct AttackRequest {
    pub command_id: Uuid,
    pub session_id: Uuid,
    pub device: IpAddr,
    pub steps: Vec<AttackStepSpec>,
    pub gap: Duration,
    /// Set by `attack.stop`: the feed stops at once, the pipeline ends the session.
    pub abort: Arc<AtomicBool>,
    /// Gets the session's outcome: the command's answer.
    pub done: tokio::sync::oneshot::Sender<Result<String, String>>,
}

/// The simulator scenario for the hub's attack type and variant.
pub fn scenario(attack_type: &str, variant: Option<&str>) -> Result<AttackType, String> {
    let flood = |v: FloodVariant| Ok(AttackType::DdosFlood(v));
    match (attack_type, variant) {
        ("ddos_flood", None | Some("syn_flood")) => flood(FloodVariant::Syn),
        ("ddos_flood", Some("udp_flood")) => flood(FloodVariant::Udp),
        ("ddos_flood", Some("http_flood")) => flood(FloodVariant::Http),
        ("slow_rate", None | Some("slowloris")) => Ok(AttackType::SlowRate),
        ("port_scan", None | Some("syn_scan")) => Ok(AttackType::PortScan),
        ("brute_force_ssh", None) => Ok(AttackType::BruteForceSsh),
        ("brute_force_ftp", None) => Ok(AttackType::BruteForceFtp),
        ("botnet_beacon", None) => Ok(AttackType::BotnetBeacon),
        ("data_exfiltration", None) => Ok(AttackType::DataExfiltration),
        ("web_xss", None) => Ok(AttackType::WebXss),
        ("web_sqli", None) => Ok(AttackType::WebSqli),
        ("hybrid", None) => Ok(AttackType::Hybrid),
        (t, Some(v)) => Err(format!("the simulator has no variant {v:?} of {t:?}")),
        (t, None) => Err(format!("the simulator has no attack type {t:?}")),
    }
}

/// The families a flagged window of this scenario is right to name.
pub fn expected_families(attack: AttackType) -> Vec<Family> {
    match attack {
        AttackType::Hybrid => vec![Family::Scan, Family::BruteForce, Family::Exfiltration],
        other => Family::from_label(&other.to_string().replace(':', "_"))
            .into_iter()
            .collect(),
    }
}

/// The simulator's settings for a step against `device`.
fn step_config(device: Ipv4Addr, attack: AttackType, step: &AttackStepSpec, seed: u64) -> SimConfig {
    sim_config(
        device,
        attack,
        step.intensity,
        Duration::from_secs(u64::from(step.duration_secs.max(1))),
        seed,
        pipeline::wall_clock_ns(),
    )
}

/// The simulator's settings for an attack on `device`: attack traffic only (the device's
/// real traffic is the benign part), the attacker and C2 in documentation ranges (RFC 5737)
/// so they match no real peer.
pub fn sim_config(
    device: Ipv4Addr,
    attack: AttackType,
    intensity: f64,
    duration: Duration,
    seed: u64,
    start_ns: i64,
) -> SimConfig {
    let [a, b, c, d] = device.octets();
    let mut cfg = SimConfig::new(device);
    cfg.attack = Some(attack);
    cfg.benign = false;
    cfg.devices = 0;
    cfg.intensity = intensity.clamp(0.0, 1.0);
    cfg.duration = duration;
    cfg.seed = seed;
    cfg.start_ns = start_ns;
    cfg.attacker = Ipv4Addr::new(198, 51, 100, 66);
    cfg.c2 = Ipv4Addr::new(203, 0, 113, 66);
    // The gateway and the hub must be other hosts of the device's /24.
    cfg.gateway = Ipv4Addr::new(a, b, c, if d == 1 { 254 } else { 1 });
    cfg.hub = Ipv4Addr::new(a, b, c, if d == 10 { 11 } else { 10 });
    cfg
}

/// What the feed thread hands the pipeline, in order.
#[derive(Debug)]
pub enum Feed {
    /// The step's first packet goes in now.
    Started {
        order: u32,
    },
    Flow(Box<FlowRecord>),
    /// Every flow of the step has been handed over.
    Ended {
        order: u32,
    },
    /// The step could not run.
    Failed {
        order: u32,
        reason: String,
    },
}

/// Makes the steps' flows in real time, a gap between steps; returns when every step has
/// been fed, on `abort` or `stop`, or when the pipeline is gone.
fn feed(
    device: Ipv4Addr,
    steps: &[AttackStepSpec],
    gap: Duration,
    flow_config: FlowConfig,
    out: &SyncSender<Feed>,
    abort: &AtomicBool,
    stop: &AtomicBool,
) {
    let halted = || abort.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
    for (i, step) in steps.iter().enumerate() {
        if i > 0 && !sleep_unless(gap, &halted) {
            return;
        }
        let attack = match scenario(&step.attack_type, step.variant.as_deref()) {
            Ok(a) => a,
            Err(reason) => {
                let _ = out.send(Feed::Failed {
                    order: step.order,
                    reason,
                });
                return;
            }
        };
        let seed = u64::from(step.order) ^ pipeline::wall_clock_ns() as u64;
        let simulation = match sim::simulate(&step_config(device, attack, step, seed)) {
            Ok(s) => s,
            Err(e) => {
                let _ = out.send(Feed::Failed {
                    order: step.order,
                    reason: e.to_string(),
                });
                return;
            }
        };
        let step_end = Instant::now() + Duration::from_secs(u64::from(step.duration_secs.max(1)));
        let mut extractor = Extractor::new(flow_config);
        let mut pacer = crate::run::Pacer::new(1.0);
        let mut started = false;
        let mut gone = false;
        for frame in &simulation.frames {
            if !pacer.wait(frame.ts_ns, &halted) {
                return;
            }
            if !started {
                started = true;
                gone |= out.send(Feed::Started { order: step.order }).is_err();
            }
            extractor.push(&frame.as_frame(), &mut |rec| {
                gone |= out.send(Feed::Flow(Box::new(rec))).is_err()
            });
            if gone {
                return;
            }
        }
        if !started && out.send(Feed::Started { order: step.order }).is_err() {
            return;
        }
        // The step lasts its duration even when its last packet comes earlier.
        if !sleep_unless(step_end.saturating_duration_since(Instant::now()), &halted) {
            return;
        }
        extractor.flush(&mut |rec| gone |= out.send(Feed::Flow(Box::new(rec))).is_err());
        if gone || out.send(Feed::Ended { order: step.order }).is_err() {
            return;
        }
    }
}

/// Sleeps `d` in short naps; false if halted meanwhile.
fn sleep_unless(d: Duration, halted: &impl Fn() -> bool) -> bool {
    let end = Instant::now() + d;
    loop {
        if halted() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// One step's windows so far.
#[derive(Debug, Clone)]
struct Tally {
    status: RunStatus,
    started: Option<Instant>,
    families: Vec<Family>,
    windows: u32,
    attacks: u32,
    clean_attacks: u32,
    adversarial: bool,
    confidence: f64,
    score: f64,
    first_attack: Option<Instant>,
    family_right: u32,
    prevention: Option<String>,
}

impl Tally {
    fn metrics(&self) -> StepMetrics {
        let rate = |n: u32| {
            if self.windows == 0 {
                0.0
            } else {
                f64::from(n) / f64::from(self.windows)
            }
        };
        let mean = |sum: f64| {
            if self.windows == 0 {
                0.0
            } else {
                sum / f64::from(self.windows)
            }
        };
        StepMetrics {
            windows: self.windows,
            attack_windows: self.attacks,
            detection_rate: rate(self.attacks),
            clean_detection_rate: self.adversarial.then(|| rate(self.clean_attacks)),
            avg_confidence: mean(self.confidence),
            avg_score: mean(self.score),
            detection_latency_ms: match (self.started, self.first_attack) {
                (Some(s), Some(f)) => Some(f.saturating_duration_since(s).as_secs_f64() * 1e3),
                _ => None,
            },
            family_accuracy: (self.attacks > 0).then(|| f64::from(self.family_right) / f64::from(self.attacks)),
            prevention: self.prevention.clone(),
        }
    }
}

/// A session running in the pipeline.
#[derive(Debug)]
pub struct Run {
    pub session_id: Uuid,
    pub command_id: Uuid,
    pub device: IpAddr,
    steps: Vec<AttackStepSpec>,
    /// The detector mark of each step's flows.
    marks: Vec<u32>,
    tallies: Vec<Tally>,
    /// Index of the step being fed.
    current: Option<usize>,
    feed: Receiver<Feed>,
    thread: Option<std::thread::JoinHandle<()>>,
    abort: Arc<AtomicBool>,
    reports: tokio::sync::mpsc::UnboundedSender<AttackReport>,
    done: Option<tokio::sync::oneshot::Sender<Result<String, String>>>,
    threshold: f32,
}

/// What the pipeline does with the feed, in order (see [`Run::pump`]).
#[derive(Debug)]
pub enum Pumped {
    /// A flow of the running step, to score with this mark.
    Flow(Box<FlowRecord>, u32),
    /// A step ended: score what is pending, then [`Run::close_step`].
    StepEnded(u32, RunStatus, Option<String>),
    /// Everything was fed, or the session was stopped: score what is pending, then
    /// [`Run::end`].
    Over,
}

impl Run {
    /// Checks the session and starts its feed thread; `first_mark` numbers its steps' marks.
    /// A session that cannot run is answered at once with the reason.
    pub fn start(
        request: AttackRequest,
        first_mark: u32,
        model_version: &str,
        threshold: f32,
        flow_config: FlowConfig,
        stop: Arc<AtomicBool>,
        reports: tokio::sync::mpsc::UnboundedSender<AttackReport>,
    ) -> Option<Run> {
        match Run::try_start(
            request,
            first_mark,
            model_version,
            threshold,
            flow_config,
            stop,
            reports,
        ) {
            Ok(run) => Some(run),
            Err(refused) => {
                let (request, why) = *refused;
                tracing::warn!(session = %request.session_id, reason = %why, "attack simulation session refused");
                let _ = request.done.send(Err(why));
                None
            }
        }
    }

    fn try_start(
        request: AttackRequest,
        first_mark: u32,
        model_version: &str,
        threshold: f32,
        flow_config: FlowConfig,
        stop: Arc<AtomicBool>,
        reports: tokio::sync::mpsc::UnboundedSender<AttackReport>,
    ) -> Result<Run, Box<(AttackRequest, String)>> {
        let device = match request.device {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => {
                let why = format!(
                    "device {} is IPv6; the packet simulator makes IPv4 traffic only",
                    request.device
                );
                return Err(Box::new((request, why)));
            }
        };
        let mut tallies = Vec::with_capacity(request.steps.len());
        for step in &request.steps {
            let attack = match scenario(&step.attack_type, step.variant.as_deref()) {
                Ok(a) => a,
                Err(why) => {
                    let why = format!("step {}: {why}", step.order);
                    return Err(Box::new((request, why)));
                }
            };
            tallies.push(Tally {
                status: RunStatus::Skipped,
                started: None,
                families: expected_families(attack),
                windows: 0,
                attacks: 0,
                clean_attacks: 0,
                adversarial: step.adversarial_epsilon.is_some(),
                confidence: 0.0,
                score: 0.0,
                first_attack: None,
                family_right: 0,
                prevention: None,
            });
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(FEED_QUEUE);
        let (steps, gap, abort) = (request.steps.clone(), request.gap, request.abort.clone());
        let thread = std::thread::Builder::new()
            .name("attack-sim".into())
            .spawn(move || feed(device, &steps, gap, flow_config, &tx, &abort, &stop));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => return Err(Box::new((request, format!("cannot start the simulation: {e}")))),
        };
        let run = Run {
            session_id: request.session_id,
            command_id: request.command_id,
            device: request.device,
            marks: (0..request.steps.len() as u32)
                .map(|i| first_mark.wrapping_add(i))
                .collect(),
            steps: request.steps,
            tallies,
            current: None,
            feed: rx,
            thread: Some(thread),
            abort: request.abort,
            reports,
            done: Some(request.done),
            threshold,
        };
        run.report(AttackEvent::SessionStarted {
            model_version: model_version.to_string(),
        });
        Ok(run)
    }

    /// The detector's view of each step: (mark, order, FGSM budget).
    /// Each step's mark, order, FGSM budget and the one family its windows are (none for a
    /// step of several, such as `hybrid`).
    pub fn steps(&self) -> impl Iterator<Item = (u32, u32, Option<f32>, Option<Family>)> + '_ {
        self.marks.iter().zip(&self.steps).map(|(m, s)| {
            let families = scenario(&s.attack_type, s.variant.as_deref())
                .map(expected_families)
                .unwrap_or_default();
            let family = match families.as_slice() {
                [one] => Some(*one),
                _ => None,
            };
            (*m, s.order, s.adversarial_epsilon.map(|e| e as f32), family)
        })
    }

    /// Whether any step is adversarial (the model's parameters are then needed).
    pub fn adversarial(&self) -> bool {
        self.steps.iter().any(|s| s.adversarial_epsilon.is_some())
    }

    fn report(&self, event: AttackEvent) {
        let _ = self.reports.send(AttackReport {
            schema: fleet::SCHEMA,
            session_id: self.session_id,
            at_ms: pipeline::wall_clock_ns() / 1_000_000,
            event,
        });
    }

    fn index_of(&self, order: u32) -> Option<usize> {
        self.steps.iter().position(|s| s.order == order)
    }

    /// Takes what the feed has ready, at most `max` items, in order.
    pub fn pump(&mut self, max: usize) -> Vec<Pumped> {
        if self.abort.load(Ordering::Relaxed) {
            let mut out = Vec::new();
            if let Some(i) = self.current.filter(|&i| self.tallies[i].status == RunStatus::Running) {
                out.push(Pumped::StepEnded(
                    self.steps[i].order,
                    RunStatus::Aborted,
                    Some("stopped by the operator".into()),
                ));
            }
            out.push(Pumped::Over);
            return out;
        }
        let mut out = Vec::new();
        while out.len() < max {
            match self.feed.try_recv() {
                Ok(Feed::Flow(rec)) => {
                    if let Some(i) = self.current {
                        out.push(Pumped::Flow(rec, self.marks[i]));
                    }
                }
                Ok(Feed::Started { order }) => {
                    if let Some(i) = self.index_of(order) {
                        self.current = Some(i);
                        self.tallies[i].status = RunStatus::Running;
                        self.tallies[i].started = Some(Instant::now());
                        self.report(AttackEvent::StepStarted { order });
                    }
                }
                Ok(Feed::Ended { order }) => out.push(Pumped::StepEnded(order, RunStatus::Completed, None)),
                Ok(Feed::Failed { order, reason }) => {
                    if let Some(i) = self.index_of(order) {
                        self.current = Some(i);
                        self.tallies[i].status = RunStatus::Running;
                    }
                    out.push(Pumped::StepEnded(order, RunStatus::Failed, Some(reason)));
                    out.push(Pumped::Over);
                    break;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    out.push(Pumped::Over);
                    break;
                }
            }
        }
        out
    }

    /// Counts a scored window that holds this session's simulated flows.
    pub fn observe(&mut self, d: &Detection, prevention: &[PreventionEvent]) {
        let Some(mark) = d.simulation.filter(|m| m.session_id == self.session_id) else {
            return;
        };
        let Some(i) = self.index_of(mark.step) else {
            return;
        };
        let t = &mut self.tallies[i];
        // Windows scored after the step ended (its last flows sliding out behind the
        // device's real ones) are marked, but the step's figures are closed.
        if t.status != RunStatus::Running {
            return;
        }
        t.windows += 1;
        t.confidence += f64::from(d.confidence);
        t.score += f64::from(d.score);
        if mark.clean_score.is_some_and(|s| s >= self.threshold) {
            t.clean_attacks += 1;
        }
        if d.is_attack() {
            t.attacks += 1;
            t.first_attack.get_or_insert_with(Instant::now);
            if t.families.iter().any(|f| f.name() == d.family) {
                t.family_right += 1;
            }
        }
        if let Some(e) = prevention.first() {
            t.prevention
                .get_or_insert_with(|| format!("dry_run:{}", e.action.as_str()));
        }
    }

    /// Ends a step with what its windows showed; reports it.
    pub fn close_step(&mut self, order: u32, status: RunStatus, message: Option<String>) {
        let Some(i) = self.index_of(order) else {
            return;
        };
        self.tallies[i].status = status;
        let metrics = self.tallies[i].metrics();
        tracing::info!(session = %self.session_id, step = order, status = status.as_str(), windows = metrics.windows, detection_rate = metrics.detection_rate, "attack simulation step ended");
        self.report(AttackEvent::StepEnded {
            order,
            status,
            metrics,
            message,
        });
    }

    /// Ends the session: reports it and answers its command. A stop of the whole agent
    /// (`stopping`) fails it: it did not run to its end.
    pub fn end(mut self, stopping: bool) {
        let aborted = self.abort.swap(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let still_running: Vec<u32> = self
            .steps
            .iter()
            .zip(&self.tallies)
            .filter(|(_, t)| t.status == RunStatus::Running)
            .map(|(s, _)| s.order)
            .collect();
        for order in still_running {
            self.close_step(order, RunStatus::Failed, Some("the agent stopped".into()));
        }
        let count = |st: RunStatus| self.tallies.iter().filter(|t| t.status == st).count();
        let (status, message) = if stopping && count(RunStatus::Completed) < self.steps.len() && !aborted {
            (RunStatus::Failed, "the agent stopped during the session".to_string())
        } else if count(RunStatus::Failed) > 0 {
            (RunStatus::Failed, "a step failed".to_string())
        } else if aborted || count(RunStatus::Aborted) > 0 {
            (RunStatus::Aborted, "stopped by the operator".to_string())
        } else {
            (RunStatus::Completed, format!("{} steps completed", self.steps.len()))
        };
        let summary = self
            .steps
            .iter()
            .zip(&self.tallies)
            .map(|(s, t)| {
                let m = t.metrics();
                format!(
                    "step {} {} {}: {}/{} windows flagged",
                    s.order,
                    s.attack_type,
                    t.status.as_str(),
                    m.attack_windows,
                    m.windows
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        self.report(AttackEvent::SessionEnded {
            status,
            message: Some(message.clone()),
        });
        tracing::info!(session = %self.session_id, status = status.as_str(), %summary, "attack simulation session ended");
        if let Some(done) = self.done.take() {
            let answer = match status {
                RunStatus::Failed => Err(format!("{message}: {summary}")),
                _ => Ok(format!("session {}: {summary}", status.as_str())),
            };
            let _ = done.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_proto::detection::SimulationMark;

    fn spec(order: u32, attack: &str, secs: u32) -> AttackStepSpec {
        AttackStepSpec {
            order,
            attack_type: attack.into(),
            variant: None,
            duration_secs: secs,
            intensity: 0.05,
            adversarial_epsilon: None,
        }
    }

    struct Started {
        run: Run,
        reports: tokio::sync::mpsc::UnboundedReceiver<AttackReport>,
        done: tokio::sync::oneshot::Receiver<Result<String, String>>,
        abort: Arc<AtomicBool>,
    }

    fn start(steps: Vec<AttackStepSpec>) -> Started {
        let (tx, reports) = tokio::sync::mpsc::unbounded_channel();
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let abort = Arc::new(AtomicBool::new(false));
        let request = AttackRequest {
            command_id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            device: "192.168.9.20".parse().expect("ip"),
            steps,
            gap: Duration::from_millis(200),
            abort: abort.clone(),
            done: done_tx,
        };
        let run = Run::start(
            request,
            1,
            "m1",
            0.5,
            FlowConfig::default(),
            Arc::new(AtomicBool::new(false)),
            tx,
        )
        .expect("starts");
        Started {
            run,
            reports,
            done,
            abort,
        }
    }

    fn detection(run: &Run, step: u32, score: f32, family: &str) -> Detection {
        Detection {
            device: run.device,
            window: gatewatch_proto::WindowSpan {
                first_flow_id: 1,
                last_flow_id: 10,
                first_ts_ns: 0,
                last_ts_ns: 1,
            },
            score,
            label: if score >= 0.5 { "attack" } else { "benign" }.into(),
            confidence: (score - 0.5).abs() * 2.0,
            family: family.into(),
            family_probs: Default::default(),
            model_version: "m1".into(),
            inference_latency_ms: 1.0,
            peer: None,
            padded_flows: 0,
            simulation: Some(SimulationMark {
                session_id: run.session_id,
                step,
                clean_score: None,
            }),
        }
    }

    #[test]
    fn hub_types_map_to_scenarios_and_families() {
        assert_eq!(
            scenario("ddos_flood", Some("udp_flood")),
            Ok(AttackType::DdosFlood(FloodVariant::Udp))
        );
        assert_eq!(scenario("port_scan", None), Ok(AttackType::PortScan));
        assert!(scenario("slow_rate", Some("slow_post")).is_err());
        assert!(scenario("teleport", None).is_err());
        assert_eq!(expected_families(AttackType::PortScan), vec![Family::Scan]);
        assert_eq!(
            expected_families(AttackType::DdosFlood(FloodVariant::Syn)),
            vec![Family::DosDdos]
        );
        assert_eq!(expected_families(AttackType::BruteForceSsh), vec![Family::BruteForce]);
        assert_eq!(expected_families(AttackType::Hybrid).len(), 3);
    }

    #[test]
    fn a_session_feeds_its_steps_in_order_and_ends_with_their_figures() {
        let mut s = start(vec![spec(1, "port_scan", 1), spec(2, "brute_force_ssh", 1)]);
        let (mut flows, mut ended) = (vec![0u32; 3], Vec::new());
        let deadline = Instant::now() + Duration::from_secs(20);
        'feed: while Instant::now() < deadline {
            for item in s.run.pump(256) {
                match item {
                    Pumped::Flow(rec, mark) => {
                        assert_eq!(rec.key.dst, s.run.device, "aimed at the device");
                        flows[mark as usize] += 1;
                        // The model flags this step's windows (two of three named right).
                        let step = mark;
                        let family = if flows[mark as usize] % 3 == 0 {
                            "botnet_c2"
                        } else if step == 1 {
                            "scan"
                        } else {
                            "brute_force"
                        };
                        let d = detection(&s.run, step, 0.9, family);
                        s.run.observe(&d, &[]);
                    }
                    Pumped::StepEnded(order, status, message) => {
                        ended.push((order, status));
                        s.run.close_step(order, status, message);
                    }
                    Pumped::Over => break 'feed,
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(flows[1] > 0 && flows[2] > 0, "both steps made flows: {flows:?}");
        assert_eq!(ended, vec![(1, RunStatus::Completed), (2, RunStatus::Completed)]);
        s.run.end(false);
        let answer = s.done.try_recv().expect("answered");
        assert!(answer.as_ref().is_ok_and(|m| m.contains("completed")), "{answer:?}");
        let mut events = Vec::new();
        while let Ok(r) = s.reports.try_recv() {
            events.push(r.event);
        }
        assert!(
            matches!(events.first(), Some(AttackEvent::SessionStarted { .. })),
            "{events:?}"
        );
        assert!(matches!(
            events.last(),
            Some(AttackEvent::SessionEnded {
                status: RunStatus::Completed,
                ..
            })
        ));
        let metrics: Vec<&StepMetrics> = events
            .iter()
            .filter_map(|e| match e {
                AttackEvent::StepEnded { metrics, .. } => Some(metrics),
                _ => None,
            })
            .collect();
        assert_eq!(metrics.len(), 2);
        for (i, m) in metrics.iter().enumerate() {
            assert_eq!(m.windows as usize, flows[i + 1] as usize);
            assert_eq!(m.detection_rate, 1.0);
            let accuracy = m.family_accuracy.expect("flagged windows");
            assert!((0.6..0.7).contains(&accuracy) || m.windows < 3, "{accuracy}");
            assert!(m.detection_latency_ms.is_some());
        }
    }

    #[test]
    fn a_stop_aborts_the_running_step_and_skips_the_rest() {
        let mut s = start(vec![spec(1, "ddos_flood", 60), spec(2, "port_scan", 5)]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.run.current.is_none() && Instant::now() < deadline {
            s.run.pump(64);
            std::thread::sleep(Duration::from_millis(10));
        }
        s.abort.store(true, Ordering::Relaxed);
        let asked = Instant::now();
        let items = s.run.pump(64);
        assert!(
            matches!(
                items.as_slice(),
                [Pumped::StepEnded(1, RunStatus::Aborted, _), Pumped::Over]
            ),
            "{items:?}"
        );
        s.run
            .close_step(1, RunStatus::Aborted, Some("stopped by the operator".into()));
        s.run.end(false);
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "the feed thread stops at once"
        );
        let answer = s.done.try_recv().expect("answered");
        assert!(answer.as_ref().is_ok_and(|m| m.contains("aborted")), "{answer:?}");
        let last = std::iter::from_fn(|| s.reports.try_recv().ok())
            .last()
            .expect("reports");
        assert!(
            matches!(
                last.event,
                AttackEvent::SessionEnded {
                    status: RunStatus::Aborted,
                    ..
                }
            ),
            "{last:?}"
        );
    }

    #[test]
    fn an_ipv6_device_or_an_unknown_variant_is_refused_with_the_reason() {
        let (tx, _reports) = tokio::sync::mpsc::unbounded_channel();
        for (device, step) in [
            ("fd00::7", spec(1, "port_scan", 1)),
            (
                "192.168.9.20",
                AttackStepSpec {
                    variant: Some("slow_post".into()),
                    ..spec(1, "slow_rate", 1)
                },
            ),
        ] {
            let (done_tx, mut done) = tokio::sync::oneshot::channel();
            let request = AttackRequest {
                command_id: Uuid::now_v7(),
                session_id: Uuid::now_v7(),
                device: device.parse().expect("ip"),
                steps: vec![step],
                gap: DEFAULT_GAP,
                abort: Arc::new(AtomicBool::new(false)),
                done: done_tx,
            };
            let run = Run::start(
                request,
                1,
                "m1",
                0.5,
                FlowConfig::default(),
                Arc::new(AtomicBool::new(false)),
                tx.clone(),
            );
            assert!(run.is_none());
            let why = done.try_recv().expect("answered").expect_err("refused");
            assert!(why.contains("IPv6") || why.contains("slow_post"), "{why}");
        }
    }
}
