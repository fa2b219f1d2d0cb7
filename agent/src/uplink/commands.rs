//! Operators' commands from the hub: start or stop monitoring a device (kept in the state
//! directory and handed to the pipeline at once), replay an uploaded capture (fetched over
//! QUIC, then read through the pipeline beside the running source), and run or stop an
//! attack-simulation session (see [`crate::attack`]). Every command has an id;
//! one seen before is not run again, and its answer is sent again if it has one, because the
//! hub re-delivers what was not answered when the agent comes back.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatewatch_proto::fleet::{self, Action, CommandResult, Outcome};
use uuid::Uuid;

use super::bulk::BulkClient;
use crate::detect::monitor::Overrides;
use crate::run::{PipelineUpdate, ReplayRequest};

/// Answers remembered for commands sent again.
const REMEMBERED: usize = 256;

/// What became of a command handed to [`Commands::handle`].
#[derive(Debug)]
pub enum Handled {
    /// Finished: send this answer.
    Answer(CommandResult),
    /// Running (or already running): the answer comes later.
    Running,
    /// Done, and the hub expects no answer (it sends the whole state again when needed).
    Applied,
}

#[derive(Debug)]
pub struct Commands {
    state_dir: PathBuf,
    to_pipeline: std::sync::mpsc::Sender<PipelineUpdate>,
    overrides: Overrides,
    overrides_path: PathBuf,
    /// Where fetched captures wait for their replay.
    replay_dir: PathBuf,
    /// The QUIC client, if this agent is enrolled (replays need it).
    bulk: Option<Arc<BulkClient>>,
    answered: VecDeque<CommandResult>,
    running: HashSet<Uuid>,
    /// The attack session running (one at a time) and its stop switch.
    attack: Option<(Uuid, Arc<AtomicBool>)>,
    /// The command that started it.
    attack_command: Option<Uuid>,
}

/// A command's work that ends later, with its answer.
pub type Work = std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>;

impl Commands {
    /// `state_dir` holds the start/stop choices and the captures being replayed.
    pub fn new(
        state_dir: &std::path::Path,
        to_pipeline: std::sync::mpsc::Sender<PipelineUpdate>,
        bulk: Option<Arc<BulkClient>>,
    ) -> std::io::Result<Commands> {
        let overrides_path = state_dir.join(crate::detect::monitor::FILE);
        Ok(Commands {
            state_dir: state_dir.to_path_buf(),
            overrides: Overrides::load(&overrides_path)?,
            overrides_path,
            replay_dir: state_dir.join("replay"),
            to_pipeline,
            bulk,
            answered: VecDeque::new(),
            running: HashSet::new(),
            attack: None,
            attack_command: None,
        })
    }

