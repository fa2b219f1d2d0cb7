//! First-start preparation: data directory, generated JWT secret, first admin account.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use diesel::prelude::*;
use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;
use uuid::Uuid;

use crate::db::models::User;
use crate::db::schema::users;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("data directory {path}: {source}. Set GATEWATCH_DATA_DIR (key data_dir) to a writable directory")]
    DataDir { path: String, source: std::io::Error },
    #[error("secret file {path}: {reason}")]
    Secret { path: String, reason: String },
    #[error("creating the first admin failed: {0}")]
    Admin(String),
    #[error("reading the settings failed: {0}")]
    Settings(String),
}

/// Reads `jwt.key` from the data directory, creating the directory and a random key (0600) if absent.
pub fn jwt_secret(data_dir: &Path) -> Result<Vec<u8>, SetupError> {
    let dir_err = |source| SetupError::DataDir {
        path: data_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(dir_err)?;
    std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).map_err(dir_err)?;
    let path = data_dir.join("jwt.key");
    let shown = path.display().to_string();
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() >= 32 => {
            let mode = std::fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0);
            if mode & 0o077 != 0 {
                tracing::warn!(path = %shown, mode = format!("{mode:o}"), "secret file readable by others; fixing to 0600");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
                    SetupError::Secret {
                        path: shown.clone(),
                        reason: e.to_string(),
                    }
                })?;
            }
            Ok(bytes)
        }
        Ok(_) => Err(SetupError::Secret {
            path: shown,
            reason: "shorter than 32 bytes; delete it to generate a new key (this logs every user out)".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; 64];
            rand::thread_rng().fill_bytes(&mut key);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|e| SetupError::Secret {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            f.write_all(&key).map_err(|e| SetupError::Secret {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            tracing::info!(path = %shown, "generated JWT secret");
            Ok(key)
        }
        Err(e) => Err(SetupError::Secret {
            path: shown,
            reason: e.to_string(),
        }),
    }
}

/// Creates user `admin` when no admin exists. Returns the password when it was generated here,
/// so that the caller prints it once.
pub fn first_admin(conn: &mut PgConnection, preset: Option<String>) -> Result<Option<String>, SetupError> {
    let admins: i64 = users::table
        .filter(users::role.eq("admin"))
        .count()
        .get_result(conn)
        .map_err(|e| SetupError::Admin(e.to_string()))?;
    if admins > 0 {
        return Ok(None);
    }
    let generated = preset.is_none();
    let password = preset.unwrap_or_else(|| Alphanumeric.sample_string(&mut rand::thread_rng(), 20));
    let hashed = crate::auth::hash_password(&password).map_err(|e| SetupError::Admin(e.message))?;
    let user = User {
        id: Uuid::new_v4(),
        username: "admin".into(),
        email: "admin@localhost".into(),
        hashed_password: hashed,
        role: "admin".into(),
        must_change_password: true,
        is_active: true,
        created_at: chrono::Utc::now(),
    };
    let inserted = diesel::insert_into(users::table)
        .values(&user)
        .on_conflict_do_nothing()
        .execute(conn)
        .map_err(|e| SetupError::Admin(e.to_string()))?;
    if inserted == 0 {
        return Err(SetupError::Admin(
            "a non-admin user named `admin` exists and no admin does; give that user the admin role in the database"
                .into(),
        ));
    }
    tracing::info!("created first admin account");
    Ok(generated.then_some(password))
}

/// The `active_model` setting, if an admin chose one.
pub fn active_model(conn: &mut PgConnection) -> Result<Option<String>, SetupError> {
    use crate::db::schema::system_settings;
    let value: Option<serde_json::Value> = system_settings::table
        .find("active_model")
        .select(system_settings::value)
        .first(conn)
        .optional()
        .map_err(|e| SetupError::Settings(e.to_string()))?;
    Ok(value.and_then(|v| v.as_str().map(String::from)))
}
