//! Fills the local training set from what the detector scores (see [`Tap`]): benign
//! pseudo-labels once their device has stayed quiet around them, simulation windows with the
//! simulator's family, and windows the hub's operators labelled.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatewatch_models::{Family, Window};
use gatewatch_proto::fl::LabelledWindow;

use super::dataset::{LocalSet, Source};

/// A window the detector scored, as the collector needs it.
#[derive(Debug)]
pub struct Scored {
    pub device: IpAddr,
    pub window: Box<Window>,
    pub padded: u8,
    pub score: f32,
    pub attack: bool,
    /// The simulator's family for a window of an attack-simulation step.
    pub simulated: Option<Family>,
    /// The window's last flow end, milliseconds since the Unix epoch.
    pub end_ms: i64,
}

/// The detector's side: never blocks the pipeline (a full queue drops the window, counted).
#[derive(Debug, Clone)]
pub struct Tap {
    tx: SyncSender<Message>,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl Tap {
    pub fn offer(&self, scored: Scored) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Message::Scored(scored)) {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// An operator's verdict, relayed by the hub.
    pub fn label(&self, windows: Vec<LabelledWindow>, family: Family) {
        let _ = self.tx.try_send(Message::Label(windows, family));
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[derive(Debug)]
enum Message {
    Scored(Scored),
    Label(Vec<LabelledWindow>, Family),
}

/// How windows become labels.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Highest score of a benign pseudo-label.
    pub benign_max_score: f32,
    /// No flagged window on the device within this much of a pseudo-label.
    pub quiet: Duration,
    /// At most one pseudo-label per device per this much time: a sample, not every window.
    pub per_device_gap: Duration,
}

/// Starts the collector thread; it saves the set every `save_every` when it changed.
pub fn start(set: Arc<Mutex<LocalSet>>, rules: Rules, save_every: Duration) -> Tap {
    const QUEUE: usize = 4096;
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let spawned = std::thread::Builder::new()
        .name("fl-collect".into())
        .spawn(move || Collector::new(set, rules).run(rx, save_every));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "the FL collector could not start; the local training set stays as it is");
    }
    Tap {
        tx,
        dropped: Arc::default(),
    }
}

/// Flagged windows remembered for operators' verdicts.
const FLAGGED_KEPT: usize = 2048;

struct Collector {
    set: Arc<Mutex<LocalSet>>,
    rules: Rules,
    /// Benign windows waiting for their quiet period to pass, oldest first.
    pending: VecDeque<Scored>,
    last_flag_ms: HashMap<IpAddr, i64>,
    last_pseudo_ms: HashMap<IpAddr, i64>,
    /// Recent flagged windows, for the hub's labels.
    flagged: VecDeque<Scored>,
}

impl Collector {
    fn new(set: Arc<Mutex<LocalSet>>, rules: Rules) -> Collector {
        Collector {
            set,
            rules,
            pending: VecDeque::new(),
            last_flag_ms: HashMap::new(),
            last_pseudo_ms: HashMap::new(),
            flagged: VecDeque::new(),
        }
    }

