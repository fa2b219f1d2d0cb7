//! Test harness: one fresh PostgreSQL database per test, copied from a migrated template database.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::path::PathBuf;

use diesel::prelude::*;
use diesel::{Connection, PgConnection};
use diesel_migrations::MigrationHarness;
use gatewatch_hub::auth::Role;
use gatewatch_hub::config::Config;
use gatewatch_hub::db::{create_database, quote_ident, Db, MIGRATIONS};
use gatewatch_hub::App;
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use uuid::Uuid;

pub fn server_url() -> String {
    std::env::var("GATEWATCH_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Template named after the migrations' contents, so a changed schema gets a new template.
fn template_name() -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("migrations dir")
        .flat_map(|e| std::fs::read_dir(e.expect("entry").path()).expect("migration dir"))
        .map(|e| e.expect("file").path())
        .collect();
    files.sort();
    let mut h: u64 = 0xcbf29ce484222325;
    for f in files {
        for b in std::fs::read(f).expect("read migration") {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
    }
    format!("gatewatch_tpl_{h:016x}")
}

fn ensure_template() -> String {
    let name = template_name();
    let mut admin = PgConnection::establish(&format!("{}/postgres", server_url())).expect("connect to test PostgreSQL");
    // Test processes run in parallel; one of them builds the template.
    diesel::sql_query("SELECT pg_advisory_lock(727274)")
        .execute(&mut admin)
        .expect("lock");
    let exists: i64 = diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "SELECT count(*) FROM pg_database WHERE datname = '{name}'"
    ))
    .get_result(&mut admin)
    .expect("query pg_database");
    if exists == 0 {
        let building = format!("{name}_building");
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {}", quote_ident(&building)))
            .execute(&mut admin)
            .expect("drop");
        create_database(&mut admin, &building, None).expect("create template");
        {
            let mut c = PgConnection::establish(&format!("{}/{building}", server_url())).expect("connect template");
            c.run_pending_migrations(MIGRATIONS).expect("migrate template");
        }
        diesel::sql_query(format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(&building),
            quote_ident(&name)
        ))
        .execute(&mut admin)
        .expect("rename template");
    }
    diesel::sql_query("SELECT pg_advisory_unlock(727274)")
        .execute(&mut admin)
        .expect("unlock");
    name
}

/// A database of its own, dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn conn(&self) -> PgConnection {
        PgConnection::establish(&self.url).expect("connect to the test database")
    }

    pub fn new() -> TestDb {
        let template = ensure_template();
        let name = format!("gwtest_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&format!("{}/postgres", server_url())).expect("connect");
        create_database(&mut admin, &name, Some(&template)).expect("create test database");
        TestDb {
            url: format!("{}/{name}", server_url()),
            name,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&format!("{}/postgres", server_url())) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(&self.name)
            ))
            .execute(&mut admin);
        }
    }
}

pub fn test_config(db: &TestDb, data_dir: &std::path::Path) -> Config {
    Config {
        database_url: db.url.clone(),
        data_dir: data_dir.to_path_buf(),
        model_dir: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default"),
        broker_mode: gatewatch_hub::broker::BrokerMode::Off,
        http_address: [127, 0, 0, 1].into(),
        db_pool_size: 8,
        rate_limit_per_minute: 100_000,
        ..Config::default()
    }
}

/// A hub on its own database, driven through Rocket's in-process client.
pub struct Hub {
    pub client: Client,
    pub admin: String,
    pub operator: String,
    pub viewer: String,
    pub admin_id: Uuid,
    pub data: tempfile::TempDir,
    pub db: TestDb,
}

pub const PASSWORD: &str = "correct horse battery";

pub fn add_user(db: &Db, name: &str, role: Role) -> Uuid {
    use gatewatch_hub::db::schema::users;
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = HASH.get_or_init(|| gatewatch_hub::auth::hash_password(PASSWORD).expect("hash"));
    let id = Uuid::new_v4();
    diesel::insert_into(users::table)
        .values((
            users::id.eq(id),
            users::username.eq(name),
            users::email.eq(format!("{name}@example.com")),
            users::hashed_password.eq(hash),
            users::role.eq(role.as_str()),
        ))
        .execute(&mut db.get().expect("conn"))
        .expect("insert user");
    id
}

