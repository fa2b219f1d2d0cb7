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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
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
    }
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
    let app = App::new(config, db, &secret);
    app.models.restore(active_model.as_deref());
    tracing::info!(%addr, "gatewatch hub listening");
    rocket::execute(gatewatch_hub::rocket(app).launch()).map_err(|e| anyhow::anyhow!("server failed: {e}"))?;
    Ok(())
}
