//! The bulk side of the fleet link: a QUIC endpoint (mutual TLS with the agents'
//! certificates, ALPN `gatewatch/1`), one bidirectional stream per request. Agents download
//! the active model here when told over MQTT that a new one exists, upload the flow records
//! of their devices for the traffic log, and fetch captures operators uploaded for replay.
//! Framing is in `gatewatch_proto::bulk`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use gatewatch_proto::bulk::{self, FlowUpload, ModelFile, Request, Response};
use quinn::{RecvStream, SendStream};
use rustls::pki_types::CertificateDer;
use uuid::Uuid;

use crate::broker::identity::Registry;
use crate::db::Db;
use crate::model::ModelStore;

/// Counters of the QUIC endpoint.
#[derive(Debug, Default)]
pub struct BulkStats {
    pub connections: AtomicU64,
    pub refused: AtomicU64,
    pub models_sent: AtomicU64,
    pub flows_stored: AtomicU64,
    pub captures_sent: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("cannot listen for agents on {addr}/udp (config key quic_port): {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("QUIC TLS settings: {0}")]
    Tls(String),
}

/// What the endpoint needs from the hub.
#[derive(Debug, Clone)]
pub struct Context {
    pub registry: Arc<Registry>,
    pub models: Arc<ModelStore>,
    pub db: Db,
    pub stats: Arc<BulkStats>,
    /// The hub's data directory, where uploaded captures wait.
    pub data_dir: std::path::PathBuf,
    /// Federated learning: what agents send and fetch during a run.
    pub fl: Arc<crate::fl::Coordinator>,
}

/// Binds the endpoint; [`serve`] then answers agents.
pub fn bind(addr: SocketAddr, tls: rustls::ServerConfig) -> Result<quinn::Endpoint, BulkError> {
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| BulkError::Tls(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(16u32.into());
    transport.max_idle_timeout(Some(
        std::time::Duration::from_secs(30)
            .try_into()
            .map_err(|e: quinn::VarIntBoundsExceeded| BulkError::Tls(e.to_string()))?,
    ));
    config.transport_config(Arc::new(transport));
    quinn::Endpoint::server(config, addr).map_err(|source| BulkError::Listen { addr, source })
}

pub async fn serve(endpoint: quinn::Endpoint, cx: Context) {
    while let Some(incoming) = endpoint.accept().await {
        let cx = cx.clone();
        tokio::spawn(async move {
            let peer = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    cx.stats.refused.fetch_add(1, Relaxed);
                    tracing::info!(%peer, error = %e, "QUIC handshake refused");
                    return;
                }
            };
            let cert: Option<Arc<Vec<u8>>> = conn
                .peer_identity()
                .and_then(|i| i.downcast::<Vec<CertificateDer<'static>>>().ok())
                .and_then(|certs| certs.first().map(|c| Arc::new(c.to_vec())));
            let identity = cert
                .as_ref()
                .and_then(|c| crate::pki::agent_of(&CertificateDer::from(c.as_slice())));
            let (Some((agent, fingerprint)), Some(cert)) = (identity, cert) else {
                cx.stats.refused.fetch_add(1, Relaxed);
                conn.close(1u32.into(), b"no client certificate");
                return;
            };
            if let Err(why) = cx.registry.check(agent, &fingerprint) {
                cx.stats.refused.fetch_add(1, Relaxed);
                tracing::warn!(%peer, %agent, reason = %why, "QUIC connection refused");
                conn.close(2u32.into(), b"not trusted");
                return;
            }
            cx.stats.connections.fetch_add(1, Relaxed);
            let mut changes = cx.registry.changes();
            loop {
                tokio::select! {
                    stream = conn.accept_bi() => match stream {
                        Ok((send, recv)) => {
                            let (cx, cert) = (cx.clone(), cert.clone());
                            tokio::spawn(async move {
                                if let Err(e) = answer(send, recv, agent, &cert, &cx).await {
                                    tracing::debug!(%agent, error = %e, "QUIC request failed");
                                }
                            });
                        }
                        Err(_) => break,
                    },
                    changed = changes.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        if let Err(why) = cx.registry.check(agent, &fingerprint) {
                            tracing::warn!(%agent, reason = %why, "agent no longer trusted; QUIC connection closed");
                            conn.close(2u32.into(), b"not trusted");
                            break;
                        }
                    }
                }
            }
        });
    }
}