    fn run(mut self, rx: Receiver<Message>, save_every: Duration) {
        let mut last_save = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(Message::Scored(s)) => self.scored(s),
                Ok(Message::Label(windows, family)) => self.label(&windows, family),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.admit(crate::pipeline::wall_clock_ns() / 1_000_000);
            if last_save.elapsed() >= save_every {
                last_save = Instant::now();
                self.save();
            }
        }
        self.save();
    }

    fn save(&self) {
        let mut set = match self.set.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        if set.unsaved() > 0 {
            if let Err(e) = set.save() {
                tracing::warn!(error = %e, "saving the local training set failed");
            }
        }
    }

    fn add(&self, s: Scored, family: Family, source: Source) {
        let mut set = match self.set.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        set.add(s.window, s.padded, family, source, s.device, s.end_ms);
    }

    fn scored(&mut self, s: Scored) {
        if let Some(family) = s.simulated {
            self.add(s, family, Source::Simulated);
            return;
        }
        if s.attack {
            self.last_flag_ms.insert(s.device, s.end_ms);
            let horizon = s.end_ms - self.rules.quiet.as_millis() as i64;
            self.pending.retain(|p| p.device != s.device || p.end_ms < horizon);
            if self.flagged.len() == FLAGGED_KEPT {
                self.flagged.pop_front();
            }
            self.flagged.push_back(s);
            return;
        }
        if s.score > self.rules.benign_max_score {
            return;
        }
        let gap = self.rules.per_device_gap.as_millis() as i64;
        if self
            .last_pseudo_ms
            .get(&s.device)
            .is_some_and(|&last| s.end_ms - last < gap)
        {
            return;
        }
        self.last_pseudo_ms.insert(s.device, s.end_ms);
        self.pending.push_back(s);
    }

    /// Pseudo-labels whose quiet period has passed without a flagged window join the set.
    fn admit(&mut self, now_ms: i64) {
        let quiet = self.rules.quiet.as_millis() as i64;
        while self.pending.front().is_some_and(|p| p.end_ms + quiet <= now_ms) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let flagged_near = self
                .last_flag_ms
                .get(&p.device)
                .is_some_and(|&f| (f - p.end_ms).abs() <= quiet);
            if !flagged_near {
                self.add(p, Family::Benign, Source::Pseudo);
            }
        }
    }

    fn label(&mut self, windows: &[LabelledWindow], family: Family) {
        let mut labelled = 0;
        for w in windows {
            if let Some(pos) = self
                .flagged
                .iter()
                .position(|f| f.device == w.device && f.end_ms == w.end_ms)
            {
                if let Some(s) = self.flagged.remove(pos) {
                    self.add(s, family, Source::Operator);
                    labelled += 1;
                }
            }
        }
        tracing::info!(
            family = family.name(),
            asked = windows.len(),
            labelled,
            "operator labels applied to the local training set"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(device: &str, score: f32, end_ms: i64) -> Scored {
        Scored {
            device: device.parse().expect("ip"),
            window: Box::new([[score; gatewatch_models::FEATURE_COUNT]; gatewatch_models::WINDOW]),
            padded: 0,
            score,
            attack: score >= 0.5,
            simulated: None,
            end_ms,
        }
    }

    fn collector() -> (Collector, Arc<Mutex<LocalSet>>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("dir");
        let set = Arc::new(Mutex::new(LocalSet::open(dir.path(), 1000, 0.2).expect("set")));
        let rules = Rules {
            benign_max_score: 0.1,
            quiet: Duration::from_secs(60),
            per_device_gap: Duration::from_secs(1),
        };
        (Collector::new(set.clone(), rules), set, dir)
    }

    #[test]
    fn confident_benign_windows_join_after_a_quiet_minute_unless_the_device_was_flagged() {
        let (mut c, set, _dir) = collector();
        c.scored(scored("10.0.0.1", 0.01, 1_000));
        c.scored(scored("10.0.0.1", 0.02, 1_500)); // within the per-device gap: skipped
        c.scored(scored("10.0.0.1", 0.3, 3_000)); // not confident
        c.scored(scored("10.0.0.2", 0.01, 2_000));
        c.scored(scored("10.0.0.2", 0.9, 30_000)); // flagged: 10.0.0.2's pending window goes
        c.admit(50_000);
        assert_eq!(set.lock().expect("lock").len(), 0, "quiet period not over");
        c.admit(100_000);
        let s = set.lock().expect("lock");
        assert_eq!(s.len(), 1);
        assert_eq!(s.entries().next().map(|e| e.device), "10.0.0.1".parse().ok());
    }

    #[test]
    fn operator_verdicts_label_remembered_flagged_windows() {
        let (mut c, set, _dir) = collector();
        c.scored(scored("10.0.0.3", 0.95, 7_000));
        c.label(
            &[
                LabelledWindow {
                    device: "10.0.0.3".parse().expect("ip"),
                    end_ms: 7_000,
                },
                LabelledWindow {
                    device: "10.0.0.3".parse().expect("ip"),
                    end_ms: 8_000,
                },
            ],
            Family::Benign,
        );
        let s = set.lock().expect("lock");
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.entries().next().map(|e| (e.family, e.source)),
            Some((Family::Benign, Source::Operator))
        );
    }
}
