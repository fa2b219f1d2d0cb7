//! Fleet benchmark: one hub process (embedded broker, mutual TLS) and N lightweight agents in
//! this process (real enrollment, real certificates, rumqttc over TLS), all on loopback.
//!
//! Prints: enrollment and connection times, the hub's resident memory with N agents
//! connected, latency from "window scored at the agent" to "event on /ws/live" at a fixed
//! rate, and the predictions per second the hub stores when pushed. The anchor, measured in
//! the same run, is the hub's own storage path (`broker::ingest::predictions`) called directly
//! on the same database: the fleet figure is reported as a ratio of it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use diesel::prelude::*;
use gatewatch_agent::uplink::identity::{self, EnrollParams, Identity};
use gatewatch_proto::fleet::{self, AgentState, AgentStatus, Channel, PredictionBatch, PredictionMsg};
use gatewatch_proto::{Detection, WindowSpan};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(about = "Fleet benchmark: N enrolled agents over mutual TLS against one hub process, on loopback")]
struct Args {
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Total predictions per second in the latency phase.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Seconds per measured phase.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Predictions per batch in the throughput phase.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Predictions per second offered in the throughput phase.
    #[arg(long, default_value_t = 100_000)]
    push_rate: u64,
    /// PostgreSQL server (a fresh database is made and dropped).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
    /// The hub binary (default: gatewatch-hub beside this one).
    #[arg(long)]
    hub_bin: Option<PathBuf>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct HubProcess {
    child: Child,
    admin_url: String,
    db: String,
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(mut c) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db)).execute(&mut c);
        }
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn prediction(device: IpAddr, seq: u64) -> PredictionMsg {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    PredictionMsg {
        id: Uuid::now_v7(),
        detection: Detection {
            device,
            window: WindowSpan {
                first_flow_id: seq * 10,
                last_flow_id: seq * 10 + 9,
                first_ts_ns: now_ns - 1_000_000,
                last_ts_ns: now_ns,
            },
            score: 0.9,
            label: "attack".into(),
            confidence: 0.8,
            family: "scan".into(),
            family_probs: BTreeMap::from([("scan".to_string(), 0.9), ("benign".to_string(), 0.1)]),
            model_version: "bench".into(),
            inference_latency_ms: 0.05,
            peer: None,
            padded_flows: 0,
            simulation: None,
        },
        prevention: Vec::new(),
    }
}

/// One simulated agent: its identity, MQTT client, and batch numbering.
struct SimAgent {
    id: Uuid,
    client: AsyncClient,
    epoch: Uuid,
    seq: u64,
    device: IpAddr,
}

impl SimAgent {
    fn batch(&mut self, n: usize) -> Vec<u8> {
        self.seq += 1;
        let batch = PredictionBatch {
            schema: fleet::SCHEMA,
            agent_id: self.id,
            epoch: self.epoch,
            seq: self.seq,
            predictions: (0..n)
                .map(|i| prediction(self.device, self.seq * 1000 + i as u64))
                .collect(),
        };
        serde_json::to_vec(&batch).unwrap_or_default()
    }
}