    /// Runs `action` (any but a model rollout). Work that takes a while (a replay, an attack
    /// session) is handed to `later` with its command id, to run in a task whose outcome goes
    /// to [`Commands::finished`].
    pub fn handle(&mut self, action: Action, later: impl FnOnce(Uuid, Work) + Send + 'static) -> Handled {
        if let Action::SetRules { rules } = action {
            self.set_rules(rules);
            return Handled::Applied;
        }
        let Some(id) = action.command_id() else {
            return Handled::Running;
        };
        if let Some(previous) = self.answered.iter().find(|r| r.command_id == id) {
            return Handled::Answer(previous.clone());
        }
        if self.running.contains(&id) {
            return Handled::Running;
        }
        let outcome = match action {
            // Handled elsewhere (the rollout, federated learning) and never with an id.
            Action::UseModel { .. }
            | Action::SetRules { .. }
            | Action::FlKeygen(_)
            | Action::FlTrain(_)
            | Action::FlDecrypt(_)
            | Action::FlLabel(_) => return Handled::Running,
            Action::AttackStart {
                session_id,
                device,
                steps,
                gap_secs,
                ..
            } => {
                if let Some((running, _)) = &self.attack {
                    let why = format!("attack session {running} is running on this agent; stop it or wait for its end");
                    return Handled::Answer(self.answer(id, Err(why)));
                }
                let abort = Arc::new(AtomicBool::new(false));
                let (done, outcome) = tokio::sync::oneshot::channel();
                let request = crate::attack::AttackRequest {
                    command_id: id,
                    session_id,
                    device,
                    steps,
                    gap: Duration::from_secs(gap_secs.into()),
                    abort: abort.clone(),
                    done,
                };
                if self.to_pipeline.send(PipelineUpdate::Attack(request)).is_err() {
                    return Handled::Answer(self.answer(id, Err("the pipeline has stopped".into())));
                }
                self.attack = Some((session_id, abort));
                self.attack_command = Some(id);
                self.running.insert(id);
                later(
                    id,
                    Box::pin(async move { outcome.await.unwrap_or_else(|_| Err("the pipeline has stopped".into())) }),
                );
                return Handled::Running;
            }
            Action::AttackStop { session_id, .. } => match &self.attack {
                Some((running, abort)) if *running == session_id => {
                    abort.store(true, Ordering::Relaxed);
                    Ok(format!("stopping attack session {session_id}"))
                }
                _ => Ok(format!("attack session {session_id} is not running on this agent")),
            },
            Action::StartMonitoring { device, .. } => self.monitor(device, true),
            Action::StopMonitoring { device, .. } => self.monitor(device, false),
            Action::ReplayPcap {
                device,
                upload_id,
                len,
                sha256,
                ..
            } => {
                let Some(bulk) = self.bulk.clone() else {
                    return Handled::Answer(self.answer(
                        id,
                        Err("replays come over QUIC, which needs an enrolled agent (gatewatch-agent enroll)".into()),
                    ));
                };
                // The uploaded traffic is the device's: it is monitored from now on.
                if let Err(e) = self.monitor(device, true) {
                    return Handled::Answer(self.answer(id, Err(e)));
                }
                self.running.insert(id);
                let replay = Replay {
                    command_id: id,
                    bulk,
                    dir: self.replay_dir.clone(),
                    device,
                    upload_id,
                    len,
                    sha256,
                    to_pipeline: self.to_pipeline.clone(),
                };
                later(id, Box::pin(replay.run()));
                return Handled::Running;
            }
        };
        Handled::Answer(self.answer(id, outcome))
    }

    /// Keeps the hub's prevention rules for restarts and hands them to the pipeline. A file
    /// that cannot be written is logged: the pipeline still gets them, and the hub sends them
    /// again at the next connection.
    fn set_rules(&mut self, rules: Vec<fleet::Rule>) {
        if let Err(e) = crate::prevent::save_rules(&self.state_dir, &rules) {
            tracing::warn!(error = %e, "could not keep the prevention rules in the state directory");
        }
        let _ = self.to_pipeline.send(PipelineUpdate::Rules(rules));
    }

    /// Records the end of a command that ran in a task; returns the answer to send.
    pub fn finished(&mut self, id: Uuid, outcome: Result<String, String>) -> CommandResult {
        self.running.remove(&id);
        if self.attack_command == Some(id) {
            self.attack = None;
            self.attack_command = None;
        }
        self.answer(id, outcome)
    }

    fn answer(&mut self, id: Uuid, outcome: Result<String, String>) -> CommandResult {
        let (outcome, message) = match outcome {
            Ok(m) => (Outcome::Done, m),
            Err(m) => (Outcome::Failed, m),
        };
        tracing::info!(command = %id, outcome = outcome.as_str(), %message, "command from the hub ended");
        let result = CommandResult {
            schema: fleet::SCHEMA,
            command_id: id,
            outcome,
            message,
        };
        if self.answered.len() == REMEMBERED {
            self.answered.pop_front();
        }
        self.answered.push_back(result.clone());
        result
    }

    fn monitor(&mut self, device: IpAddr, on: bool) -> Result<String, String> {
        let mut next = self.overrides.clone();
        if on {
            next.start(device);
        } else {
            next.stop(device);
        }
        if next != self.overrides {
            next.save(&self.overrides_path)
                .map_err(|e| format!("{}: {e}", self.overrides_path.display()))?;
            self.to_pipeline
                .send(PipelineUpdate::Overrides(next.clone()))
                .map_err(|_| "the pipeline has stopped".to_string())?;
            self.overrides = next;
        }
        Ok(if on {
            format!("monitoring {device}")
        } else {
            format!("stopped monitoring {device}")
        })
    }
}