impl Hub {
    pub async fn start() -> Hub {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Hub {
        let db = TestDb::new();
        let data = tempfile::tempdir().expect("tempdir");
        let mut config = test_config(&db, data.path());
        tweak(&mut config);
        let pool = Db::open(&config.database_url, config.db_pool_size).expect("open db");
        let admin_id = add_user(&pool, "admin", Role::Admin);
        let op_id = add_user(&pool, "operator", Role::Operator);
        let viewer_id = add_user(&pool, "viewer", Role::Viewer);
        let app = App::new(config, pool, b"test secret test secret test secret!!").expect("app");
        let token = |id, name: &str, role| app.keys.issue(id, name, role, "access", Uuid::new_v4(), 900);
        let (admin, operator, viewer) = (
            token(admin_id, "admin", Role::Admin),
            token(op_id, "operator", Role::Operator),
            token(viewer_id, "viewer", Role::Viewer),
        );
        let client = Client::tracked(gatewatch_hub::rocket(app)).await.expect("rocket");
        Hub {
            client,
            admin,
            operator,
            viewer,
            admin_id,
            data,
            db,
        }
    }

    pub fn app(&self) -> &App {
        self.client.rocket().state::<App>().expect("app state")
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (Status, serde_json::Value) {
        let r = self.send(method, path, token, body.map(|b| b.to_string())).await;
        let status = r.status();
        let text = r.into_string().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    pub async fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<String>) -> LocalResponse<'_> {
        let mut req = match method {
            "GET" => self.client.get(path.to_string()),
            "POST" => self.client.post(path.to_string()),
            "PUT" => self.client.put(path.to_string()),
            "PATCH" => self.client.patch(path.to_string()),
            "DELETE" => self.client.delete(path.to_string()),
            other => panic!("method {other}"),
        };
        if let Some(t) = token {
            req = req.header(Header::new("Authorization", format!("Bearer {t}")));
        }
        if let Some(b) = body {
            req = req.header(ContentType::JSON).body(b);
        }
        req.dispatch().await
    }

    pub async fn device(&self, name: &str) -> Uuid {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/devices",
                Some(&self.operator),
                Some(serde_json::json!({"name": name, "device_type": "camera", "ip_address": "10.0.0.7", "protocol": "mqtt", "port": 1883})),
            )
            .await;
        assert_eq!(s, Status::Created, "{v}");
        v["id"].as_str().expect("id").parse().expect("uuid")
    }
}

pub fn flow(device: Uuid, i: usize) -> serde_json::Value {
    let features: Vec<f32> = (0..78).map(|k| (i * 78 + k) as f32 * 0.5).collect();
    serde_json::json!({
        "id": Uuid::new_v4(),
        "device_id": device,
        "timestamp": chrono::Utc::now().to_rfc3339(),
        "features": features,
        "source_type": "simulated",
        "flow_index": i,
    })
}

pub fn prediction(device: Uuid, score: f64) -> serde_json::Value {
    serde_json::json!({
        "id": Uuid::new_v4(),
        "device_id": device,
        "score": score,
        "model_version": "test-model",
        "inference_latency_ms": 1.5,
        "feature_importance": [{"feature": "Flow Duration", "importance": 0.4}],
    })
}

pub fn error_field(v: &serde_json::Value) -> String {
    v["error"]["fields"][0]["field"].as_str().unwrap_or("").to_string()
}

/// A hub listening on a loopback port, for WebSocket and process-level tests.
pub struct Served {
    pub port: u16,
    pub shutdown: rocket::Shutdown,
    pub operator: String,
    pub viewer: String,
    pub admin: String,
    pub data: tempfile::TempDir,
    pub db: TestDb,
    pub broker: std::sync::Arc<gatewatch_hub::broker::BrokerStats>,
}

pub async fn serve(tweak: impl FnOnce(&mut Config)) -> Served {
    let db = TestDb::new();
    let data = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(&db, data.path());
    // A free port: bind, read it, release.
    config.http_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    tweak(&mut config);
    let pool = Db::open(&config.database_url, config.db_pool_size).expect("open db");
    let ids = [
        add_user(&pool, "admin", Role::Admin),
        add_user(&pool, "operator", Role::Operator),
        add_user(&pool, "viewer", Role::Viewer),
    ];
    let port = config.http_port;
    let app = App::new(config, pool, b"test secret test secret test secret!!").expect("app");
    let tok = |i: usize, role| app.keys.issue(ids[i], "u", role, "access", Uuid::new_v4(), 900);
    let broker = app.broker_stats.clone();
    let (admin, operator, viewer) = (tok(0, Role::Admin), tok(1, Role::Operator), tok(2, Role::Viewer));
    let rocket = gatewatch_hub::rocket(app).ignite().await.expect("ignite");
    let shutdown = rocket.shutdown();
    rocket::tokio::spawn(rocket.launch());
    // Wait until it accepts connections.
    for _ in 0..200 {
        if rocket::tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        rocket::tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Served {
        port,
        shutdown,
        operator,
        viewer,
        admin,
        data,
        db,
        broker,
    }
}
