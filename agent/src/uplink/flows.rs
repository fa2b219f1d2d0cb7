//! Flow records of monitored devices, uploaded over QUIC for the hub's traffic log. Best
//! effort, bounded: records queue in memory (the pipeline drops and counts what does not fit)
//! and go up in batches; a failed batch is retried with backoff, and every record has an id
//! made here, so a retried batch is stored once.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatewatch_proto::bulk::{FlowSource, FlowUpload, MAX_FLOWS_PER_REQUEST};
use gatewatch_proto::FlowRecord;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::bulk::BulkClient;

/// Records queued for upload at most.
pub const QUEUE: usize = 20_000;
/// A batch goes up after this long even if not full.
const BATCH_WAIT: Duration = Duration::from_secs(1);

/// The pipeline's end: turns flows into records and queues them without ever blocking.
#[derive(Debug, Clone)]
pub struct FlowTap {
    tx: mpsc::Sender<FlowUpload>,
    source: FlowSource,
    pub dropped: Arc<AtomicU64>,
}

impl FlowTap {
    pub fn new(source: FlowSource) -> (FlowTap, mpsc::Receiver<FlowUpload>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let tap = FlowTap {
            tx,
            source,
            dropped: Arc::default(),
        };
        (tap, rx)
    }

    /// Queues `flow` as a record of `device`, from `source` if not the agent's own source
    /// (a replayed capture).
    pub fn offer(&self, flow: &FlowRecord, device: std::net::IpAddr, source: Option<FlowSource>) {
        // cic2017 mode may give ±∞ or NaN rates; the traffic log holds finite numbers.
        let features = flow
            .features_f32()
            .iter()
            .map(|&v| if v.is_nan() { 0.0 } else { v.clamp(f32::MIN, f32::MAX) })
            .collect();
        let record = FlowUpload {
            id: Uuid::now_v7(),
            device,
            ts_ms: flow.first_ts_ns.div_euclid(1_000_000),
            features,
            source: source.unwrap_or(self.source),
        };
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// What the uploader did, for the summary at exit.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowReport {
    pub uploaded: u64,
    pub failed_attempts: u64,
    /// Left unsent at exit.
    pub unsent: u64,
}

/// Uploads until the pipeline closes the queue, then tries once more with what is left.
pub async fn upload(
    client: Arc<BulkClient>,
    mut rx: mpsc::Receiver<FlowUpload>,
    metrics: Arc<crate::metrics::AgentMetrics>,
) -> FlowReport {
    let mut report = FlowReport::default();
    let mut batch: Vec<FlowUpload> = Vec::new();
    let mut backoff = Duration::from_millis(500);
    let mut last_error: Option<String> = None;
    let mut open = true;
    while open || !batch.is_empty() {
        // Fill the batch: up to the request limit, or until BATCH_WAIT after its first record.
        let deadline = Instant::now() + BATCH_WAIT;
        while open && batch.len() < MAX_FLOWS_PER_REQUEST {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some(record)) => batch.push(record),
                Ok(None) => open = false,
                Err(_) if batch.is_empty() => continue,
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let attempt = tokio::time::timeout(Duration::from_secs(30), client.upload_flows(batch.clone())).await;
        match attempt {
            Ok(Ok(_)) => {
                report.uploaded += batch.len() as u64;
                metrics.flow_records_uploaded.store(report.uploaded, Relaxed);
                batch.clear();
                backoff = Duration::from_millis(500);
                if last_error.take().is_some() {
                    tracing::info!("flow records reach the hub again");
                }
            }
            outcome => {
                report.failed_attempts += 1;
                let reason = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no answer in 30 s".into(),
                };
                if last_error.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(%reason, records = batch.len(), "flow records not uploaded; retrying");
                    last_error = Some(reason);
                }
                if !open {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    report.unsent = batch.len() as u64;
    report
}