/// A capture replay to run: fetch, hand to the pipeline, wait for its end.
#[derive(Debug)]
pub struct Replay {
    pub command_id: Uuid,
    bulk: Arc<BulkClient>,
    dir: PathBuf,
    device: IpAddr,
    upload_id: Uuid,
    len: u64,
    sha256: String,
    to_pipeline: std::sync::mpsc::Sender<PipelineUpdate>,
}

impl Replay {
    pub async fn run(self) -> Result<String, String> {
        let path = self
            .bulk
            .fetch_capture(self.upload_id, self.len, &self.sha256, &self.dir)
            .await
            .map_err(|e| format!("fetching the capture: {e}"))?;
        let (done, report) = tokio::sync::oneshot::channel();
        self.to_pipeline
            .send(PipelineUpdate::Replay(ReplayRequest {
                path: path.clone(),
                device: self.device,
                done,
            }))
            .map_err(|_| "the pipeline has stopped".to_string())?;
        let outcome = report.await.map_err(|_| "the pipeline has stopped".to_string());
        let _ = tokio::fs::remove_file(&path).await;
        let r = outcome??;
        Ok(format!(
            "replayed {} packets: {} flows, {} to or from {}",
            r.packets, r.flows, r.device_flows, self.device
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_from_the_hub_reach_the_pipeline_and_the_disk_without_an_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = std::sync::mpsc::channel();
        let mut commands = Commands::new(dir.path(), tx, None).expect("commands");
        let rules = vec![fleet::Rule {
            id: Uuid::now_v7(),
            name: "block scanners".into(),
            device: None,
            threshold: 0.9,
            action: fleet::RuleAction::BlockIp,
            cooldown_secs: 60,
            duration_secs: 600,
            rate_pps: 50,
        }];
        let handled = commands.handle(Action::SetRules { rules: rules.clone() }, |_, _| panic!("runs now"));
        assert!(matches!(handled, Handled::Applied), "{handled:?}");
        match rx.try_recv() {
            Ok(PipelineUpdate::Rules(r)) => assert_eq!(r, rules),
            other => panic!("expected rules, got {other:?}"),
        }
        assert_eq!(crate::prevent::load_rules(dir.path()).expect("kept"), rules);
    }

    #[test]
    fn start_and_stop_reach_the_pipeline_and_the_disk_and_repeats_are_answered_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, rx) = std::sync::mpsc::channel();
        let mut commands = Commands::new(dir.path(), tx, None).expect("commands");
        let device: IpAddr = "10.9.0.4".parse().expect("ip");
        let stop = Action::StopMonitoring {
            command_id: Uuid::now_v7(),
            device,
        };
        let Handled::Answer(first) = commands.handle(stop.clone(), |_, _| panic!("runs now")) else {
            panic!("answered at once");
        };
        assert_eq!(first.outcome, Outcome::Done, "{first:?}");
        match rx.try_recv() {
            Ok(PipelineUpdate::Overrides(o)) => assert!(o.stopped.contains(&device)),
            other => panic!("expected overrides, got {other:?}"),
        }
        let kept = Overrides::load(&dir.path().join(crate::detect::monitor::FILE)).expect("kept");
        assert!(kept.stopped.contains(&device));
        // Delivered again (the hub did not hear the answer): same answer, not run again.
        let Handled::Answer(again) = commands.handle(stop, |_, _| panic!("not run again")) else {
            panic!("answered again");
        };
        assert_eq!(again, first);
        assert!(rx.try_recv().is_err(), "nothing new for the pipeline");

        // A restarted agent starts from what was kept.
        let (tx, _rx) = std::sync::mpsc::channel();
        let mut restarted = Commands::new(dir.path(), tx, None).expect("commands");
        assert!(restarted.overrides.stopped.contains(&device));
        let replay = Action::ReplayPcap {
            command_id: Uuid::now_v7(),
            device,
            upload_id: Uuid::now_v7(),
            len: 24,
            sha256: "00".into(),
        };
        let Handled::Answer(refused) = restarted.handle(replay, |_, _| panic!("no QUIC, no replay")) else {
            panic!("answered at once");
        };
        assert_eq!(refused.outcome, Outcome::Failed);
        assert!(refused.message.contains("enroll"), "{}", refused.message);
    }
}
