//! gatewatch-hub: the central service of a gatewatch fleet.
//!
//! It keeps everything in PostgreSQL (Diesel, embedded migrations), serves the JSON API under
//! `/api/v1` with an OpenAPI document, streams live events over WebSockets, and authenticates
//! users with JWT and three roles. It scores windows with the active detection model
//! (`gatewatch-models`, tract). Agents report over MQTT (`broker`): their detections land in
//! the same tables and the same event fan-out as the API's.
//! It serves the web console (`hub/ui`, embedded at build time) at `/`.

pub mod api;
pub mod attack;
pub mod auth;
pub mod broker;
pub mod bulk;
pub mod config;
pub mod db;
pub mod error;
pub mod fl;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod pki;
pub mod setup;
pub mod ui;
pub mod webhooks;
pub mod ws;

use std::sync::Arc;

use rocket::{Build, Rocket};

use auth::limit::RateLimiter;
use auth::Keys;
use config::Config;
use db::Db;
use ws::Broadcaster;

/// Everything a request handler needs; managed by Rocket.
#[derive(Debug)]
pub struct App {
    pub config: Config,
    pub db: Db,
    pub keys: Keys,
    pub user_limit: RateLimiter,
    pub login_limit: RateLimiter,
    pub events: Arc<Broadcaster>,
    /// The detection model `/predict` scores with.
    pub models: Arc<model::ModelStore>,
    /// Counters of the fleet link.
    pub broker_stats: Arc<broker::BrokerStats>,
    /// Counters of the agents' TLS listener.
    pub gateway_stats: Arc<broker::gateway::GatewayStats>,
    /// Counters of the QUIC endpoint.
    pub bulk_stats: Arc<bulk::BulkStats>,
    /// The CA that signs agent certificates.
    pub ca: Arc<pki::Ca>,
    /// Which agent certificates are trusted now.
    pub identities: Arc<broker::identity::Registry>,
    /// Wakes the delivery of agent commands (see `broker::commands`).
    pub commands: Arc<tokio::sync::Notify>,
    /// Wakes the push of prevention rules to agents (see `broker::rules`).
    pub rules_changed: Arc<tokio::sync::Notify>,
    /// The hub's own prevention action.
    pub webhooks: Arc<webhooks::Webhooks>,
    /// Federated-learning runs.
    pub fl: Arc<fl::Coordinator>,
}

/// Why the hub's state could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("the token signing key in the data directory: {0}")]
    Keys(#[from] jsonwebtoken::errors::Error),
}

impl App {
    /// Loads (or on first start creates) the CA in `data_dir`.
    pub fn new(config: Config, db: Db, jwt_secret: &[u8]) -> Result<App, AppError> {
        let events = Broadcaster::new(config.ws_queue_len);
        let models = Arc::new(model::ModelStore::open(&config.model_dir, &config.data_dir));
        Ok(App {
            fl: Arc::new(fl::Coordinator::new(db.clone(), models.clone(), events.clone())),
            ca: Arc::new(pki::Ca::load_or_create(&config.data_dir)?),
            identities: Arc::default(),
            commands: Arc::default(),
            rules_changed: Arc::default(),
            webhooks: Arc::default(),
            gateway_stats: Arc::default(),
            bulk_stats: Arc::default(),
            user_limit: RateLimiter::per_minute(config.rate_limit_per_minute),
            login_limit: RateLimiter::per_minute(config.login_attempts_per_minute),
            events,
            models,
            broker_stats: Arc::default(),
            keys: Keys::new(jwt_secret)?,
            db,
            config,
        })
    }
}

/// Builds the Rocket instance serving the whole hub.
pub fn rocket(app: App) -> Rocket<Build> {
    let figment = rocket::Config::figment()
        .merge(("address", app.config.http_address))
        .merge(("port", app.config.http_port))
        .merge(("log_level", rocket::config::LogLevel::Off))
        .merge(("cli_colors", false))
        .merge(("ident", "gatewatch-hub"))
        // Body size limits are enforced by our own guards (413 with the JSON error shape).
        .merge(("limits.json", app.config.max_body_bytes))
        // Model uploads (multipart): each file part and the whole form.
        .merge(("limits.bytes", app.config.max_upload_bytes))
        .merge(("limits.data-form", app.config.max_upload_bytes))
        .merge(("workers", 16));
    let cors = api::cors::Cors::new(&app.config.cors_origins);
    // Validated at load; the link starts once the server runs.
    let broker = app.config.broker().ok().flatten();
    // Started at ignition so that a port in use stops the hub with a clear error.
    let fleet_link = rocket::fairing::AdHoc::try_on_ignite("fleet link", move |rocket| {
        Box::pin(async move {
            let (Some(settings), Some(app)) = (broker, rocket.state::<App>()) else {
                return Ok(rocket);
            };
            match broker::start(settings, app).await {
                Ok(()) => Ok(rocket),
                Err(e) => {
                    tracing::error!(error = %e, "the fleet link could not start");
                    Err(rocket)
                }
            }
        })
    });
    let built = rocket::custom(figment)
        .manage(app)
        .attach(cors)
        .attach(fleet_link)
        .mount("/api/v1", api::routes())
        .mount("/", openapi::routes())
        .mount("/", metrics::routes())
        .mount(
            "/",
            rocket::routes![
                ws::routes::live,
                ws::routes::device,
                ws::routes::attacks,
                ws::routes::alerts,
                ws::routes::fl
            ],
        )
        .register("/", api::catchers());
    // The console's routes are not part of the API document.
    let doc = openapi::build(built.routes());
    built.mount("/", ui::routes()).manage(doc)
}
