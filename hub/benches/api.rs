//! Load benchmark of the hub on loopback: requests/s and latency percentiles for `GET /api/v1/devices`
//! (page of 50) and `POST /api/v1/traffic/ingest` (batched flows), next to a trivial Rocket handler
//! in the same process as the ceiling. Run: `cargo bench -p gatewatch-hub --bench api`.
//! Needs PostgreSQL (GATEWATCH_BENCH_PG, default postgres://postgres@127.0.0.1:5432); it uses and
//! drops a database of its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use gatewatch_hub::auth::Role;
use gatewatch_hub::config::Config;
use gatewatch_hub::db::{quote_ident, Db};
use gatewatch_hub::App;
use serde_json::json;
use uuid::Uuid;

const CONCURRENCY: usize = 32;
const RUN: Duration = Duration::from_secs(5);
const INGEST_SENDERS: usize = 4;

#[rocket::get("/ping")]
fn ping() -> &'static str {
    "ok"
}

struct Stats {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i].as_secs_f64() * 1000.0
    }
    fn print(&self, name: &str, unit_per_request: usize, unit: &str) {
        let rps = self.requests as f64 / self.elapsed.as_secs_f64();
        println!(
            "{name:<44} {rps:>9.0} req/s {:>10.0} {unit}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}",
            rps * unit_per_request as f64,
            self.pct(0.50),
            self.pct(0.99),
            self.errors
        );
    }
}

type MakeRequest = Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>;

/// Closed loop: `CONCURRENCY` workers send back to back for `RUN`.
async fn closed_loop(client: &reqwest::Client, make: MakeRequest) -> Stats {
    closed_loop_n(client, CONCURRENCY, make).await
}

async fn closed_loop_n(client: &reqwest::Client, workers: usize, make: MakeRequest) -> Stats {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, make) = (client.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while start.elapsed() < RUN {
                let t = Instant::now();
                match make(&client).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    collect(tasks, start).await
}

/// Open loop: requests start at a fixed rate whatever the latency, so queueing shows in the tail.
async fn fixed_rate(client: &reqwest::Client, rate: u32, make: MakeRequest) -> Stats {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let total = (rate as f64 * RUN.as_secs_f64()) as usize;
    let mut tasks = Vec::with_capacity(total);
    for _ in 0..total {
        tick.tick().await;
        let (client, make) = (client.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            match make(&client).send().await {
                Ok(r) if r.status().is_success() => {
                    let _ = r.bytes().await;
                    (vec![t.elapsed()], 0)
                }
                _ => (Vec::new(), 1),
            }
        }));
    }
    collect(tasks, start).await
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>, start: Instant) -> Stats {
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Stats {
        requests: latencies.len(),
        errors,
        elapsed,
        latencies,
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn main() -> anyhow::Result<()> {
    let server = std::env::var("GATEWATCH_BENCH_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let name = format!("gatewatch_bench_{}", Uuid::new_v4().simple());
    let url = format!("{server}/{name}");
    let result = run(&url);
    // Drop the benchmark database whatever happened.
    if let Ok(mut admin) = PgConnection::establish(&format!("{server}/postgres")) {
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&name)))
            .execute(&mut admin);
    }
    result
}

