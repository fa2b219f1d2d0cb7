//! Helpers for the cross-process tests: the workspace's binaries as child processes that
//! die with the test, a hub on its own database, agents replaying captures.
#![allow(dead_code)] // each test binary uses a different part

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

pub const PG: &str = "postgres://postgres@127.0.0.1:5432";

/// `target/debug` (or wherever this test binary was built): the workspace's binaries are there.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built; run the workspace tests (cargo nextest run --workspace)",
        path.display()
    );
    path
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), free_port())
}

/// A child process that is killed when the test ends, however it ends.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        cmd.stdout(Stdio::from(file)).stderr(Stdio::from(err));
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            child,
            name: name.into(),
            log,
        }
    }

    /// Peak resident memory so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024)
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {sig} {}", self.name);
    }

    /// Waits for exit; returns the log.
    pub fn wait(&mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let log = self.log_text();
                assert!(
                    status.success() || status.code().is_none(),
                    "{} failed: {status}\n{log}",
                    self.name
                );
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit in {limit:?}\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Hub {
    pub db: String,
    pub port: u16,
    pub broker: HubBroker,
    pub data: PathBuf,
}

/// How a test hub meets its agents.
pub enum HubBroker {
    /// Through an MQTT broker on this loopback port, as this client id.
    External { port: u16, client_id: String },
    /// Its own broker; agents enroll and connect over mutual TLS on this port.
    Embedded { tls_port: u16 },
}

impl Hub {
    pub fn start(&self, dir: &Path, run: usize) -> Proc {
        let mut cmd = Command::new(bin("gatewatch-hub"));
        cmd.arg("serve")
            .env("GATEWATCH_DATABASE_URL", format!("{PG}/{}", self.db))
            .env("GATEWATCH_DATA_DIR", &self.data)
            .env("GATEWATCH_HTTP_ADDRESS", "127.0.0.1")
            .env("GATEWATCH_HTTP_PORT", self.port.to_string())
            .env("GATEWATCH_ADMIN_PASSWORD", "e2e-admin-password")
            .env("GATEWATCH_MODEL_DIR", repo().join("models/default"))
            .env("GATEWATCH_AGENT_OFFLINE_AFTER_SECS", "4")
            .env("GATEWATCH_LOG", "info,rocket=warn");
        match &self.broker {
            HubBroker::External { port, client_id } => cmd
                .env("GATEWATCH_BROKER_MODE", "external")
                .env("GATEWATCH_BROKER_URL", format!("mqtt://127.0.0.1:{port}"))
                .env("GATEWATCH_BROKER_CLIENT_ID", client_id),
            // QUIC is UDP: the same port number as the TCP listener is free for it.
            HubBroker::Embedded { tls_port } => cmd
                .env("GATEWATCH_BROKER_MODE", "embedded")
                .env("GATEWATCH_MQTT_TLS_PORT", tls_port.to_string())
                .env("GATEWATCH_QUIC_PORT", tls_port.to_string()),
        };
        let proc = Proc::spawn("hub", cmd, dir.join(format!("hub-{run}.log")));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "hub did not listen\n{}", proc.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
        proc
    }

    /// Runs `gatewatch-hub` with this hub's database and data directory (its CLI).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin("gatewatch-hub"))
            .args(args)
            .env("GATEWATCH_DATABASE_URL", format!("{PG}/{}", self.db))
            .env("GATEWATCH_DATA_DIR", &self.data)
            .env("GATEWATCH_LOG", "warn")
            .output()
            .expect("gatewatch-hub")
    }

    /// An access token of the first admin (whose password the tests set).
    pub async fn admin_token(&self) -> String {
        let r: serde_json::Value = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/api/v1/auth/login", self.port))
            .json(&serde_json::json!({"username": "admin", "password": "e2e-admin-password"}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        r["access_token"].as_str().expect("token").to_string()
    }

    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&format!("{PG}/{}", self.db)).expect("connect to the hub's database")
    }

    /// Enrolls the agent of `config` with a one-time token from the hub's CLI, checking the
    /// hub by its CA fingerprint.
    pub fn enroll(&self, config: &Path) {
        let out = self.cli(&["agents", "token", "--quiet"]);
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        let mut words = line.split_whitespace();
        let (token, fingerprint) = (words.next().expect("token"), words.next().expect("fingerprint"));
        let enrolled = Command::new(bin("gatewatch-agent"))
            .args(["enroll", "--hub", &format!("http://127.0.0.1:{}", self.port)])
            .args(["--token", token, "--ca-sha256", fingerprint, "--config"])
            .arg(config)
            .output()
            .expect("enroll");
        assert!(
            enrolled.status.success(),
            "{}",
            String::from_utf8_lossy(&enrolled.stderr)
        );
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Ok(mut c) = PgConnection::establish(&format!("{PG}/postgres")) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db)).execute(&mut c);
        }
    }
}

