//! One run, start to end: key committee, rounds, aggregation, decryption, new model
//! versions, activation. Each wait is bounded and checks the stop switch; a round that cannot
//! complete is recorded as failed with its reason and the run goes on (until
//! `max_failed_rounds`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::prelude::*;
use gatewatch_ckks::{CommitteeConfig, ParamSetId, WireFormat};
use gatewatch_models::store::{load_training_state, Metadata};
use gatewatch_models::Scaler;
use gatewatch_proto::fl::{ClientMetrics, DecryptOrder, KeygenOrder, Seat, TrainOrder};
use gatewatch_proto::fleet::{self, Action, Channel};
use rand::seq::SliceRandom;
use rand::RngCore;
use uuid::Uuid;

use super::relay::{Decryption, Round, State};
use super::{Activate, Coordinator, MemberStatus, RunParams};
use crate::db::schema::{agents, fl_client_metrics, fl_rounds, fl_runs, system_settings};

const KEYGEN_WAIT: Duration = Duration::from_secs(180);
const DECRYPT_WAIT: Duration = Duration::from_secs(60);
/// An upload in flight at the deadline still gets this long.
const GRACE: Duration = Duration::from_secs(2);

/// How a run ended.
enum End {
    Stopped,
    Failed(String),
}

impl From<String> for End {
    fn from(s: String) -> End {
        End::Failed(s)
    }
}

/// Runs the run and records how it ended.
pub(super) async fn supervise(
    fl: Arc<Coordinator>,
    client: rumqttc::AsyncClient,
    run_id: Uuid,
    epoch: u64,
    params: RunParams,
    stop: Arc<AtomicBool>,
) {
    let mut run = Run {
        fl: fl.clone(),
        client,
        run_id,
        epoch,
        params,
        stop,
        failed_rounds: 0,
        done_rounds: 0,
    };
    let outcome = run.drive().await;
    let (status, message) = match outcome {
        Ok(()) => ("completed", format!("{} rounds completed", run.done_rounds)),
        Err(End::Stopped) => ("stopped", "stopped by an admin".to_string()),
        Err(End::Failed(why)) => ("failed", why),
    };
    tracing::info!(run = %run_id, status, %message, "federated learning run ended");
    *fl.relay.lock().await = None;
    let msg = message.clone();
    let recorded = crate::broker::run(&fl.db, move |c| {
        diesel::update(fl_runs::table.find(run_id))
            .set((
                fl_runs::status.eq(status),
                fl_runs::message.eq(msg),
                fl_runs::ended_at.eq(Utc::now()),
            ))
            .execute(c)
    })
    .await;
    if let Err(e) = recorded {
        tracing::error!(run = %run_id, error = %e, "recording the run's end failed");
    }
    fl.update_status(|s| {
        *s = super::Status {
            message: Some(format!("run {run_id} {status}: {message}")),
            ..super::Status::default()
        }
    });
    fl.finish_running(run_id);
}

struct Run {
    fl: Arc<Coordinator>,
    client: rumqttc::AsyncClient,
    run_id: Uuid,
    epoch: u64,
    params: RunParams,
    stop: Arc<AtomicBool>,
    failed_rounds: u32,
    done_rounds: u32,
}

/// The global model of a run.
struct Global {
    version: String,
    flat: Vec<f32>,
    scaler: Scaler,
    metadata: Metadata,
}

impl Run {
    fn stopped(&self) -> Result<(), End> {
        if self.stop.load(Relaxed) {
            Err(End::Stopped)
        } else {
            Ok(())
        }
    }

