//! Hub configuration: one TOML file, then `GATEWATCH_<KEY>` environment overrides, then validation.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Every key, its meaning and its default; printed by `--help` and mirrored in `hub/gatewatch-hub.example.toml`.
pub const KEYS_HELP: &str = "\
Configuration keys (TOML file given by --config or GATEWATCH_CONFIG; each key can be overridden
by the environment variable GATEWATCH_<KEY in upper case>):
  database_url             PostgreSQL URL [postgres://localhost/gatewatch]; DATABASE_URL also works
  data_dir                 directory for generated secrets (JWT key) and uploaded models [./data]
  model_dir                bundled detection model [./models/default if present, else /usr/share/gatewatch-hub/model]
  http_address             address to listen on [0.0.0.0]
  http_port                HTTP port for API, WebSockets and UI [8000]
  db_pool_size             database connections [16]
  cors_origins             comma-separated origins allowed by CORS (TOML: list) [none]
  rate_limit_per_minute    API requests per user and minute [100]
  login_attempts_per_minute  login attempts per client address and minute [10]
  max_body_bytes           largest JSON body [16777216]
  max_upload_bytes         largest file upload [104857600]
  ws_queue_len             events buffered per WebSocket client before the oldest is dropped [256]
  broker_mode              fleet link over MQTT: embedded (the hub's own broker, agents enrolled with
                           mutual TLS), external (a broker such as Mosquitto) or off [embedded]
  mqtt_tls_port            embedded mode: MQTT over mutual TLS for agents, on http_address [8883]
  quic_port                embedded mode: QUIC (UDP) with mutual TLS for model downloads and flow
                           uploads, on http_address [4433]
  tls_names                extra host names/addresses in the hub's TLS certificate, comma-separated
                           (TOML: list) [localhost,127.0.0.1]
  max_agents               embedded mode: most agents connected at once [10000]
  broker_url               external mode: the MQTT broker, mqtt://HOST:PORT [mqtt://127.0.0.1:1883]
  broker_client_id         external mode: the hub's MQTT client id; keep it stable [gatewatch-hub]
  broker_username          external mode: MQTT user name [none]; the password only from GATEWATCH_BROKER_PASSWORD
  agent_offline_after_secs an agent without heartbeat for this long is offline [30]
  log                      tracing filter [info,rocket=warn,rumqttd=warn]";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub database_url: String,
    pub data_dir: PathBuf,
    pub model_dir: PathBuf,
    pub http_address: IpAddr,
    pub http_port: u16,
    pub db_pool_size: u32,
    pub cors_origins: Vec<String>,
    pub rate_limit_per_minute: u32,
    pub login_attempts_per_minute: u32,
    pub max_body_bytes: u64,
    pub max_upload_bytes: u64,
    pub ws_queue_len: usize,
    pub broker_mode: crate::broker::BrokerMode,
    pub mqtt_tls_port: u16,
    pub quic_port: u16,
    pub tls_names: Vec<String>,
    pub max_agents: usize,
    pub broker_url: String,
    pub broker_client_id: String,
    pub broker_username: Option<String>,
    #[serde(skip)]
    pub broker_password: Option<String>,
    pub agent_offline_after_secs: u64,
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "postgres://localhost/gatewatch".into(),
            data_dir: PathBuf::from("./data"),
            model_dir: default_model_dir(),
            http_address: IpAddr::from([0, 0, 0, 0]),
            http_port: 8000,
            db_pool_size: 16,
            cors_origins: Vec::new(),
            rate_limit_per_minute: 100,
            login_attempts_per_minute: 10,
            max_body_bytes: 16 * 1024 * 1024,
            max_upload_bytes: 100 * 1024 * 1024,
            ws_queue_len: 256,
            broker_mode: crate::broker::BrokerMode::Embedded,
            mqtt_tls_port: 8883,
            quic_port: 4433,
            tls_names: vec!["localhost".into(), "127.0.0.1".into()],
            max_agents: 10_000,
            broker_url: "mqtt://127.0.0.1:1883".into(),
            broker_client_id: "gatewatch-hub".into(),
            broker_username: None,
            broker_password: None,
            agent_offline_after_secs: 30,
            log: "info,rocket=warn,rumqttd=warn".into(),
        }
    }
}

/// A DNS name or an IP address (what a certificate's subject alternative name can hold).
fn valid_tls_name(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
        || (!name.is_empty()
            && name.len() <= 253
            && name
                .split('.')
                .all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')))
}

/// A source checkout's shipped model, else where the package installs it.
fn default_model_dir() -> PathBuf {
    let checkout = PathBuf::from("models/default");
    if checkout.join("model.onnx").is_file() {
        checkout
    } else {
        PathBuf::from("/usr/share/gatewatch-hub/model")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}={value:?} is not valid for key `{key}`: {fix}")]
    Env {
        var: String,
        key: &'static str,
        value: String,
        fix: &'static str,
    },
    #[error("config key `{key}` {problem}; {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: &'static str,
    },
}