#[derive(QueryableByName)]
pub struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
pub struct Status {
    #[diesel(sql_type = Text)]
    status: String,
}

pub fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .map(|c| c.n)
        .unwrap_or(-1)
}

pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A capture for an agent to replay in a loop: an attack on `target` among benign devices.
pub fn capture(dir: &Path, attack: &str, target: &str) -> PathBuf {
    let pcap = dir.join(format!("{attack}-{target}.pcap"));
    let out = Command::new(bin("gatewatch-agent"))
        .args([
            "simulate",
            "--attack",
            attack,
            "--duration",
            "20s",
            "--seed",
            "5",
            "--target",
            target,
            "--pcap",
        ])
        .arg(&pcap)
        .output()
        .expect("simulate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    pcap
}

/// An agent replaying `pcap`; `broker_port` is a plain MQTT broker, `None` the enrolled hub's.
pub fn agent_config(
    dir: &Path,
    name: &str,
    broker_port: Option<u16>,
    pcap: &Path,
    devices: &str,
    speed: f64,
) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let mqtt_url = broker_port.map_or(String::new(), |p| format!("mqtt_url = \"mqtt://127.0.0.1:{p}\"\n"));
    let text = format!(
        r#"name = "{name}"
state_dir = "{state}"
log = "info"
metrics_listen = "127.0.0.1:{metrics_port}"
[hub]
{mqtt_url}heartbeat_secs = 1
[source]
kind = "pcap"
pcap = "{pcap}"
replay_speed = {speed:.1}
[detect]
devices = ["{devices}"]
model_dir = "{model}"
[uplink]
batch_max = 50
batch_wait_ms = 100
resend_after_secs = 3
# A loaded CI machine may need a while to store a backlog; wait for it at stop.
drain_secs = 40
"#,
        state = dir.join(name).display(),
        metrics_port = free_port(),
        pcap = pcap.display(),
        model = repo().join("models/default").display(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// The agent's metrics endpoint from its configuration file.
pub fn metrics_port(config: &Path) -> u16 {
    let text = std::fs::read_to_string(config).expect("agent config");
    text.lines()
        .find_map(|l| l.strip_prefix("metrics_listen = \"127.0.0.1:"))
        .and_then(|rest| rest.trim_end_matches('"').parse().ok())
        .expect("metrics_listen in the config")
}

/// One plain HTTP GET on loopback; the body. Tried a few times, as a scraper would.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::Write;
    let mut last_error = String::new();
    for _ in 0..5 {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            )?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        })();
        match attempt {
            Ok(response) if response.contains("\r\n\r\n") => {
                return response
                    .split_once("\r\n\r\n")
                    .map(|(_, body)| body.to_string())
                    .unwrap_or(response)
            }
            Ok(response) => last_error = format!("no HTTP response: {response:?}"),
            Err(e) => last_error = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("GET 127.0.0.1:{port}{path}: {last_error}");
}

/// A sample's value in Prometheus text.
pub fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
}

pub fn start_agent(dir: &Path, name: &str, config: &Path) -> Proc {
    let mut cmd = Command::new(bin("gatewatch-agent"));
    cmd.args(["run", "--config"]).arg(config);
    Proc::spawn(name, cmd, dir.join(format!("{name}.log")))
}

/// "windows scored N" from an agent's exit summary.
pub fn scored(log: &str) -> i64 {
    let line = log
        .lines()
        .rfind(|l| l.starts_with("done:"))
        .unwrap_or_else(|| panic!("no summary in\n{log}"));
    let after = line.split("windows scored ").nth(1).expect("windows scored");
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a number")
}

pub fn agent_predictions(conn: &mut PgConnection, name: &str) -> (i64, i64) {
    let total = count(
        conn,
        &format!(
            "SELECT count(*) AS n FROM predictions p JOIN devices d ON d.id = p.device_id \
             JOIN agents a ON a.id = d.agent_id WHERE a.name = '{name}'"
        ),
    );
    let distinct = count(
        conn,
        &format!(
            "SELECT count(DISTINCT p.id) AS n FROM predictions p JOIN devices d ON d.id = p.device_id \
             JOIN agents a ON a.id = d.agent_id WHERE a.name = '{name}'"
        ),
    );
    (total, distinct)
}

pub fn statuses(conn: &mut PgConnection, sql: &str) -> Vec<String> {
    diesel::sql_query(sql)
        .load::<Status>(conn)
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.status)
        .collect()
}
