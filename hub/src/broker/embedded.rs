//! The broker inside the hub (`broker_mode = "embedded"`): rumqttd on a loopback port that
//! only the hub can log in to, with the TLS [`gateway`](super::gateway) in front of it for
//! agents. The hub's own consumer is an ordinary MQTT client of it.

use std::collections::HashMap;
use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use gatewatch_proto::fleet;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, SegmentConfig, ServerSettings};

use super::gateway::{Upstream, MAX_PACKET};

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("no free loopback port for the embedded broker: {0}")]
    Port(std::io::Error),
    #[error("the embedded broker did not start: {0}")]
    Start(String),
}

/// Unacknowledged messages the broker sends one client at most.
pub const IN_FLIGHT: usize = 4096;

/// Starts rumqttd on its own threads; returns once it accepts connections.
pub fn start(max_agents: usize) -> Result<Upstream, EmbeddedError> {
    let addr = {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(EmbeddedError::Port)?;
        probe.local_addr().map_err(EmbeddedError::Port)?
    };
    let secret: [u8; 24] = rand::random();
    let password: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let username = "gatewatch-hub".to_string();
    let connections = ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: MAX_PACKET,
        // Messages sent to a client ahead of its acknowledgements. The hub acknowledges a group
        // of messages only once it is committed: this bounds how many wait for one commit.
        max_inflight_count: IN_FLIGHT,
        auth: Some(HashMap::from([(username.clone(), password.clone())])),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "gatewatch-embedded".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: max_agents + 16,
            max_outgoing_packet_count: IN_FLIGHT as u64,
            // rumqttd keeps every message in an in-memory log per subscription filter until the
            // log is full; nothing here needs them once delivered (the agents' spools keep what
            // is not yet stored), so the logs are small: agents' own filters (acks, commands)
            // a few KB each, the hub's predictions filter enough to ride out a pause.
            max_segment_size: 16 << 10,
            max_segment_count: 2,
            custom_segment: Some(HashMap::from([(
                format!("{}/+/{}", fleet::ROOT, fleet::Channel::Predictions.as_str()),
                SegmentConfig {
                    max_segment_size: 16 << 20,
                    max_segment_count: 4,
                },
            )])),
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("agents".to_string(), server)])),
        ..Config::default()
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = Broker::new(config).start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .map_err(|e| EmbeddedError::Start(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            return Err(EmbeddedError::Start(format!("nothing listens on {addr} after 10 s")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    tracing::debug!(%addr, "embedded MQTT broker up");
    Ok(Upstream {
        addr,
        username,
        password,
    })
}