/// Sends `batches_per_sec` batches of `batch` predictions for `period`, the agents taking
/// turns; returns the predictions handed to the MQTT clients.
async fn pace(agents: &mut [SimAgent], batches_per_sec: f64, batch: usize, period: Duration) -> u64 {
    let interval = Duration::from_secs_f64(1.0 / batches_per_sec);
    let t = Instant::now();
    let mut next = Instant::now();
    let (mut sent, mut turn) = (0u64, 0usize);
    while t.elapsed() < period {
        let agent = &mut agents[turn % agents.len()];
        turn += 1;
        let payload = agent.batch(batch);
        let topic = fleet::topic(agent.id, Channel::Predictions);
        if agent
            .client
            .try_publish(topic, QoS::AtLeastOnce, false, payload)
            .is_ok()
        {
            sent += batch as u64;
        } else {
            agent.seq -= 1; // its queue is full: that batch was never sent
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            tokio::time::sleep(next - now).await;
        }
    }
    sent
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn count_predictions(url: &str) -> Result<i64> {
    let mut c = PgConnection::establish(url)?;
    Ok(diesel::dsl::sql::<diesel::sql_types::BigInt>("SELECT count(*) FROM predictions").get_result(&mut c)?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.agents > 0 && args.seconds > 0 && args.batch > 0,
        "agents, seconds and batch must be positive"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let hub_bin = match &args.hub_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .join("gatewatch-hub"),
    };
    anyhow::ensure!(
        hub_bin.is_file(),
        "{} not found: build the workspace's binaries first",
        hub_bin.display()
    );
    let (http, mqtt) = (free_port()?, free_port()?);
    let db = format!("gw_fleet_bench_{}", std::process::id());
    let db_url = format!("{}/{db}", args.postgres);
    let log = std::fs::File::create(dir.path().join("hub.log"))?;
    let child = Command::new(&hub_bin)
        .arg("serve")
        .env("GATEWATCH_DATABASE_URL", &db_url)
        .env("GATEWATCH_DATA_DIR", dir.path().join("hub"))
        .env("GATEWATCH_HTTP_ADDRESS", "127.0.0.1")
        .env("GATEWATCH_HTTP_PORT", http.to_string())
        .env("GATEWATCH_BROKER_MODE", "embedded")
        .env("GATEWATCH_MQTT_TLS_PORT", mqtt.to_string())
        .env("GATEWATCH_QUIC_PORT", mqtt.to_string())
        .env("GATEWATCH_MAX_AGENTS", (args.agents + 10).to_string())
        .env("GATEWATCH_ADMIN_PASSWORD", "fleet-bench-admin")
        .env("GATEWATCH_RATE_LIMIT_PER_MINUTE", "100000000")
        .env("GATEWATCH_LOGIN_ATTEMPTS_PER_MINUTE", "100000000")
        .env("GATEWATCH_WS_QUEUE_LEN", "1000000")
        .env("GATEWATCH_DB_POOL_SIZE", "16")
        .env("GATEWATCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", hub_bin.display()))?;
    let hub = HubProcess {
        child,
        admin_url: format!("{}/postgres", args.postgres),
        db,
    };
    let pid = hub.child.id();
    let base = format!("http://127.0.0.1:{http}/api/v1");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/openapi.json")).send().await.is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!(
                "the hub did not start: {}",
                std::fs::read_to_string(dir.path().join("hub.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let login: serde_json::Value = client
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": "fleet-bench-admin"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"].as_str().context("login")?.to_string();
    let rss_empty = rss_kib(pid, "VmRSS:");

    // Anchor: the hub's storage path called directly, same database, same batch shape.
    let anchor = {
        let url = db_url.clone();
        let (batches, batch) = (200usize, args.batch);
        tokio::task::spawn_blocking(move || -> Result<f64> {
            let mut c = PgConnection::establish(&url)?;
            let agent = Uuid::now_v7();
            let epoch = Uuid::now_v7();
            let device: IpAddr = "10.255.0.1".parse()?;
            let t = Instant::now();
            for sim_seq in 1..=batches as u64 {
                let b = PredictionBatch {
                    schema: fleet::SCHEMA,
                    agent_id: agent,
                    epoch,
                    seq: sim_seq,
                    predictions: (0..batch)
                        .map(|i| prediction(device, sim_seq * 1000 + i as u64))
                        .collect(),
                };
                gatewatch_hub::broker::ingest::predictions(&mut c, agent, &b)?;
            }
            Ok((batches * batch) as f64 / t.elapsed().as_secs_f64())
        })
        .await??
    };

    // Enrollment: tokens from the API, CSRs and certificates as `gatewatch-agent enroll` does.
    let t = Instant::now();
    let mut identities = Vec::with_capacity(args.agents);
    let (mut ca, mut tokens) = (String::new(), Vec::new());
    for _ in 0..args.agents {
        let issued: serde_json::Value = client
            .post(format!("{base}/agents/enrollment-tokens"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"ttl_minutes": 60}))
            .send()
            .await?
            .json()
            .await?;
        tokens.push(issued["token"].as_str().context("token")?.to_string());
        ca = issued["ca_sha256"].as_str().context("fingerprint")?.to_string();
    }
    let states = dir.path().join("agents");
    let mut handles = Vec::new();
    for chunk in tokens.chunks(args.agents.div_ceil(8)).map(<[String]>::to_vec) {
        let (states, ca, hub_url) = (states.clone(), ca.clone(), format!("http://127.0.0.1:{http}"));
        handles.push(tokio::task::spawn_blocking(move || -> Result<Vec<Identity>> {
            chunk
                .into_iter()
                .map(|token| {
                    let agent_id = Uuid::now_v7();
                    let params = EnrollParams {
                        hub_url: hub_url.clone(),
                        token,
                        ca_sha256: Some(ca.clone()),
                        agent_id,
                        name: format!("bench-{}", agent_id.simple()),
                        hostname: "bench".into(),
                    };
                    Ok(identity::enroll(&states.join(agent_id.to_string()), &params)?)
                })
                .collect()
        }));
    }
    for h in handles {
        identities.extend(h.await??);
    }
    let enroll_secs = t.elapsed().as_secs_f64();

    // Connections: every agent logs in over mutual TLS and reports online.
    let t = Instant::now();
    let connected = Arc::new(AtomicU64::new(0));
    let mut agents = Vec::with_capacity(args.agents);
    for (i, id) in identities.iter().enumerate() {
        let mut options = MqttOptions::new(fleet::agent_client_id(id.agent_id), "127.0.0.1", mqtt);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(4 << 20, 4 << 20);
        options.set_inflight(32);
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(
            id.tls_config()?,
        ))));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let counter = connected.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        counter.fetch_add(1, Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
        let status = AgentStatus {
            schema: fleet::SCHEMA,
            agent_id: id.agent_id,
            state: AgentState::Online,
            name: format!("bench-{i}"),
            hostname: "bench".into(),
            version: "bench".into(),
            model_version: Some("bench".into()),
            heartbeat_secs: 30,
            sent_at_ms: 0,
            fl_local_windows: Default::default(),
        };
        client
            .publish(
                fleet::topic(id.agent_id, Channel::Status),
                QoS::AtLeastOnce,
                true,
                serde_json::to_vec(&status)?,
            )
            .await?;
        let device: IpAddr = format!("10.{}.{}.2", (i / 250) % 250, i % 250).parse()?;
        agents.push(SimAgent {
            id: id.agent_id,
            client,
            epoch: Uuid::now_v7(),
            seq: 0,
            device,
        });
    }
    while connected.load(Relaxed) < args.agents as u64 {
        if t.elapsed() > Duration::from_secs(300) {
            bail!(
                "only {} of {} agents connected in 300 s",
                connected.load(Relaxed),
                args.agents
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_secs = t.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_connected = rss_kib(pid, "VmRSS:");

    // Latency: a fixed total rate; each prediction stamped when made, timed when it reaches /ws/live.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{http}/ws/live?token={token}"))
        .await
        .context("/ws/live")?;
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let recording = Arc::new(AtomicBool::new(false));
    let (sink, rec) = (latencies.clone(), recording.clone());
    let reader = tokio::spawn(async move {
        use futures_util::StreamExt;
        while let Some(Ok(msg)) = ws.next().await {
            let Ok(text) = msg.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
                continue;
            };
            if v["type"] != "prediction" || !rec.load(Relaxed) {
                continue;
            }
            if let Some(ts) = v["data"]["timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            {
                let ms = (chrono::Utc::now() - ts.with_timezone(&chrono::Utc))
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1000.0;
                if let Ok(mut l) = sink.lock() {
                    l.push(ms);
                }
            }
        }
    });
    // Warm-up: one prediction per agent makes its device at the hub, a one-time cost per device
    // that a running fleet does not pay again.
    let warm_from = count_predictions(&db_url)?;
    let one_each = Duration::from_secs_f64(args.agents as f64 / args.rate as f64);
    let warmed = pace(&mut agents, args.rate as f64, 1, one_each).await as i64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_predictions(&db_url)? - warm_from < warmed && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each agent sends one prediction per batch, agents taking turns so the total rate is even.
    recording.store(true, Relaxed);
    let before = count_predictions(&db_url)?;
    let sent = pace(&mut agents, args.rate as f64, 1, Duration::from_secs(args.seconds)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    recording.store(false, Relaxed);
    // The live feed is for the latency phase only: a reader that falls behind under the push
    // below would only measure its own queue at the hub.
    reader.abort();
    let stored_latency = count_predictions(&db_url)? - before;
    let mut lat = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_by(f64::total_cmp);
    let offered_rate = sent as f64 / args.seconds as f64;

    // Throughput: batches at a rate above what one hub can store; what is stored per second counts.
    let before = count_predictions(&db_url)?;
    let t = Instant::now();
    let offered = pace(
        &mut agents,
        args.push_rate as f64 / args.batch as f64,
        args.batch,
        Duration::from_secs(args.seconds),
    )
    .await;
    let stored = count_predictions(&db_url)? - before;
    let elapsed = t.elapsed().as_secs_f64();
    let throughput = stored as f64 / elapsed;
    let rss_peak = rss_kib(pid, "VmHWM:");

    println!("fleet benchmark: {} agents, mutual TLS, embedded broker, one hub process, loopback, 2 cores shared with the agents", args.agents);
    println!(
        "  enrollment           {enroll_secs:.1} s for {} agents ({:.1} ms each)",
        args.agents,
        enroll_secs * 1000.0 / args.agents as f64
    );
    println!(
        "  connections          {connect_secs:.1} s until all {} were connected",
        args.agents
    );
    println!(
        "  hub RSS              {:.0} MB empty, {:.0} MB with {} agents connected, {:.0} MB peak",
        rss_empty as f64 / 1024.0,
        rss_connected as f64 / 1024.0,
        args.agents,
        rss_peak as f64 / 1024.0
    );
    println!(
        "  latency at {offered_rate:.0} predictions/s  scored -> /ws/live: p50 {:.1} ms, p99 {:.1} ms ({} events timed, {} stored)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.len(),
        stored_latency
    );
    println!(
        "  throughput           {throughput:.0} predictions/s stored of {:.0}/s offered (batches of {}), {:.2}x the anchor",
        offered as f64 / args.seconds as f64,
        args.batch,
        throughput / anchor
    );
    println!("  anchor               {anchor:.0} predictions/s: broker::ingest::predictions called directly, same database and batch size");
    drop(hub);
    Ok(())
}