#[tokio::main(flavor = "multi_thread")]
async fn run(url: &str) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let config = Config {
        database_url: url.into(),
        data_dir: data.path().into(),
        model_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default"),
        broker_mode: gatewatch_hub::broker::BrokerMode::Off,
        http_address: [127, 0, 0, 1].into(),
        http_port: free_port(),
        rate_limit_per_minute: u32::MAX,
        log: "error".into(),
        ..Config::default()
    };
    let port = config.http_port;
    let db = Db::open(url, config.db_pool_size)?;
    let operator = Uuid::new_v4();
    {
        use gatewatch_hub::db::schema::users;
        let mut c = db.get()?;
        diesel::insert_into(users::table)
            .values((
                users::id.eq(operator),
                users::username.eq("bench"),
                users::email.eq("bench@example.com"),
                users::hashed_password.eq("x"),
                users::role.eq("operator"),
            ))
            .execute(&mut c)?;
    }
    let app = App::new(config, db, b"benchmark secret benchmark secret!!").expect("app");
    let token = app
        .keys
        .issue(operator, "bench", Role::Operator, "access", Uuid::new_v4(), 3600);
    let hub = gatewatch_hub::rocket(app).ignite().await?;
    let hub_shutdown = hub.shutdown();
    tokio::spawn(hub.launch());
    let ceiling_port = free_port();
    let figment = rocket::Config::figment()
        .merge(("port", ceiling_port))
        .merge(("address", "127.0.0.1"))
        .merge(("log_level", rocket::config::LogLevel::Off))
        .merge(("workers", 16));
    let ceiling = rocket::custom(figment)
        .mount("/", rocket::routes![ping])
        .ignite()
        .await?;
    let ceiling_shutdown = ceiling.shutdown();
    tokio::spawn(ceiling.launch());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY * 2)
        .build()?;
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let mut devices = Vec::new();
    for i in 0..200 {
        let r = client
            .post(format!("{base}/devices"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("device-{i:03}"), "device_type": "sensor", "ip_address": format!("10.1.{}.{}", i / 250, i % 250 + 1), "protocol": "mqtt", "port": 1883}))
            .send()
            .await?
            .error_for_status()?;
        let v: serde_json::Value = r.json().await?;
        devices.push(v["id"].as_str().unwrap_or_default().to_string());
    }
    println!(
        "gatewatch hub benchmark: {CONCURRENCY} connections, {} s per run, loopback, {} CPUs",
        RUN.as_secs(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    let ping_url = format!("http://127.0.0.1:{ceiling_port}/ping");
    let s = closed_loop(&client, Arc::new(move |c: &reqwest::Client| c.get(&ping_url))).await;
    s.print("Rocket ceiling: GET /ping (trivial handler)", 1, "req");

    let list_url = format!("{base}/devices?page=2&size=50");
    let t = token.clone();
    let list = Arc::new(move |c: &reqwest::Client| c.get(&list_url).bearer_auth(&t));
    closed_loop(&client, list.clone())
        .await
        .print("GET /api/v1/devices (page of 50), max", 1, "req");
    let s = fixed_rate(&client, 500, list).await;
    s.print("GET /api/v1/devices (page of 50) at 500 req/s", 1, "req");
    println!(
        "  target: p99 < 20 ms at 500 req/s -> {}",
        if s.pct(0.99) < 20.0 { "met" } else { "NOT met" }
    );

    // Bodies are made before the run so that the load generator's JSON encoding does not compete
    // with the hub for the CPUs. Every flow id is new: this measures storing, not deduplicating.
    const BATCH: usize = 1000;
    const BODIES: usize = 200;
    let now = chrono::Utc::now();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..BODIES)
            .map(|b| {
                let flows: Vec<_> = (0..BATCH)
                    .map(|i| {
                        json!({
                            "id": Uuid::new_v4(),
                            "device_id": devices[(b + i) % devices.len()],
                            "timestamp": (now + chrono::Duration::microseconds((b * BATCH + i) as i64)).to_rfc3339(),
                            "features": (0..78).map(|k| (i * 31 + k) as f32 * 0.25).collect::<Vec<f32>>(),
                            "source_type": "live",
                        })
                    })
                    .collect();
                serde_json::to_vec(&json!({ "flows": flows })).unwrap_or_default()
            })
            .collect(),
    );
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ingest_url = format!("{base}/traffic/ingest");
    let t = token.clone();
    let ingest = Arc::new(move |c: &reqwest::Client| {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % BODIES;
        c.post(&ingest_url)
            .bearer_auth(&t)
            .header("Content-Type", "application/json")
            .body(bodies[i].clone())
    });
    // A handful of concurrent senders, as a few agents flushing their spools would be.
    let s = closed_loop_n(&client, INGEST_SENDERS, ingest).await;
    s.print(
        &format!("POST /api/v1/traffic/ingest ({BATCH} flows/request)"),
        BATCH,
        "flows",
    );
    let flows_per_s = s.requests as f64 * BATCH as f64 / s.elapsed.as_secs_f64();
    println!(
        "  target: >= 20000 flows/s -> {}",
        if flows_per_s >= 20_000.0 { "met" } else { "NOT met" }
    );

    // One window per request through the shipped model, without and with explanations.
    let window: Vec<Vec<f32>> = (0..10)
        .map(|t| (0..78).map(|k| (t * 78 + k) as f32 * 0.5).collect())
        .collect();
    for explain in [false, true] {
        let body = serde_json::to_vec(&json!({"device_id": devices[0], "window": window, "explain": explain}))?;
        let predict_url = format!("{base}/predict");
        let t = token.clone();
        let predict = Arc::new(move |c: &reqwest::Client| {
            c.post(&predict_url)
                .bearer_auth(&t)
                .header("Content-Type", "application/json")
                .body(body.clone())
        });
        closed_loop(&client, predict)
            .await
            .print(&format!("POST /api/v1/predict (explain: {explain})"), 1, "req");
    }

    hub_shutdown.notify();
    ceiling_shutdown.notify();
    Ok(())
}