impl Config {
    /// Reads the file (if any), applies the environment, validates.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.into(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies `GATEWATCH_<KEY>` overrides; `get` is the environment (a parameter so tests need no global state).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(
            var: &str,
            key: &'static str,
            value: String,
            fix: &'static str,
        ) -> Result<T, ConfigError> {
            value.trim().parse().map_err(|_| ConfigError::Env {
                var: var.into(),
                key,
                value,
                fix,
            })
        }
        if let Some(v) = get("DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("GATEWATCH_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("GATEWATCH_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = get("GATEWATCH_MODEL_DIR") {
            self.model_dir = v.into();
        }
        let num = "give a whole number";
        if let Some(v) = get("GATEWATCH_HTTP_ADDRESS") {
            self.http_address = parse(
                "GATEWATCH_HTTP_ADDRESS",
                "http_address",
                v,
                "give an IP address like 0.0.0.0",
            )?;
        }
        if let Some(v) = get("GATEWATCH_HTTP_PORT") {
            self.http_port = parse("GATEWATCH_HTTP_PORT", "http_port", v, "give a port number 1-65535")?;
        }
        if let Some(v) = get("GATEWATCH_DB_POOL_SIZE") {
            self.db_pool_size = parse("GATEWATCH_DB_POOL_SIZE", "db_pool_size", v, num)?;
        }
        if let Some(v) = get("GATEWATCH_CORS_ORIGINS") {
            self.cors_origins = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = get("GATEWATCH_RATE_LIMIT_PER_MINUTE") {
            self.rate_limit_per_minute = parse("GATEWATCH_RATE_LIMIT_PER_MINUTE", "rate_limit_per_minute", v, num)?;
        }
        if let Some(v) = get("GATEWATCH_LOGIN_ATTEMPTS_PER_MINUTE") {
            self.login_attempts_per_minute = parse(
                "GATEWATCH_LOGIN_ATTEMPTS_PER_MINUTE",
                "login_attempts_per_minute",
                v,
                num,
            )?;
        }
        if let Some(v) = get("GATEWATCH_MAX_BODY_BYTES") {
            self.max_body_bytes = parse("GATEWATCH_MAX_BODY_BYTES", "max_body_bytes", v, num)?;
        }
        if let Some(v) = get("GATEWATCH_MAX_UPLOAD_BYTES") {
            self.max_upload_bytes = parse("GATEWATCH_MAX_UPLOAD_BYTES", "max_upload_bytes", v, num)?;
        }
        if let Some(v) = get("GATEWATCH_WS_QUEUE_LEN") {
            self.ws_queue_len = parse("GATEWATCH_WS_QUEUE_LEN", "ws_queue_len", v, num)?;
        }
        if let Some(v) = get("GATEWATCH_BROKER_MODE") {
            self.broker_mode = match v.trim() {
                "off" => crate::broker::BrokerMode::Off,
                "external" => crate::broker::BrokerMode::External,
                "embedded" => crate::broker::BrokerMode::Embedded,
                _ => {
                    return Err(ConfigError::Env {
                        var: "GATEWATCH_BROKER_MODE".into(),
                        key: "broker_mode",
                        value: v,
                        fix: "use embedded, external or off",
                    })
                }
            };
        }
        if let Some(v) = get("GATEWATCH_MQTT_TLS_PORT") {
            self.mqtt_tls_port = parse(
                "GATEWATCH_MQTT_TLS_PORT",
                "mqtt_tls_port",
                v,
                "give a port number 1-65535",
            )?;
        }
        if let Some(v) = get("GATEWATCH_QUIC_PORT") {
            self.quic_port = parse("GATEWATCH_QUIC_PORT", "quic_port", v, "give a port number 1-65535")?;
        }
        if let Some(v) = get("GATEWATCH_TLS_NAMES") {
            self.tls_names = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = get("GATEWATCH_MAX_AGENTS") {
            self.max_agents = parse("GATEWATCH_MAX_AGENTS", "max_agents", v, num)?;
        }
        if let Some(v) = get("GATEWATCH_BROKER_URL") {
            self.broker_url = v;
        }
        if let Some(v) = get("GATEWATCH_BROKER_CLIENT_ID") {
            self.broker_client_id = v;
        }
        if let Some(v) = get("GATEWATCH_BROKER_USERNAME") {
            self.broker_username = Some(v);
        }
        if let Some(v) = get("GATEWATCH_BROKER_PASSWORD") {
            self.broker_password = Some(v);
        }
        if let Some(v) = get("GATEWATCH_AGENT_OFFLINE_AFTER_SECS") {
            self.agent_offline_after_secs =
                parse("GATEWATCH_AGENT_OFFLINE_AFTER_SECS", "agent_offline_after_secs", v, num)?;
        }
        if let Some(v) = get("GATEWATCH_LOG") {
            self.log = v;
        }
        Ok(())
    }

    /// The broker settings when the fleet link is on.
    pub fn broker(&self) -> Result<Option<crate::broker::BrokerSettings>, ConfigError> {
        use crate::broker::{BrokerMode, BrokerSettings, Link};
        let offline_after = std::time::Duration::from_secs(self.agent_offline_after_secs.max(1));
        let link = match self.broker_mode {
            BrokerMode::Off => return Ok(None),
            BrokerMode::Embedded => {
                if self.mqtt_tls_port == 0 || self.mqtt_tls_port == self.http_port {
                    return Err(ConfigError::Invalid {
                        key: "mqtt_tls_port",
                        problem: format!("is {}", self.mqtt_tls_port),
                        fix: "give a port number 1-65535 other than http_port (8883 is MQTT over TLS)",
                    });
                }
                if self.quic_port == 0 {
                    return Err(ConfigError::Invalid {
                        key: "quic_port",
                        problem: "is 0".into(),
                        fix: "give a UDP port number 1-65535 (4433 by default)",
                    });
                }
                if self.max_agents == 0 {
                    return Err(ConfigError::Invalid {
                        key: "max_agents",
                        problem: "is 0".into(),
                        fix: "give the largest fleet size you expect, e.g. 10000",
                    });
                }
                if let Some(bad) = self.tls_names.iter().find(|n| !valid_tls_name(n)) {
                    return Err(ConfigError::Invalid {
                        key: "tls_names",
                        problem: format!("contains {bad:?}"),
                        fix: "list DNS names or IP addresses, e.g. [\"hub.example.com\", \"10.0.0.2\"]",
                    });
                }
                Link::Embedded {
                    listen: std::net::SocketAddr::new(self.http_address, self.mqtt_tls_port),
                    quic: std::net::SocketAddr::new(self.http_address, self.quic_port),
                    tls_names: self.tls_names.clone(),
                    max_agents: self.max_agents,
                }
            }
            BrokerMode::External => {
                let url = gatewatch_proto::fleet::parse_broker_url(&self.broker_url).map_err(|problem| {
                    ConfigError::Invalid {
                        key: "broker_url",
                        problem,
                        fix: "use mqtt://HOST:PORT, e.g. mqtt://127.0.0.1:1883",
                    }
                })?;
                if url.tls {
                    return Err(ConfigError::Invalid {
                        key: "broker_url",
                        problem: format!("is {url}: the hub connects to an external broker without TLS"),
                        fix: "use mqtt://HOST:PORT on a trusted network, or broker_mode = \"embedded\"",
                    });
                }
                if self.broker_client_id.is_empty() || self.broker_client_id.len() > 64 {
                    return Err(ConfigError::Invalid {
                        key: "broker_client_id",
                        problem: format!("is {:?}", self.broker_client_id),
                        fix: "give 1-64 characters",
                    });
                }
                Link::External {
                    host: url.host,
                    port: url.port,
                    client_id: self.broker_client_id.clone(),
                    username: self.broker_username.clone(),
                    password: self.broker_password.clone(),
                }
            }
        };
        Ok(Some(BrokerSettings { link, offline_after }))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.database_url.starts_with("postgres://") || self.database_url.starts_with("postgresql://")) {
            return Err(ConfigError::Invalid {
                key: "database_url",
                problem: format!("is {:?}", redact_url(&self.database_url)),
                fix: "use a URL like postgres://user@host:5432/gatewatch",
            });
        }
        if self.http_port == 0 {
            return Err(ConfigError::Invalid {
                key: "http_port",
                problem: "is 0".into(),
                fix: "give a port number 1-65535",
            });
        }
        if self.db_pool_size == 0 || self.db_pool_size > 512 {
            return Err(ConfigError::Invalid {
                key: "db_pool_size",
                problem: format!("is {}", self.db_pool_size),
                fix: "give a number between 1 and 512",
            });
        }
        if self.rate_limit_per_minute == 0 || self.login_attempts_per_minute == 0 {
            return Err(ConfigError::Invalid {
                key: if self.rate_limit_per_minute == 0 {
                    "rate_limit_per_minute"
                } else {
                    "login_attempts_per_minute"
                },
                problem: "is 0, which would refuse every request".into(),
                fix: "give a positive number",
            });
        }
        if self.max_body_bytes < 1024 || self.max_upload_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: if self.max_body_bytes < 1024 {
                    "max_body_bytes"
                } else {
                    "max_upload_bytes"
                },
                problem: "is below 1024".into(),
                fix: "give a size in bytes of at least 1024",
            });
        }
        if self.ws_queue_len == 0 {
            return Err(ConfigError::Invalid {
                key: "ws_queue_len",
                problem: "is 0".into(),
                fix: "give a positive number (256 is a good default)",
            });
        }
        self.broker()?;
        for origin in &self.cors_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "cors_origins",
                    problem: format!("contains {origin:?}"),
                    fix: "list full origins like https://ids.example.com",
                });
            }
        }
        Ok(())
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((auth, host)) => (Some(auth), host),
        None => (None, rest),
    };
    match auth {
        Some(auth) => {
            let user = auth.split(':').next().unwrap_or("");
            if auth.contains(':') {
                format!("{scheme}://{user}:***@{host}")
            } else {
                format!("{scheme}://{user}@{host}")
            }
        }
        None => format!("{scheme}://{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_validation_name_the_key() {
        let mut cfg = Config::default();
        cfg.apply_env(|k| match k {
            "DATABASE_URL" => Some("postgres://a/b".into()),
            "GATEWATCH_DATABASE_URL" => Some("postgres://c/d".into()),
            "GATEWATCH_HTTP_PORT" => Some("9000".into()),
            _ => None,
        })
        .expect("valid env");
        assert_eq!(cfg.database_url, "postgres://c/d");
        assert_eq!(cfg.http_port, 9000);
        let err = Config::default()
            .apply_env(|k| (k == "GATEWATCH_HTTP_PORT").then(|| "x".into()))
            .expect_err("must fail");
        assert!(err.to_string().contains("http_port"), "{err}");
        let cfg = Config {
            db_pool_size: 0,
            ..Config::default()
        };
        assert!(cfg
            .validate()
            .expect_err("must fail")
            .to_string()
            .contains("db_pool_size"));
    }

    #[test]
    fn broker_modes_are_checked_for_what_they_need() {
        use crate::broker::{BrokerMode, Link};
        let embedded = Config::default().broker().expect("valid").expect("on");
        assert!(matches!(embedded.link, Link::Embedded { listen, .. } if listen.port() == 8883));
        let clash = Config {
            mqtt_tls_port: 8000,
            ..Config::default()
        };
        assert!(clash
            .validate()
            .expect_err("clash")
            .to_string()
            .contains("mqtt_tls_port"));
        let bad_name = Config {
            tls_names: vec!["not a name".into()],
            ..Config::default()
        };
        assert!(bad_name.validate().expect_err("bad").to_string().contains("tls_names"));
        let tls_external = Config {
            broker_mode: BrokerMode::External,
            broker_url: "mqtts://broker:8883".into(),
            ..Config::default()
        };
        assert!(tls_external
            .validate()
            .expect_err("tls")
            .to_string()
            .contains("broker_url"));
        let mut env = Config::default();
        env.apply_env(|k| match k {
            "GATEWATCH_BROKER_MODE" => Some("off".into()),
            "GATEWATCH_TLS_NAMES" => Some("hub.example, 10.0.0.2".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(env.tls_names, ["hub.example", "10.0.0.2"]);
        assert!(env.broker().expect("valid").is_none());
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let err = toml::from_str::<Config>("http_prot = 1")
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("http_prot"), "{err}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("postgres://localhost/gatewatch"),
            "postgres://localhost/gatewatch"
        );
    }
}

#[cfg(test)]
mod example_file {
    #[test]
    fn example_file_is_valid_and_lists_every_key() {
        let text = include_str!("../gatewatch-hub.example.toml");
        let cfg: super::Config = toml::from_str(text).expect("example parses");
        cfg.validate().expect("example is valid");
        assert_eq!(cfg, super::Config::default(), "the example shows the defaults");
        let table: toml::Table = toml::from_str(text).expect("table");
        for line in super::KEYS_HELP.lines().skip(2) {
            // Continuation lines of a key's description start with spaces only.
            if line.starts_with("                           ") {
                continue;
            }
            let key = line.split_whitespace().next().unwrap_or("");
            // Keys without a fixed default are shown commented out.
            if ["model_dir", "broker_username"].contains(&key) {
                assert!(text.contains(&format!("# {key} = ")), "example lacks {key}");
                continue;
            }
            assert!(table.contains_key(key), "example lacks {key}");
        }
    }
}