    async fn send(&self, agent: Uuid, action: Action) {
        let payload = fleet::payload(&fleet::Command {
            schema: fleet::SCHEMA,
            action,
        });
        if let Err(e) = self
            .client
            .publish(
                fleet::topic(agent, Channel::Command),
                rumqttc::QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
        {
            tracing::warn!(%agent, error = %e, "FL order not sent");
        }
    }

    /// Online, enrolled, not revoked agents.
    async fn online(&self) -> Result<Vec<Uuid>, String> {
        crate::broker::run(&self.fl.db, |c| {
            agents::table
                .filter(agents::status.eq("online"))
                .filter(agents::cert_fingerprint.is_not_null())
                .filter(agents::revoked_at.is_null())
                .select(agents::id)
                .load::<Uuid>(c)
        })
        .await
    }

    /// Waits until `done` holds on the relay state, the time is up or the run is stopped.
    async fn wait_for(&self, until: Instant, mut done: impl FnMut(&State) -> bool) -> Result<bool, End> {
        loop {
            self.stopped()?;
            {
                let guard = self.fl.relay.lock().await;
                if guard.as_ref().is_some_and(&mut done) {
                    return Ok(true);
                }
            }
            let now = Instant::now();
            if now >= until {
                return Ok(false);
            }
            let nap = (until - now).min(Duration::from_millis(250));
            let _ = tokio::time::timeout(nap, self.fl.progress.notified()).await;
        }
    }

    async fn drive(&mut self) -> Result<(), End> {
        let ckks = ParamSetId::ALL
            .into_iter()
            .find(|p| p.name() == self.params.ckks_params)
            .ok_or_else(|| format!("unknown CKKS parameters {:?}", self.params.ckks_params))?;
        let mut global = self.start_model().await?;
        let mut seats = self.keygen(ckks, &global).await?;
        let mut candidate: Option<(String, i32)> = None;
        let mut round = 0u64;
        while (round as u32) < self.params.num_rounds {
            self.stopped()?;
            round += 1;
            // Revoked members leave; with fewer than t left, a new committee (a new epoch).
            let revoked = self.revoked(&seats).await?;
            let remaining = seats.iter().filter(|s| !revoked.contains(&s.agent_id)).count();
            if remaining < self.params.threshold as usize {
                self.epoch += 1;
                tracing::info!(run = %self.run_id, epoch = self.epoch, "committee below its threshold: a new key epoch");
                seats = self.keygen(ckks, &global).await?;
            }
            let compare = match (self.params.activate, &candidate) {
                (Activate::IfBetter, Some(_)) => self.fl.models.active_files().map(|(v, _)| v),
                _ => None,
            };
            match self
                .round(round, ckks, &seats, &global, compare.clone(), self.params.local_epochs)
                .await?
            {
                Ok((next, row, evaluations)) => {
                    self.done_rounds += 1;
                    if let Some((version, row_id)) = candidate.take() {
                        self.decide(&version, row_id, &evaluations, compare.as_deref()).await;
                    }
                    candidate = Some((next.version.clone(), row));
                    global = next;
                }
                Err(reason) => {
                    self.failed_rounds += 1;
                    tracing::warn!(run = %self.run_id, round, %reason, "FL round failed");
                    if self.failed_rounds >= self.params.max_failed_rounds {
                        return Err(End::Failed(format!(
                            "{} rounds failed (max_failed_rounds); the last: {reason}",
                            self.failed_rounds
                        )));
                    }
                    // Give agents a moment to come back before the next round.
                    let until = Instant::now() + Duration::from_secs(5);
                    self.wait_for(until, |_| false).await?;
                }
            }
        }
        // The last round's model is judged by an evaluation-only round.
        if let (Activate::IfBetter, Some((version, row))) = (self.params.activate, candidate) {
            let compare = self.fl.models.active_files().map(|(v, _)| v);
            if compare.as_deref() != Some(version.as_str()) {
                if let Ok(Ok((_, _, evaluations))) =
                    self.round(round + 1, ckks, &seats, &global, compare.clone(), 0).await
                {
                    self.decide(&version, row, &evaluations, compare.as_deref()).await;
                }
            }
        }
        Ok(())
    }

    /// The members whose agents were revoked (offline members stay: they may come back).
    async fn revoked(&self, seats: &[Seat]) -> Result<Vec<Uuid>, String> {
        let ids: Vec<Uuid> = seats.iter().map(|s| s.agent_id).collect();
        crate::broker::run(&self.fl.db, move |c| {
            agents::table
                .filter(agents::id.eq_any(ids))
                .filter(agents::revoked_at.is_not_null())
                .select(agents::id)
                .load::<Uuid>(c)
        })
        .await
    }

    async fn start_model(&self) -> Result<Global, End> {
        let (version, dir) = self
            .fl
            .models
            .active_files()
            .ok_or_else(|| "the hub has no active model to start from".to_string())?;
        let (flat, scaler, metadata) = tokio::task::spawn_blocking(move || load_training_state(&dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| {
                format!("the active model {version} cannot be trained: {e} (federated learning needs its params.bin)")
            })?;
        Ok(Global {
            version,
            flat,
            scaler,
            metadata,
        })
    }

    /// Picks the committee among online agents and waits for the collective key.
    async fn keygen(&mut self, ckks: ParamSetId, global: &Global) -> Result<Vec<Seat>, End> {
        let mut online = self.online().await?;
        let n = self.params.committee_size as usize;
        if online.len() < n {
            return Err(End::Failed(format!(
                "{} agents are online; the key committee needs {n}",
                online.len()
            )));
        }
        online.shuffle(&mut rand::thread_rng());
        let seats: Vec<Seat> = online
            .iter()
            .take(n)
            .enumerate()
            .map(|(i, a)| Seat {
                member: (i + 1) as u8,
                agent_id: *a,
            })
            .collect();
        let mut seed = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut seed);
        let config = CommitteeConfig::new(ckks, self.epoch, n as u8, self.params.threshold, seed)
            .map_err(|e| End::Failed(e.to_string()))?;
        *self.fl.relay.lock().await = Some(State {
            run_id: self.run_id,
            config,
            seats: seats.clone(),
            hellos: BTreeMap::new(),
            public_shares: BTreeMap::new(),
            sealed: Vec::new(),
            key: None,
            ready: BTreeSet::new(),
            round: None,
            update_len: global.flat.len(),
            max_weight: self.params.max_weight,
        });
        let (run_id, epoch, seats_json) = (
            self.run_id,
            self.epoch as i64,
            serde_json::to_value(&seats).map_err(|e| e.to_string())?,
        );
        crate::broker::run(&self.fl.db, move |c| {
            diesel::update(fl_runs::table.find(run_id))
                .set((
                    fl_runs::status.eq("keygen"),
                    fl_runs::epoch.eq(epoch),
                    fl_runs::committee.eq(seats_json),
                ))
                .execute(c)
        })
        .await?;
        let committee = self.committee_status(&seats).await;
        let epoch = self.epoch;
        self.fl.update_status(|s| {
            s.state = "keygen";
            s.epoch = Some(epoch);
            s.committee = committee;
            s.message = Some("the key committee is making the collective key".into());
        });
        let order = KeygenOrder {
            run_id: self.run_id,
            epoch: self.epoch,
            params: ckks.name().to_string(),
            threshold: self.params.threshold,
            seats: seats.clone(),
            crp_seed: gatewatch_proto::fl::to_hex(&seed),
            min_contributions: self.params.min_clients,
        };
        for s in &seats {
            self.send(s.agent_id, Action::FlKeygen(order.clone())).await;
        }
        let ready = self
            .wait_for(Instant::now() + KEYGEN_WAIT, |st| {
                st.key.is_some() && st.ready.len() == st.seats.len()
            })
            .await?;
        if !ready {
            let missing: Vec<String> = {
                let guard = self.fl.relay.lock().await;
                guard
                    .as_ref()
                    .map(|st| {
                        st.seats
                            .iter()
                            .filter(|s| !st.ready.contains(&s.member))
                            .map(|s| s.agent_id.to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            return Err(End::Failed(format!(
                "the key committee did not make its key within {} s (members without their share: {})",
                KEYGEN_WAIT.as_secs(),
                missing.join(", ")
            )));
        }
        tracing::info!(run = %self.run_id, epoch = self.epoch, members = n, "collective key made");
        Ok(seats)
    }

    async fn committee_status(&self, seats: &[Seat]) -> Vec<MemberStatus> {
        let online = self.online().await.unwrap_or_default();
        seats
            .iter()
            .map(|s| MemberStatus {
                member: s.member,
                agent_id: s.agent_id,
                online: online.contains(&s.agent_id),
            })
            .collect()
    }

    /// One round. `Ok(Err(reason))` is a failed round (recorded); `Err` ends the run.
    #[allow(clippy::type_complexity)]
    async fn round(
        &self,
        number: u64,
        ckks: ParamSetId,
        seats: &[Seat],
        global: &Global,
        compare: Option<String>,
        epochs: u32,
    ) -> Result<Result<(Global, i32, BTreeMap<Uuid, ClientMetrics>), String>, End> {
        let started = Instant::now();
        let mut online = self.online().await?;
        let global_round = self.next_round_number().await?;
        let fail = |reason: String, selected: usize, stats: RoundStats| {
            let run = self.clone_ids();
            async move {
                let r = reason.clone();
                let _ = record_failed(&self.fl, run, number, global_round, &global.version, r, selected, stats).await;
                self.fl.stats.rounds_failed.fetch_add(1, Relaxed);
                Ok(Err(reason))
            }
        };
        let min = self.params.min_clients as usize;
        if online.len() < min {
            return fail(
                format!("{} agents online, fewer than min_clients {min}", online.len()),
                0,
                RoundStats::default(),
            )
            .await;
        }
        online.shuffle(&mut rand::thread_rng());
        let want = ((online.len() as f64 * self.params.fraction).ceil() as usize).clamp(min, online.len());
        let selected: BTreeSet<Uuid> = online.iter().take(want).copied().collect();
        let deadline = Utc::now() + chrono::Duration::seconds(i64::from(self.params.deadline_secs));
        let round = Round::new(
            number,
            deadline.timestamp_millis(),
            selected.clone(),
            ckks,
            self.epoch,
            global.flat.len(),
        )?;
        if let Some(st) = self.fl.relay.lock().await.as_mut() {
            st.round = Some(round);
        }
        let committee = self.committee_status(seats).await;
        let selected_count = selected.len();
        self.fl.update_status(|s| {
            s.state = "training";
            s.round = Some(number);
            s.clients_selected = selected_count;
            s.clients_uploaded = 0;
            s.deadline = Some(deadline);
            s.committee = committee;
            s.global_model = Some(global.version.clone());
            s.message = Some(if epochs == 0 {
                "clients measure the last round's model".into()
            } else {
                format!("round {number}: clients train")
            });
        });
        let order = TrainOrder {
            run_id: self.run_id,
            round: number,
            epoch: self.epoch,
            model_version: global.version.clone(),
            local_epochs: epochs,
            learning_rate: self.params.learning_rate,
            batch_size: self.params.batch_size,
            deadline_ms: deadline.timestamp_millis(),
            clip_norm: self.params.clip_norm,
            max_weight: self.params.max_weight,
            compare_with: compare.filter(|c| *c != global.version),
        };
        for agent in &selected {
            self.send(*agent, Action::FlTrain(order.clone())).await;
        }
        let until = Instant::now() + Duration::from_secs(u64::from(self.params.deadline_secs)) + GRACE;
        let mut last_uploaded = 0;
        loop {
            let done = self
                .wait_for(
                    Instant::now() + Duration::from_secs(1).min(until.saturating_duration_since(Instant::now())),
                    |st| st.round.as_ref().is_some_and(Round::all_answered),
                )
                .await?;
            let uploaded = self
                .fl
                .relay
                .lock()
                .await
                .as_ref()
                .and_then(|st| st.round.as_ref())
                .map_or(0, |r| r.metrics.len() + r.evaluations.len());
            if uploaded != last_uploaded {
                last_uploaded = uploaded;
                self.fl.update_status(|s| s.clients_uploaded = uploaded);
            }
            if done || Instant::now() >= until {
                break;
            }
        }
        // Close the round to late uploads and take its state out.
        let taken = {
            let mut guard = self.fl.relay.lock().await;
            guard.as_mut().and_then(|st| {
                if let Some(r) = st.round.as_mut() {
                    r.deadline_ms = i64::MIN;
                }
                st.round.as_ref().map(RoundStats::of)
            })
        };
        let stats = taken.unwrap_or_default();
        if epochs == 0 {
            let evaluations = self
                .fl
                .relay
                .lock()
                .await
                .as_mut()
                .and_then(|st| st.round.take())
                .map(|r| r.evaluations)
                .unwrap_or_default();
            return Ok(Ok((
                Global {
                    version: global.version.clone(),
                    flat: Vec::new(),
                    scaler: global.scaler.clone(),
                    metadata: global.metadata.clone(),
                },
                0,
                evaluations,
            )));
        }
        if stats.uploaded < min {
            return fail(
                format!(
                    "{} of {} selected clients uploaded by the deadline; min_clients is {min}",
                    stats.uploaded, stats.selected
                ),
                selected_count,
                stats,
            )
            .await;
        }

        // Decryption by t online committee members.
        self.fl.update_status(|s| {
            s.state = "decrypting";
            s.message = Some(format!("round {number}: the committee decrypts the sum"));
        });
        // Offline members are not asked; below the threshold, wait a while for them to return.
        let t = self.params.threshold as usize;
        let members_wait = Instant::now() + DECRYPT_WAIT;
        let mut participants: Vec<u8>;
        loop {
            let online_now = self.online().await?;
            participants = seats
                .iter()
                .filter(|s| online_now.contains(&s.agent_id))
                .map(|s| s.member)
                .collect();
            if participants.len() >= t || Instant::now() >= members_wait {
                break;
            }
            self.fl.update_status(|s| {
                s.message = Some(format!(
                    "round {number}: waiting for committee members ({} of {t} online)",
                    participants.len()
                ))
            });
            self.wait_for(Instant::now() + Duration::from_secs(1), |_| false)
                .await?;
        }
        if participants.len() < t {
            return fail(
                format!(
                    "{} committee members online after {} s, the threshold is {t}: the sum cannot be decrypted",
                    participants.len(),
                    DECRYPT_WAIT.as_secs()
                ),
                selected_count,
                stats,
            )
            .await;
        }
        participants.truncate(t);
        {
            let mut guard = self.fl.relay.lock().await;
            if let Some(r) = guard.as_mut().and_then(|st| st.round.as_mut()) {
                let request =
                    r.aggregate
                        .decryption_request(r.receipts.clone(), self.params.min_clients, &participants);
                r.decryption = Some(Decryption {
                    participants: participants.clone(),
                    request: request.to_bytes(),
                    shares: BTreeMap::new(),
                });
            }
        }
        let order = DecryptOrder {
            run_id: self.run_id,
            epoch: self.epoch,
            round: number,
        };
        for s in seats.iter().filter(|s| participants.contains(&s.member)) {
            self.send(s.agent_id, Action::FlDecrypt(order.clone())).await;
        }
        let got = self
            .wait_for(Instant::now() + DECRYPT_WAIT, |st| {
                st.round
                    .as_ref()
                    .and_then(|r| r.decryption.as_ref())
                    .is_some_and(|d| d.shares.len() >= t)
            })
            .await?;
        let Some(round_state) = self.fl.relay.lock().await.as_mut().and_then(|st| st.round.take()) else {
            return Err(End::Failed("the round's state is gone".into()));
        };
        if !got {
            let answered = round_state.decryption.as_ref().map_or(0, |d| d.shares.len());
            return fail(
                format!(
                    "{answered} of {t} committee members answered the decryption request within {} s",
                    DECRYPT_WAIT.as_secs()
                ),
                selected_count,
                stats,
            )
            .await;
        }
        self.fl.update_status(|s| {
            s.state = "aggregating";
            s.message = Some(format!("round {number}: applying the average update"));
        });
        let shares: Vec<_> = round_state
            .decryption
            .as_ref()
            .map(|d| d.shares.values().cloned().collect())
            .unwrap_or_default();
        let average = match round_state.aggregate.combine(&shares) {
            Ok(a) => a,
            Err(e) => return fail(format!("combining the decryption shares: {e}"), selected_count, stats).await,
        };
        let flat: Vec<f32> = global.flat.iter().zip(&average).map(|(g, d)| g + d).collect();
        if flat.len() != global.flat.len() || flat.iter().any(|v| !v.is_finite()) {
            return fail(
                "the new model's parameters are not finite".into(),
                selected_count,
                stats,
            )
            .await;
        }
        let version = format!("fl-{}-r{number}", &self.run_id.simple().to_string()[..8]);
        let models = self.fl.models.clone();
        let (v, f, sc, md) = (
            version.clone(),
            flat.clone(),
            global.scaler.clone(),
            global.metadata.clone(),
        );
        let dir = match tokio::task::spawn_blocking(move || models.install_trained(&v, &f, &sc, &md)).await {
            Ok(Ok(dir)) => dir,
            Ok(Err(e)) => return fail(format!("storing the new model: {e}"), selected_count, stats).await,
            Err(e) => return fail(format!("storing the new model: {e}"), selected_count, stats).await,
        };
        let evaluations = round_state
            .metrics
            .iter()
            .map(|(a, m)| (*a, m.clone()))
            .collect::<BTreeMap<_, _>>();
        let row = record_completed(
            &self.fl,
            self.clone_ids(),
            number,
            global_round,
            &global.version,
            &version,
            &dir,
            &round_state,
            started.elapsed().as_secs_f64(),
            ckks,
        )
        .await?;
        self.fl.stats.rounds_completed.fetch_add(1, Relaxed);
        tracing::info!(run = %self.run_id, round = number, %version, uploads = round_state.metrics.len(), "FL round completed");
        self.fl.events.publish(
            "fl.round",
            &serde_json::json!({"run_id": self.run_id, "round": number, "status": "completed", "model_version": version}),
            &[crate::ws::Topic::Fl],
        );
        Ok(Ok((
            Global {
                version,
                flat,
                scaler: global.scaler.clone(),
                metadata: global.metadata.clone(),
            },
            row,
            evaluations,
        )))
    }

    fn clone_ids(&self) -> (Uuid, u64) {
        (self.run_id, self.epoch)
    }

    async fn next_round_number(&self) -> Result<i32, End> {
        Ok(crate::broker::run(&self.fl.db, |c| {
            let max: Option<i32> = fl_rounds::table
                .select(diesel::dsl::max(fl_rounds::round_number))
                .first(c)?;
            Ok(max.unwrap_or(0) + 1)
        })
        .await?)
    }

    /// `if_better`: activates `version` if the clients' figures for it (the global model of
    /// the round just measured) are no worse than the active model's.
    async fn decide(&self, version: &str, row: i32, evaluations: &BTreeMap<Uuid, ClientMetrics>, active: Option<&str>) {
        let Some(active) = active else {
            return;
        };
        let verdict = judge(evaluations);
        match verdict {
            Ok(why) => {
                let models = self.fl.models.clone();
                let v = version.to_string();
                let loaded = tokio::task::spawn_blocking(move || models.activate(&v)).await;
                if !matches!(loaded, Ok(Ok(_))) {
                    tracing::warn!(%version, "the better model does not load; not activated");
                    return;
                }
                let value = serde_json::Value::from(version);
                let _ = crate::broker::run(&self.fl.db, move |c| {
                    diesel::insert_into(system_settings::table)
                        .values((
                            system_settings::key.eq("active_model"),
                            system_settings::value.eq(&value),
                            system_settings::updated_at.eq(Utc::now()),
                        ))
                        .on_conflict(system_settings::key)
                        .do_update()
                        .set((
                            system_settings::value.eq(&value),
                            system_settings::updated_at.eq(Utc::now()),
                        ))
                        .execute(c)?;
                    diesel::update(fl_rounds::table.find(row))
                        .set(fl_rounds::activated.eq(true))
                        .execute(c)
                })
                .await;
                tracing::info!(%version, replaced = %active, %why, "FL model activated");
            }
            Err(why) => tracing::info!(%version, %why, "FL model not activated"),
        }
    }
}

/// `Ok(why)` if the global model's figures (`before`) are no worse than the compared active
/// model's, weighted by validation windows.
fn judge(evaluations: &BTreeMap<Uuid, ClientMetrics>) -> Result<String, String> {
    let mut w_total = 0.0;
    let (mut f1_new, mut f1_old) = (0.0, 0.0);
    let mut recall: BTreeMap<String, (f64, f64, f64)> = BTreeMap::new();
    for m in evaluations.values() {
        let Some(old) = &m.compared else {
            continue;
        };
        let w = f64::from(m.validation_windows.max(1));
        w_total += w;
        f1_new += w * m.before.f1;
        f1_old += w * old.f1;
        for (family, r_new) in &m.before.recall {
            if let Some(r_old) = old.recall.get(family) {
                let e = recall.entry(family.clone()).or_default();
                e.0 += w * r_new;
                e.1 += w * r_old;
                e.2 += w;
            }
        }
    }
    if w_total == 0.0 {
        return Err("no client measured both models".into());
    }
    let (f1_new, f1_old) = (f1_new / w_total, f1_old / w_total);
    if f1_new + 1e-9 < f1_old {
        return Err(format!(
            "weighted F1 {f1_new:.4} is below the active model's {f1_old:.4}"
        ));
    }
    for (family, (n, o, w)) in recall {
        let (n, o) = (n / w, o / w);
        if n + 0.02 < o {
            return Err(format!("{family} recall {n:.3} drops from {o:.3}"));
        }
    }
    Ok(format!("weighted F1 {f1_new:.4} vs {f1_old:.4}"))
}

/// A round's counts for its row.
#[derive(Debug, Default, Clone)]
struct RoundStats {
    selected: usize,
    uploaded: usize,
    rejected: usize,
    bytes: u64,
    clients: Vec<ClientRow>,
}

#[derive(Debug, Clone)]
struct ClientRow {
    agent: Uuid,
    status: &'static str,
    reason: Option<String>,
    metrics: Option<ClientMetrics>,
}

impl RoundStats {
    fn of(r: &Round) -> RoundStats {
        let mut clients = Vec::new();
        for a in &r.selected {
            let row = if let Some(m) = r.metrics.get(a).or_else(|| r.evaluations.get(a)) {
                ClientRow {
                    agent: *a,
                    status: "completed",
                    reason: None,
                    metrics: Some(m.clone()),
                }
            } else if r.late.contains(a) {
                ClientRow {
                    agent: *a,
                    status: "straggler",
                    reason: Some("uploaded after the deadline".into()),
                    metrics: None,
                }
            } else if let Some((_, why)) = r.rejected.iter().rev().find(|(x, _)| x == a) {
                ClientRow {
                    agent: *a,
                    status: "rejected",
                    reason: Some(why.clone()),
                    metrics: None,
                }
            } else {
                ClientRow {
                    agent: *a,
                    status: "dropped",
                    reason: Some(
                        r.declined
                            .get(a)
                            .cloned()
                            .unwrap_or_else(|| "no answer by the deadline".into()),
                    ),
                    metrics: None,
                }
            };
            clients.push(row);
        }
        RoundStats {
            selected: r.selected.len(),
            uploaded: r.metrics.len() + r.evaluations.len(),
            rejected: r.rejected.len(),
            bytes: r.bytes,
            clients,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn record_failed(
    fl: &Coordinator,
    (run_id, _epoch): (Uuid, u64),
    number: u64,
    global_round: i32,
    start_model: &str,
    reason: String,
    selected: usize,
    stats: RoundStats,
) -> Result<(), String> {
    let start_model = start_model.to_string();
    crate::broker::run(&fl.db, move |c| {
        c.transaction(|c| {
            let id: i32 = diesel::insert_into(fl_rounds::table)
                .values((
                    fl_rounds::round_number.eq(global_round),
                    fl_rounds::num_clients.eq(stats.uploaded as i32),
                    fl_rounds::aggregation_method.eq("fedavg"),
                    fl_rounds::he_scheme.eq("ckks-threshold"),
                    fl_rounds::run_id.eq(run_id),
                    fl_rounds::run_round.eq(number as i32),
                    fl_rounds::status.eq("failed"),
                    fl_rounds::reason.eq(&reason),
                    fl_rounds::clients_selected.eq(selected.max(stats.selected) as i32),
                    fl_rounds::clients_uploaded.eq(stats.uploaded as i32),
                    fl_rounds::clients_dropped.eq(stats.selected.saturating_sub(stats.uploaded) as i32),
                    fl_rounds::updates_rejected.eq(stats.rejected as i32),
                    fl_rounds::bytes_received.eq(stats.bytes as i64),
                    fl_rounds::start_model.eq(&start_model),
                ))
                .returning(fl_rounds::id)
                .get_result(c)?;
            insert_clients(c, id, &stats.clients)?;
            diesel::update(fl_runs::table.find(run_id))
                .set(fl_runs::rounds_failed.eq(fl_runs::rounds_failed + 1))
                .execute(c)?;
            Ok(())
        })
    })
    .await
}

fn insert_clients(c: &mut PgConnection, round_id: i32, clients: &[ClientRow]) -> QueryResult<()> {
    for row in clients {
        let m = row.metrics.clone().unwrap_or_default();
        let details = serde_json::json!({
            "recall_before": m.before.recall,
            "recall_after": m.after.recall,
            "composition": m.composition,
            "compared": m.compared,
        });
        diesel::insert_into(fl_client_metrics::table)
            .values((
                fl_client_metrics::round_id.eq(round_id),
                fl_client_metrics::client_id.eq(row.agent.to_string()),
                fl_client_metrics::local_loss.eq(m.after.loss),
                fl_client_metrics::local_accuracy.eq(m.after.accuracy),
                fl_client_metrics::num_samples.eq(m.samples as i32),
                fl_client_metrics::training_time_sec.eq(m.train_seconds),
                fl_client_metrics::encrypted.eq(row.metrics.is_some()),
                fl_client_metrics::status.eq(row.status),
                fl_client_metrics::reason.eq(&row.reason),
                fl_client_metrics::loss_before.eq(row.metrics.as_ref().map(|m| m.before.loss)),
                fl_client_metrics::accuracy_before.eq(row.metrics.as_ref().map(|m| m.before.accuracy)),
                fl_client_metrics::f1_before.eq(row.metrics.as_ref().map(|m| m.before.f1)),
                fl_client_metrics::f1_after.eq(row.metrics.as_ref().map(|m| m.after.f1)),
                fl_client_metrics::validation_windows.eq(m.validation_windows as i32),
                fl_client_metrics::upload_bytes.eq(m.upload_bytes as i64),
                fl_client_metrics::details.eq(row.metrics.as_ref().map(|_| details)),
            ))
            .execute(c)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn record_completed(
    fl: &Coordinator,
    (run_id, _epoch): (Uuid, u64),
    number: u64,
    global_round: i32,
    start_model: &str,
    version: &str,
    dir: &std::path::Path,
    r: &Round,
    seconds: f64,
    ckks: ParamSetId,
) -> Result<i32, String> {
    let stats = RoundStats::of(r);
    // Metrics weighted by each client's validation windows.
    let (mut w, mut loss, mut acc, mut f1, mut f1_before) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for m in r.metrics.values() {
        let k = f64::from(m.validation_windows.max(1));
        w += k;
        loss += k * m.after.loss;
        acc += k * m.after.accuracy;
        f1 += k * m.after.f1;
        f1_before += k * m.before.f1;
    }
    let w = w.max(1.0);
    let (start_model, version, path) = (start_model.to_string(), version.to_string(), dir.display().to_string());
    let poly = ckks.context().n as i32;
    crate::broker::run(&fl.db, move |c| {
        c.transaction(|c| {
            let id: i32 = diesel::insert_into(fl_rounds::table)
                .values((
                    fl_rounds::round_number.eq(global_round),
                    fl_rounds::num_clients.eq(stats.uploaded as i32),
                    fl_rounds::global_loss.eq(loss / w),
                    fl_rounds::global_accuracy.eq(acc / w),
                    fl_rounds::global_f1.eq(f1 / w),
                    fl_rounds::aggregation_method.eq("fedavg"),
                    fl_rounds::he_scheme.eq("ckks-threshold"),
                    fl_rounds::he_poly_modulus.eq(poly),
                    fl_rounds::duration_seconds.eq(seconds),
                    fl_rounds::model_checkpoint_path.eq(&path),
                    fl_rounds::run_id.eq(run_id),
                    fl_rounds::run_round.eq(number as i32),
                    fl_rounds::status.eq("completed"),
                    fl_rounds::clients_selected.eq(stats.selected as i32),
                    fl_rounds::clients_uploaded.eq(stats.uploaded as i32),
                    fl_rounds::clients_dropped.eq(stats.selected.saturating_sub(stats.uploaded) as i32),
                    fl_rounds::updates_rejected.eq(stats.rejected as i32),
                    fl_rounds::bytes_received.eq(stats.bytes as i64),
                    fl_rounds::model_version.eq(&version),
                    fl_rounds::start_model.eq(&start_model),
                    fl_rounds::f1_before.eq(f1_before / w),
                ))
                .returning(fl_rounds::id)
                .get_result(c)?;
            insert_clients(c, id, &stats.clients)?;
            diesel::update(fl_runs::table.find(run_id))
                .set((
                    fl_runs::rounds_done.eq(fl_runs::rounds_done + 1),
                    fl_runs::status.eq("training"),
                ))
                .execute(c)?;
            Ok(id)
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_proto::fl::Evaluation;

    fn metrics(new_f1: f64, old_f1: f64, new_recall: f64, old_recall: f64) -> ClientMetrics {
        let eval = |f1, r| Evaluation {
            windows: 100,
            f1,
            recall: [("scan".to_string(), r)].into_iter().collect(),
            ..Evaluation::default()
        };
        ClientMetrics {
            validation_windows: 100,
            before: eval(new_f1, new_recall),
            compared: Some(eval(old_f1, old_recall)),
            ..ClientMetrics::default()
        }
    }

    #[test]
    fn a_candidate_is_activated_only_when_no_worse() {
        let one = |m| [(Uuid::nil(), m)].into_iter().collect::<BTreeMap<_, _>>();
        assert!(judge(&one(metrics(0.95, 0.90, 0.9, 0.9))).is_ok());
        assert!(judge(&one(metrics(0.89, 0.90, 0.9, 0.9))).is_err());
        assert!(
            judge(&one(metrics(0.95, 0.90, 0.85, 0.9))).is_err(),
            "recall drop above 0.02"
        );
        assert!(
            judge(&one(metrics(0.95, 0.90, 0.89, 0.9))).is_ok(),
            "recall drop within 0.02"
        );
        assert!(judge(&BTreeMap::new()).is_err());
    }
}
