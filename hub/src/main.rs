//! `gatewatch-hub` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gatewatch_hub::config::{Config, KEYS_HELP};
use gatewatch_hub::{db::Db, setup, App};

#[derive(Parser, Debug)]
#[command(name = "gatewatch-hub", version, about = "gatewatch hub: API, WebSockets and storage for a fleet of agents", after_help = KEYS_HELP)]
struct Cli {
    /// TOML configuration file (optional; defaults work with a local PostgreSQL).
    #[arg(long, short, env = "GATEWATCH_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the hub (creates the database, runs migrations, creates the first admin on first start).
    #[command(after_help = KEYS_HELP)]
    Serve,
    /// Validate the configuration and print it with secrets hidden.
    CheckConfig,
    /// Enroll, list and revoke agents (works on the database; the hub may be running).
    #[command(subcommand)]
    Agents(AgentsCommand),
}

#[derive(Subcommand, Debug)]
enum AgentsCommand {
    /// Issue a one-time enrollment token and print the command to run on the gateway.
    Token {
        /// Minutes until the token expires (at most a week).
        #[arg(long, default_value_t = 60)]
        ttl_minutes: u32,
        /// The hub's address as the gateway reaches it, put into the printed command.
        #[arg(long, default_value = "http://HUB:8000")]
        hub_url: String,
        /// Print only the token and the CA fingerprint, on one line (for scripts).
        #[arg(long)]
        quiet: bool,
    },
    /// List enrolled agents.
    List,
    /// Revoke an agent: its certificate is refused from now on and live connections close within seconds.
    Revoke {
        /// The agent id (see `agents list`).
        id: uuid::Uuid,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the chain of causes, most specific last.
            eprintln!("gatewatch-hub: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&config.log).context("config key `log`")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::CheckConfig => {
            println!(
                "database_url = {:?}",
                gatewatch_hub::config::redact_url(&config.database_url)
            );
            println!("data_dir = {:?}", config.data_dir);
            println!("http = {}:{}", config.http_address, config.http_port);
            println!("configuration is valid");
            Ok(())
        }
        Command::Serve => serve(config),
        Command::Agents(cmd) => agents(config, cmd),
    }
}

fn agents(config: Config, cmd: AgentsCommand) -> anyhow::Result<()> {
    use gatewatch_hub::api::agents as api;
    let db = Db::open(&config.database_url, 1)?;
    let mut conn = db.get()?;
    match cmd {
        AgentsCommand::Token {
            ttl_minutes,
            hub_url,
            quiet,
        } => {
            anyhow::ensure!(
                (1..=api::MAX_TOKEN_MINUTES).contains(&ttl_minutes),
                "--ttl-minutes must be 1..={}",
                api::MAX_TOKEN_MINUTES
            );
            let ca = gatewatch_hub::pki::Ca::load_or_create(&config.data_dir).context("the hub's CA (data_dir)")?;
            let (token, expires_at) = api::issue_token(&mut conn, None, ttl_minutes).context("storing the token")?;
            if quiet {
                println!("{token} {}", ca.fingerprint());
            } else {
                println!("Enrollment token (single use, expires {expires_at}):\n  {token}");
                println!("CA fingerprint (SHA-256):\n  {}", ca.fingerprint());
                println!(
                    "On the gateway run:\n  {}",
                    api::enroll_command(&hub_url, &token, &ca.fingerprint())
                );
            }
        }
        AgentsCommand::List => {
            let rows = api::load_agents(&mut conn, None).context("listing agents")?;
            println!(
                "{:<36}  {:<24}  {:<8}  {:<16}  last heartbeat",
                "id", "name", "status", "model"
            );
            for a in rows {
                let seen = a
                    .last_heartbeat_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into());
                let model = a.model_version.unwrap_or_else(|| "-".into());
                println!("{}  {:<24}  {:<8}  {model:<16}  {seen}", a.id, a.name, a.status);
            }
        }
        AgentsCommand::Revoke { id } => {
            let n = api::revoke_agent(&mut conn, id).context("revoking")?;
            if n == 0 {
                use diesel::prelude::*;
                let exists: i64 = gatewatch_hub::db::schema::agents::table
                    .find(id)
                    .count()
                    .get_result(&mut conn)?;
                anyhow::ensure!(exists > 0, "no agent {id}");
                println!("agent {id} was already revoked");
            } else {
                println!("agent {id} revoked; a running hub drops its connections within seconds");
            }
        }
    }
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    let secret = setup::jwt_secret(&config.data_dir)?;
    let db = Db::open(&config.database_url, config.db_pool_size)?;
    let mut conn = db.get()?;
    let preset = std::env::var("GATEWATCH_ADMIN_PASSWORD").ok().filter(|p| !p.is_empty());
    if let Some(password) = setup::first_admin(&mut conn, preset)? {
        println!("Created the first admin account. Username: admin  Password: {password}");
        println!("This password is shown only once; change it after logging in.");
    }
    let active_model = setup::active_model(&mut conn)?;
    drop(conn);
    let addr = format!("{}:{}", config.http_address, config.http_port);
    let app = App::new(config, db, &secret)?;
    app.models.restore(active_model.as_deref());
    tracing::info!(%addr, "gatewatch hub listening");
    rocket::execute(gatewatch_hub::rocket(app).launch()).map_err(|e| anyhow::anyhow!("server failed: {e}"))?;
    Ok(())
}
