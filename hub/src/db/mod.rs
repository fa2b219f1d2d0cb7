//! PostgreSQL access: pool, database creation, embedded migrations, and the row types.

pub mod models;
pub mod schema;

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::redact_url;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type Conn = PooledConnection<ConnectionManager<PgConnection>>;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "cannot connect to PostgreSQL at {url}: {reason}. Start PostgreSQL or set GATEWATCH_DATABASE_URL \
         (or DATABASE_URL) to a reachable server, e.g. postgres://user@host:5432/gatewatch"
    )]
    Unreachable { url: String, reason: String },
    #[error("cannot create database {name} at {url}: {reason}. Create it yourself or grant CREATEDB to the user")]
    Create { name: String, url: String, reason: String },
    #[error("database migrations failed: {0}")]
    Migrate(String),
    #[error("database pool: {0}")]
    Pool(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("database task failed: {0}")]
    Task(String),
}

/// The database pool shared by all handlers.
#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
}

impl Db {
    /// Connects (creating the database if it does not exist), runs pending migrations, builds the pool.
    pub fn open(url: &str, pool_size: u32) -> Result<Db, DbError> {
        ensure_database(url)?;
        let mut conn = PgConnection::establish(url).map_err(|e| DbError::Unreachable {
            url: redact_url(url),
            reason: first_line(&e.to_string()),
        })?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| DbError::Migrate(e.to_string()))?;
        tracing::info!(applied = applied.len(), "database migrations checked");
        let pool = Pool::builder()
            .max_size(pool_size)
            .build(ConnectionManager::<PgConnection>::new(url))
            .map_err(|e| DbError::Pool(e.to_string()))?;
        Ok(Db { pool })
    }

    /// A pooled connection for blocking callers (start-up work, tests).
    pub fn get(&self) -> Result<Conn, DbError> {
        self.pool.get().map_err(|e| DbError::Pool(e.to_string()))
    }

    /// Runs blocking Diesel work off the async executor.
    pub async fn run<T, F>(&self, f: F) -> Result<T, crate::error::ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T, crate::error::ApiError> + Send + 'static,
    {
        let pool = self.pool.clone();
        rocket::tokio::task::spawn_blocking(move || {
            let mut conn: Conn = pool.get().map_err(|e| DbError::Pool(e.to_string()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| crate::error::ApiError::from(DbError::Task(e.to_string())))?
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Splits `postgres://host/name?x` into (`postgres://host/postgres?x`, `name`).
fn maintenance_url(url: &str) -> Option<(String, String)> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://")? + 3;
    let slash = base[scheme_end..].find('/')? + scheme_end;
    let name = &base[slash + 1..];
    if name.is_empty() {
        return None;
    }
    let mut admin = format!("{}/postgres", &base[..slash]);
    if let Some(q) = query {
        admin.push('?');
        admin.push_str(q);
    }
    Some((admin, name.to_string()))
}

/// Creates the target database through the `postgres` maintenance database if it is missing.
pub fn ensure_database(url: &str) -> Result<(), DbError> {
    match PgConnection::establish(url) {
        Ok(_) => return Ok(()),
        Err(e) if !e.to_string().contains("does not exist") => {
            return Err(DbError::Unreachable {
                url: redact_url(url),
                reason: first_line(&e.to_string()),
            });
        }
        Err(_) => {}
    }
    let Some((admin_url, name)) = maintenance_url(url) else {
        return Err(DbError::Unreachable {
            url: redact_url(url),
            reason: "the URL names no database".into(),
        });
    };
    let mut admin = PgConnection::establish(&admin_url).map_err(|e| DbError::Unreachable {
        url: redact_url(&admin_url),
        reason: first_line(&e.to_string()),
    })?;
    create_database(&mut admin, &name, None).map_err(|e| DbError::Create {
        name: name.clone(),
        url: redact_url(url),
        reason: e.to_string(),
    })?;
    tracing::info!(database = %name, "created database");
    Ok(())
}

/// `CREATE DATABASE` cannot take bind parameters, so the name is quoted as an identifier.
pub fn create_database(conn: &mut PgConnection, name: &str, template: Option<&str>) -> QueryResult<()> {
    let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
    if let Some(t) = template {
        sql.push_str(&format!(" TEMPLATE {}", quote_ident(t)));
    }
    diesel::sql_query(sql).execute(conn).map(|_| ())
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_url_keeps_host_and_query() {
        assert_eq!(
            maintenance_url("postgres://u@h:5/gw?sslmode=disable"),
            Some(("postgres://u@h:5/postgres?sslmode=disable".into(), "gw".into()))
        );
        assert_eq!(maintenance_url("postgres://h"), None);
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