async fn answer(
    mut send: SendStream,
    mut recv: RecvStream,
    agent: Uuid,
    cert: &[u8],
    cx: &Context,
) -> anyhow::Result<()> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await?;
    let len = bulk::frame_len(prefix)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    let request: Request = match bulk::decode(&body) {
        Ok(r) => r,
        Err(e) => {
            send.write_all(&bulk::encode(&Response::Error { message: e.to_string() }))
                .await?;
            send.finish()?;
            return Ok(());
        }
    };
    match request {
        Request::Model { version } => send_model(&mut send, &version, cx).await?,
        Request::Flows { records } => {
            let response = match store_flows(agent, records, cx).await {
                Ok(count) => Response::Stored { count },
                Err(message) => Response::Error { message },
            };
            send.write_all(&bulk::encode(&response)).await?;
        }
        Request::Capture { upload_id } => send_capture(&mut send, agent, upload_id, cx).await?,
        fl => {
            let (response, bytes) = fl_answer(fl, &mut recv, agent, cert, cx).await?;
            send.write_all(&bulk::encode(&response)).await?;
            send.write_all(&bytes).await?;
        }
    }
    send.finish()?;
    // Wait for the agent to read everything before the stream goes away.
    let _ = send.stopped().await;
    Ok(())
}

/// Answers a federated-learning request; raw bytes a request announces are read here.
async fn fl_answer(
    request: Request,
    recv: &mut RecvStream,
    agent: Uuid,
    cert: &[u8],
    cx: &Context,
) -> anyhow::Result<(Response, Vec<u8>)> {
    let body = match &request {
        Request::FlKeyShares { len, .. } | Request::FlUpdate { len, .. } | Request::FlDecryptionShare { len, .. } => {
            if *len > bulk::MAX_FL_BYTES {
                return Ok((
                    Response::Error {
                        message: format!("{len} bytes is over the {}-byte limit", bulk::MAX_FL_BYTES),
                    },
                    Vec::new(),
                ));
            }
            let mut body = vec![0u8; *len as usize];
            recv.read_exact(&mut body).await?;
            body
        }
        _ => Vec::new(),
    };
    let fl = &cx.fl;
    let answer = |r: Result<Response, Response>| (r.unwrap_or_else(|e| e), Vec::new());
    Ok(match request {
        Request::FlHello { hello } => answer(fl.with_relay(|s| s.hello(agent, cert, hello)).await),
        Request::FlCommittee { run_id, epoch } => answer(fl.with_relay(|s| s.committee(run_id, epoch)).await),
        Request::FlKeyShares {
            run_id,
            epoch,
            member,
            sealed,
            ..
        } => answer(
            fl.with_relay(|s| s.key_shares(agent, run_id, epoch, member, sealed, &body))
                .await,
        ),
        Request::FlSealed { run_id, epoch, member } => {
            answer(fl.with_relay(|s| s.sealed_for(agent, run_id, epoch, member)).await)
        }
        Request::FlKeyReady { run_id, epoch, member } => {
            answer(fl.with_relay(|s| s.key_ready(agent, run_id, epoch, member)).await)
        }
        Request::FlPublicKey { run_id, epoch } => match fl.with_relay(|s| s.public_key(run_id, epoch)).await {
            Ok(Ok(key)) => (
                Response::Blob {
                    len: key.len() as u64,
                    sha256: gatewatch_proto::enroll::sha256_hex(&key),
                },
                key,
            ),
            Ok(Err(r)) | Err(r) => (r, Vec::new()),
        },
        Request::FlUpdate {
            run_id,
            round,
            receipt,
            metrics,
            ..
        } => {
            let started = std::time::Instant::now();
            let now_ms = chrono::Utc::now().timestamp_millis();
            let r = fl
                .with_relay(|s| s.update(agent, cert, run_id, round, receipt, metrics, &body, now_ms))
                .await
                .unwrap_or_else(|e| e);
            let stats = &fl.stats;
            if r == Response::Ok {
                stats.updates_accepted.fetch_add(1, Relaxed);
                stats.update_bytes.fetch_add(body.len() as u64, Relaxed);
                stats
                    .aggregate_micros
                    .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
            } else {
                stats.updates_rejected.fetch_add(1, Relaxed);
                tracing::warn!(%agent, round, answer = ?r, "FL update refused");
            }
            (r, Vec::new())
        }
        Request::FlEvaluated { run_id, round, metrics } => {
            answer(fl.with_relay(|s| s.evaluated(agent, run_id, round, metrics)).await)
        }
        Request::FlDeclined { run_id, round, reason } => {
            answer(fl.with_relay(|s| s.declined(agent, run_id, round, reason)).await)
        }
        Request::FlDecryption { run_id, epoch, round } => {
            match fl.with_relay(|s| s.decryption(agent, run_id, epoch, round)).await {
                Ok(Ok((bytes, certs))) => (
                    Response::FlDecryption {
                        len: bytes.len() as u64,
                        certs,
                    },
                    bytes,
                ),
                Ok(Err(r)) | Err(r) => (r, Vec::new()),
            }
        }
        Request::FlDecryptionShare {
            run_id,
            epoch,
            round,
            member,
            ..
        } => answer(
            fl.with_relay(|s| s.decryption_share(agent, run_id, epoch, round, member, &body))
                .await,
        ),
        Request::Model { .. } | Request::Flows { .. } | Request::Capture { .. } => (
            Response::Error {
                message: "not a federated-learning request".into(),
            },
            Vec::new(),
        ),
    })
}

