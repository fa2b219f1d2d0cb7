//! Process-level behaviour: restart on the same database, first admin, unreachable database.

mod common;

use diesel::prelude::*;
use diesel_migrations::MigrationHarness;
use gatewatch_hub::db::{Db, MIGRATIONS};
use gatewatch_hub::setup;
use serde_json::json;

#[rocket::async_test]
async fn restart_keeps_data_and_migrations_are_a_no_op() {
    let hub = common::serve(|_| {}).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", hub.port);
    let r = client
        .post(url("/api/v1/devices"))
        .bearer_auth(&hub.operator)
        .json(
            &json!({"name": "cam", "device_type": "camera", "ip_address": "10.0.0.9", "protocol": "http", "port": 80}),
        )
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 201);
    let dev: serde_json::Value = r.json().await.expect("json");
    let dev = dev["id"].as_str().expect("id").parse().expect("uuid");
    let flows: Vec<_> = (0..100).map(|i| common::flow(dev, i)).collect();
    let r = client
        .post(url("/api/v1/traffic/ingest"))
        .bearer_auth(&hub.operator)
        .json(&json!({ "flows": flows }))
        .send()
        .await
        .expect("ingest");
    assert_eq!(r.status().as_u16(), 200);
    hub.shutdown.notify();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    // Second start on the same database: nothing pending, nothing lost, no second admin.
    let db = Db::open(&hub.db.url, 2).expect("reopen");
    let mut c = db.get().expect("conn");
    assert!(!c.has_pending_migration(MIGRATIONS).expect("check"));
    assert_eq!(c.run_pending_migrations(MIGRATIONS).expect("run").len(), 0);
    let flows: i64 = gatewatch_hub::db::schema::traffic_logs::table
        .count()
        .get_result(&mut c)
        .expect("count");
    assert_eq!(flows, 100);
    assert_eq!(setup::first_admin(&mut c, None).expect("admin check"), None);
    let secret1 = setup::jwt_secret(hub.data.path()).expect("secret");
    let secret2 = setup::jwt_secret(hub.data.path()).expect("secret again");
    assert_eq!(secret1, secret2);
}

#[test]
fn first_start_creates_admin_secret_and_database() {
    use std::os::unix::fs::PermissionsExt;
    let name = format!("gwtest_fresh_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}/{name}", common::server_url());
    // Reuse TestDb's cleanup for a database that Db::open creates itself.
    let guard = common::TestDb {
        name: name.clone(),
        url: url.clone(),
    };
    let db = Db::open(&url, 2).expect("creates the database and migrates");
    let mut c = db.get().expect("conn");
    let password = setup::first_admin(&mut c, None)
        .expect("admin")
        .expect("generated password");
    assert_eq!(password.len(), 20);
    assert_eq!(setup::first_admin(&mut c, None).expect("second"), None);
    // The console asks for a new password before anything else.
    let must_change: bool = gatewatch_hub::db::schema::users::table
        .filter(gatewatch_hub::db::schema::users::username.eq("admin"))
        .select(gatewatch_hub::db::schema::users::must_change_password)
        .first(&mut c)
        .expect("admin row");
    assert!(must_change);
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    setup::jwt_secret(&data).expect("secret");
    let mode = std::fs::metadata(data.join("jwt.key"))
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    drop(c);
    drop(db);
    drop(guard);
}

#[test]
fn unreachable_database_is_one_clear_line_and_nonzero_exit() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatewatch-hub"))
        .arg("serve")
        .env("GATEWATCH_DATABASE_URL", "postgres://gw:hunter2@127.0.0.1:1/gatewatch")
        .env("GATEWATCH_DATA_DIR", dir.path())
        .env("GATEWATCH_LOG", "error")
        .output()
        .expect("run hub");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("cannot connect to PostgreSQL at postgres://gw:***@127.0.0.1:1/gatewatch"),
        "{err}"
    );
    assert!(lines[0].contains("GATEWATCH_DATABASE_URL"), "{err}");
    assert!(!err.contains("hunter2"));
}

#[test]
fn bad_config_names_the_key() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatewatch-hub"))
        .arg("check-config")
        .env("GATEWATCH_HTTP_PORT", "eighty")
        .output()
        .expect("run hub");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http_port"));
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_gatewatch-hub"))
        .args(["serve", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for key in [
        "database_url",
        "data_dir",
        "http_port",
        "rate_limit_per_minute",
        "cors_origins",
        "ws_queue_len",
    ] {
        assert!(help.contains(key), "--help lacks {key}");
    }
}
