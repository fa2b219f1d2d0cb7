//! Delivery state, kept apart from MQTT I/O: detections are batched into the spool, batches
//! are handed to the connection within an in-flight window, and the hub's acknowledgements
//! (the highest batch committed to its database) release them. Unacknowledged batches are
//! sent again after a reconnect or a quiet period; the hub's inserts are idempotent.

use std::time::{Duration, Instant};

use gatewatch_proto::fleet::{Ack, PredictionBatch, PredictionMsg, SCHEMA};

use crate::prevent::Scored;
use uuid::Uuid;

use super::spool::{Spool, SpoolError, SpoolStats};

#[derive(Debug, Clone, Copy)]
pub struct SenderConfig {
    pub batch_max: usize,
    pub batch_wait: Duration,
    pub in_flight: usize,
    pub resend_after: Duration,
}

/// Counters for summaries and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    pub detections: u64,
    pub batches_spooled: u64,
    pub batches_sent: u64,
    pub resends: u64,
    pub acked_batches: u64,
    pub spool: SpoolStats,
}

#[derive(Debug)]
pub struct Sender {
    agent_id: Uuid,
    epoch: Uuid,
    config: SenderConfig,
    spool: Spool,
    open: Vec<PredictionMsg>,
    open_since: Option<Instant>,
    /// Batches handed to the connection and not yet acknowledged.
    in_flight: usize,
    last_progress: Instant,
    stats: SenderStats,
}

impl Sender {
    pub fn new(agent_id: Uuid, epoch: Uuid, spool: Spool, config: SenderConfig) -> Sender {
        Sender {
            agent_id,
            epoch,
            config,
            spool,
            open: Vec::new(),
            open_since: None,
            in_flight: 0,
            last_progress: Instant::now(),
            stats: SenderStats::default(),
        }
    }

    pub fn stats(&self) -> SenderStats {
        SenderStats {
            spool: self.spool.stats(),
            ..self.stats
        }
    }

    /// Nothing waits: no open batch, nothing unacknowledged.
    pub fn is_drained(&self) -> bool {
        self.open.is_empty() && self.spool.is_empty()
    }

    /// Adds a detection (with what prevention did about it); closes the batch into the spool
    /// when it is full.
    pub fn push(&mut self, scored: Scored, now: Instant) -> Result<(), SpoolError> {
        self.stats.detections += 1;
        self.open.push(PredictionMsg {
            id: Uuid::now_v7(),
            detection: scored.detection,
            prevention: scored.prevention,
        });
        self.open_since.get_or_insert(now);
        if self.open.len() >= self.config.batch_max {
            self.close_batch()?;
        }
        Ok(())
    }

    /// Closes the open batch if it waited long enough (call on a timer).
    pub fn tick(&mut self, now: Instant) -> Result<(), SpoolError> {
        if self
            .open_since
            .is_some_and(|since| now.duration_since(since) >= self.config.batch_wait)
        {
            self.close_batch()?;
        }
        if self.in_flight > 0 && now.duration_since(self.last_progress) >= self.config.resend_after {
            // The hub went quiet: whatever was in flight goes again.
            self.stats.resends += self.in_flight as u64;
            self.restart(now)?;
        }
        Ok(())
    }

    /// Closes the open batch now (e.g. at shutdown).
    pub fn close_batch(&mut self) -> Result<(), SpoolError> {
        self.open_since = None;
        if self.open.is_empty() {
            return Ok(());
        }
        let batch = PredictionBatch {
            schema: SCHEMA,
            agent_id: self.agent_id,
            epoch: self.epoch,
            seq: self.spool.next_seq(),
            predictions: std::mem::take(&mut self.open),
        };
        let payload = serde_json::to_vec(&batch).map_err(|e| SpoolError::Config(e.to_string()))?;
        if self.spool.append(&payload)?.is_some() {
            self.stats.batches_spooled += 1;
        }
        Ok(())
    }

    /// The batches to publish now, within the in-flight window.
    pub fn due(&mut self) -> Result<Vec<Vec<u8>>, SpoolError> {
        let room = self.config.in_flight.saturating_sub(self.in_flight);
        if room == 0 {
            return Ok(Vec::new());
        }
        let records = self.spool.read_batch(room, usize::MAX)?;
        self.in_flight += records.len();
        self.stats.batches_sent += records.len() as u64;
        Ok(records.into_iter().map(|r| r.payload).collect())
    }

