//! The agent's counters, served in the Prometheus text format on a small local endpoint
//! (`metrics_listen`, 127.0.0.1:9477 by default). The pipeline and the uplink copy their
//! own statistics in about once a second; the endpoint only reads.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatewatch_proto::metrics::Exposition;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Default)]
pub struct AgentMetrics {
    pub packets: AtomicU64,
    pub flows: AtomicU64,
    pub windows_scored: AtomicU64,
    pub attack_windows: AtomicU64,
    pub scoring_failures: AtomicU64,
    pub detections: AtomicU64,
    pub batches_sent: AtomicU64,
    pub batches_acked: AtomicU64,
    pub spool_records: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub spool_dropped: AtomicU64,
    pub reconnects: AtomicU64,
    pub flow_records_uploaded: AtomicU64,
    pub flow_records_dropped: AtomicU64,
    pub prevention_fired: AtomicU64,
    pub prevention_enforced: AtomicU64,
    pub prevention_failed: AtomicU64,
    pub model_version: Mutex<String>,
    /// Federated-learning rounds this agent uploaded an update for.
    pub fl_rounds: AtomicU64,
    /// The local training set's windows per family, in `gatewatch_models::FAMILIES` order.
    pub fl_local_windows: [AtomicU64; gatewatch_models::FAMILY_COUNT],
}

impl AgentMetrics {
    pub fn render(&self) -> String {
        let mut m = Exposition::default();
        let c = |a: &AtomicU64| a.load(Relaxed);
        m.counter(
            "gatewatch_agent_packets_total",
            "Packets read from the source.",
            c(&self.packets),
        );
        m.counter("gatewatch_agent_flows_total", "Flows completed.", c(&self.flows));
        m.counter(
            "gatewatch_agent_windows_scored_total",
            "Windows of 10 flows scored by the model.",
            c(&self.windows_scored),
        );
        m.counter(
            "gatewatch_agent_attack_windows_total",
            "Windows scored as attacks.",
            c(&self.attack_windows),
        );
        m.counter(
            "gatewatch_agent_scoring_failures_total",
            "Windows lost to a model error.",
            c(&self.scoring_failures),
        );
        m.counter(
            "gatewatch_agent_detections_total",
            "Detections handed to the uplink.",
            c(&self.detections),
        );
        m.counter(
            "gatewatch_agent_batches_sent_total",
            "Prediction batches published (resends included).",
            c(&self.batches_sent),
        );
        m.counter(
            "gatewatch_agent_batches_acked_total",
            "Prediction batches the hub acknowledged.",
            c(&self.batches_acked),
        );
        m.gauge(
            "gatewatch_agent_spool_records",
            "Batches in the spool waiting for acknowledgement.",
            c(&self.spool_records) as f64,
        );
        m.gauge(
            "gatewatch_agent_spool_bytes",
            "Bytes of spool segment files.",
            c(&self.spool_bytes) as f64,
        );
        m.counter(
            "gatewatch_agent_spool_dropped_total",
            "Batches dropped because the spool was full.",
            c(&self.spool_dropped),
        );
        m.counter(
            "gatewatch_agent_reconnects_total",
            "Reconnections to the hub's broker.",
            c(&self.reconnects),
        );
        m.counter(
            "gatewatch_agent_flow_records_uploaded_total",
            "Flow records uploaded over QUIC.",
            c(&self.flow_records_uploaded),
        );
        m.counter(
            "gatewatch_agent_flow_records_dropped_total",
            "Flow records dropped because the upload queue was full.",
            c(&self.flow_records_dropped),
        );
        m.counter(
            "gatewatch_agent_prevention_fired_total",
            "Prevention rules that fired (dry run included).",
            c(&self.prevention_fired),
        );
        m.counter(
            "gatewatch_agent_prevention_enforced_total",
            "Prevention measures applied with nftables.",
            c(&self.prevention_enforced),
        );
        m.counter(
            "gatewatch_agent_prevention_failed_total",
            "Prevention measures nftables refused.",
            c(&self.prevention_failed),
        );
        m.counter(
            "gatewatch_agent_fl_rounds_total",
            "Federated-learning rounds this agent uploaded an encrypted update for.",
            c(&self.fl_rounds),
        );
        let windows: Vec<(&str, f64)> = gatewatch_models::FAMILIES
            .iter()
            .zip(&self.fl_local_windows)
            .map(|(f, n)| (f.name(), c(n) as f64))
            .collect();
        m.gauge_by(
            "gatewatch_agent_fl_local_windows",
            "Windows in the local training set, by family (they never leave the gateway).",
            "family",
            &windows,
        );
        let version = self.model_version.lock().map(|v| v.clone()).unwrap_or_default();
        m.gauge_by(
            "gatewatch_agent_model_info",
            "The model version in use (value 1).",
            "version",
            &[(&version, 1.0)],
        );
        m.finish()
    }
}

/// Answers every request on `listener` with the metrics (any path: a scraper needs no more).
pub async fn serve(listener: TcpListener, metrics: Arc<AgentMetrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            // Read the whole request head (bounded, it may come in pieces); its content does not matter.
            let read_head = async {
                let mut head = Vec::with_capacity(1024);
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), read_head).await;
            let body = metrics.render();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