async fn send_model(send: &mut SendStream, version: &str, cx: &Context) -> anyhow::Result<()> {
    let Some(dir) = cx.models.dir_of(version) else {
        send.write_all(&bulk::encode(&Response::Error {
            message: format!("the hub has no model {version}"),
        }))
        .await?;
        return Ok(());
    };
    let files = tokio::task::spawn_blocking(move || read_model(&dir)).await??;
    let listing = Response::Model {
        version: version.to_string(),
        files: files.iter().map(|(meta, _)| meta.clone()).collect(),
    };
    send.write_all(&bulk::encode(&listing)).await?;
    for (_, bytes) in &files {
        send.write_all(bytes).await?;
    }
    cx.stats.models_sent.fetch_add(1, Relaxed);
    Ok(())
}

/// Streams an uploaded capture to the agent that was asked to replay it (and to no other).
async fn send_capture(send: &mut SendStream, agent: Uuid, upload_id: Uuid, cx: &Context) -> anyhow::Result<()> {
    use diesel::prelude::*;
    let db = cx.db.clone();
    let wanted = upload_id.to_string();
    let asked = tokio::task::spawn_blocking(move || {
        use crate::db::schema::agent_commands;
        let mut conn = db.get()?;
        let found: Option<serde_json::Value> = agent_commands::table
            .filter(agent_commands::agent_id.eq(agent))
            .filter(agent_commands::command.eq("traffic.replay_pcap"))
            .filter(agent_commands::status.eq_any(["pending", "delivered"]))
            .filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>("payload->>'upload_id' = ")
                    .bind::<diesel::sql_types::Text, _>(wanted),
            )
            .select(agent_commands::payload)
            .first(&mut conn)
            .optional()?;
        Ok::<_, anyhow::Error>(found)
    })
    .await??;
    let Some(payload) = asked else {
        send.write_all(&bulk::encode(&Response::Error {
            message: format!("no replay of capture {upload_id} is open for this agent"),
        }))
        .await?;
        return Ok(());
    };
    let path = crate::api::traffic::upload_path(&cx.data_dir, upload_id);
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            send.write_all(&bulk::encode(&Response::Error {
                message: format!("capture {upload_id} is gone from the hub: {e}"),
            }))
            .await?;
            return Ok(());
        }
    };
    let len = file.metadata().await?.len();
    let sha256 = payload["sha256"].as_str().unwrap_or_default().to_string();
    send.write_all(&bulk::encode(&Response::Capture { len, sha256 }))
        .await?;
    tokio::io::copy(&mut file, send).await?;
    cx.stats.captures_sent.fetch_add(1, Relaxed);
    tracing::info!(%agent, upload = %upload_id, bytes = len, "capture sent for replay");
    Ok(())
}

/// The files a model directory needs, with their checksums; its parameters too if it has
/// them (federated learning trains from them).
fn read_model(dir: &Path) -> std::io::Result<Vec<(ModelFile, Vec<u8>)>> {
    use gatewatch_models::store::{METADATA_FILE, ONNX_FILE, PARAMS_FILE, SCALER_FILE};
    let params = dir.join(PARAMS_FILE).is_file().then_some(PARAMS_FILE);
    [ONNX_FILE, SCALER_FILE, METADATA_FILE]
        .into_iter()
        .chain(params)
        .map(|name| {
            let bytes = std::fs::read(dir.join(name))?;
            let meta = ModelFile {
                name: name.to_string(),
                len: bytes.len() as u64,
                sha256: gatewatch_proto::enroll::sha256_hex(&bytes),
            };
            Ok((meta, bytes))
        })
        .collect()
}

async fn store_flows(agent: Uuid, records: Vec<FlowUpload>, cx: &Context) -> Result<u64, String> {
    if records.len() > bulk::MAX_FLOWS_PER_REQUEST {
        return Err(format!("at most {} records per request", bulk::MAX_FLOWS_PER_REQUEST));
    }
    if let Some(bad) = records
        .iter()
        .find(|r| r.features.len() != gatewatch_proto::FEATURE_COUNT || r.features.iter().any(|v| !v.is_finite()))
    {
        return Err(format!(
            "record {} needs {} finite features",
            bad.id,
            gatewatch_proto::FEATURE_COUNT
        ));
    }
    let n = records.len() as u64;
    let db = cx.db.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = db.get().map_err(|e| e.to_string())?;
        crate::broker::ingest::flows(&mut conn, agent, &records).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    cx.stats.flows_stored.fetch_add(n, Relaxed);
    Ok(n)
}