    /// A (re)connection: everything unacknowledged goes again, oldest first.
    pub fn restart(&mut self, now: Instant) -> Result<(), SpoolError> {
        self.spool.rewind()?;
        self.in_flight = 0;
        self.last_progress = now;
        Ok(())
    }

    /// The hub stored every batch up to `ack.seq`.
    pub fn acked(&mut self, ack: Ack, now: Instant) -> Result<(), SpoolError> {
        if ack.epoch != self.epoch {
            return Ok(());
        }
        let before = self.spool.stats().acked;
        self.spool.ack(ack.seq)?;
        let released = self.spool.stats().acked - before;
        if released > 0 {
            self.stats.acked_batches += released;
            self.in_flight = self.in_flight.saturating_sub(released as usize);
            self.last_progress = now;
        }
        Ok(())
    }

    /// Flushes the spool to disk (the periodic fsync).
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        self.spool.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uplink::{Fsync, SpoolConfig, WhenFull};
    use gatewatch_proto::WindowSpan;

    fn detection(i: u64) -> Scored {
        let detection = gatewatch_proto::Detection {
            device: "192.168.1.20".parse().expect("ip"),
            window: WindowSpan {
                first_flow_id: i,
                last_flow_id: i + 9,
                first_ts_ns: 0,
                last_ts_ns: 1,
            },
            score: 0.9,
            label: "attack".into(),
            confidence: 0.8,
            family: "scan".into(),
            family_probs: Default::default(),
            model_version: "m".into(),
            inference_latency_ms: 0.1,
            peer: None,
            padded_flows: 0,
            simulation: None,
        };
        Scored {
            detection,
            prevention: Vec::new(),
        }
    }

    fn sender(dir: &std::path::Path) -> Sender {
        let spool = Spool::open(
            dir,
            SpoolConfig {
                max_bytes: 1 << 20,
                segment_bytes: 4096,
                fsync: Fsync::Never,
                when_full: WhenFull::RejectNew,
            },
        )
        .expect("spool");
        Sender::new(
            Uuid::now_v7(),
            Uuid::now_v7(),
            spool,
            SenderConfig {
                batch_max: 3,
                batch_wait: Duration::from_millis(200),
                in_flight: 2,
                resend_after: Duration::from_secs(10),
            },
        )
    }

    fn batch(payload: &[u8]) -> PredictionBatch {
        serde_json::from_slice(payload).expect("a batch")
    }

    #[test]
    fn batches_by_count_or_time_and_respects_the_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = sender(dir.path());
        let t0 = Instant::now();
        for i in 0..7 {
            s.push(detection(i), t0).expect("push");
        }
        // Two full batches of 3; one detection waits for its time.
        assert_eq!(s.stats().batches_spooled, 2);
        s.tick(t0 + Duration::from_millis(250)).expect("tick");
        assert_eq!(s.stats().batches_spooled, 3);
        let sent = s.due().expect("due");
        assert_eq!(sent.len(), 2, "the in-flight window is 2");
        assert_eq!(batch(&sent[0]).seq, 1);
        assert_eq!(batch(&sent[0]).predictions.len(), 3);
        assert!(s.due().expect("due").is_empty());
        let epoch = batch(&sent[0]).epoch;
        s.acked(
            Ack {
                schema: SCHEMA,
                epoch,
                seq: 1,
            },
            t0,
        )
        .expect("ack");
        let next = s.due().expect("due");
        assert_eq!(next.iter().map(|p| batch(p).seq).collect::<Vec<_>>(), [3]);
        assert_eq!(batch(&next[0]).predictions.len(), 1);
        s.acked(
            Ack {
                schema: SCHEMA,
                epoch,
                seq: 3,
            },
            t0,
        )
        .expect("ack");
        assert!(s.is_drained());
    }

    #[test]
    fn unacknowledged_batches_go_again_after_a_reconnect_or_silence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = sender(dir.path());
        let t0 = Instant::now();
        for i in 0..6 {
            s.push(detection(i), t0).expect("push");
        }
        let first = s.due().expect("due");
        assert_eq!(first.len(), 2);
        s.restart(t0).expect("reconnect");
        let again = s.due().expect("due");
        assert_eq!(again, first, "the same batches, in order");
        // Another epoch's ack changes nothing.
        s.acked(
            Ack {
                schema: SCHEMA,
                epoch: Uuid::now_v7(),
                seq: 2,
            },
            t0,
        )
        .expect("ack");
        assert!(!s.is_drained());
        s.tick(t0 + Duration::from_secs(11)).expect("tick");
        assert_eq!(s.stats().resends, 2);
        assert_eq!(s.due().expect("due"), first);
    }
}
