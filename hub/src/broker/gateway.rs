//! The agents' door to the embedded broker: MQTT over mutual TLS on `mqtt_tls_port`.
//!
//! Each connection must present a certificate of the hub's CA that the [`Registry`] still
//! trusts. Its MQTT 3.1.1 packets are read one by one and checked before they reach the broker
//! (listening on loopback only, behind a password): the client id must be the certificate's
//! agent, and every publish, will and subscription must stay under that agent's own topics.
//! A connection that breaks a rule, or whose agent loses trust, is closed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use gatewatch_proto::fleet;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use uuid::Uuid;

use super::identity::Registry;

/// Largest MQTT packet an agent may send (a batch of predictions is far smaller).
pub const MAX_PACKET: usize = 4 << 20;

/// Counters of the TLS listener.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub accepted: AtomicU64,
    /// TLS failed: no certificate, or not one of this CA.
    pub refused_tls: AtomicU64,
    /// A valid certificate the registry no longer trusts (revoked, replaced, unknown).
    pub refused_identity: AtomicU64,
    /// Closed for publishing or subscribing outside the agent's own topics.
    pub refused_acl: AtomicU64,
    /// Live connections closed because their agent lost trust.
    pub kicked: AtomicU64,
}

/// Where the embedded broker listens and the credentials the gateway presents to it.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub username: String,
    pub password: String,
}

/// Accepts agents until the process ends.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    upstream: Upstream,
    registry: Arc<Registry>,
    stats: Arc<GatewayStats>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "MQTT/TLS accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, upstream, registry, stats) =
            (acceptor.clone(), upstream.clone(), registry.clone(), stats.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    stats.refused_tls.fetch_add(1, Relaxed);
                    tracing::info!(%peer, error = %e, "MQTT/TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let Some((agent, fingerprint)) = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(crate::pki::agent_of)
            else {
                stats.refused_tls.fetch_add(1, Relaxed);
                return;
            };
            if let Err(why) = registry.check(agent, &fingerprint) {
                stats.refused_identity.fetch_add(1, Relaxed);
                tracing::warn!(%peer, %agent, reason = %why, "MQTT connection refused");
                return;
            }
            stats.accepted.fetch_add(1, Relaxed);
            match relay(tls, agent, &fingerprint, &upstream, &registry).await {
                Ok(()) => {}
                Err(Closed::Rule(rule)) => {
                    stats.refused_acl.fetch_add(1, Relaxed);
                    tracing::warn!(%peer, %agent, %rule, "agent broke a topic rule; connection closed");
                }
                Err(Closed::Distrusted(why)) => {
                    stats.kicked.fetch_add(1, Relaxed);
                    tracing::warn!(%peer, %agent, reason = %why, "agent no longer trusted; connection closed");
                }
                Err(Closed::Io(e)) => tracing::debug!(%peer, %agent, error = %e, "MQTT connection ended"),
            }
        });
    }
}

#[derive(Debug)]
enum Closed {
    Rule(String),
    Distrusted(super::identity::Distrust),
    Io(std::io::Error),
}

impl From<std::io::Error> for Closed {
    fn from(e: std::io::Error) -> Self {
        Closed::Io(e)
    }
}

async fn relay<S: AsyncRead + AsyncWrite + Unpin>(
    client: S,
    agent: Uuid,
    fingerprint: &str,
    upstream: &Upstream,
    registry: &Registry,
) -> Result<(), Closed> {
    let broker = TcpStream::connect(upstream.addr).await?;
    let _ = broker.set_nodelay(true);
    let (mut from_broker, mut to_broker) = broker.into_split();
    let (mut from_client, mut to_client) = tokio::io::split(client);
    let mut changes = registry.changes();
    let inbound = async {
        let mut connected = false;
        loop {
            let Some(packet) = read_packet(&mut from_client).await? else {
                return Ok(());
            };
            let packet = check(packet, agent, &mut connected, upstream).map_err(Closed::Rule)?;
            to_broker.write_all(&packet).await?;
        }
    };
    let outbound = async {
        tokio::io::copy(&mut from_broker, &mut to_client).await?;
        to_client.shutdown().await?;
        Ok::<(), Closed>(())
    };
    let trust = async {
        loop {
            if changes.changed().await.is_err() {
                return std::future::pending().await;
            }
            if let Err(why) = registry.check(agent, fingerprint) {
                return Err(Closed::Distrusted(why));
            }
        }
    };
    tokio::select! {
        r = inbound => r,
        r = outbound => r,
        r = trust => r,
    }
}

/// One MQTT packet, header included; `None` at a clean end of stream.
async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, Closed> {
    let mut first = [0u8; 1];
    if r.read(&mut first).await? == 0 {
        return Ok(None);
    }
    let mut packet = vec![first[0]];
    let mut len = 0usize;
    for i in 0..4 {
        let b = r.read_u8().await?;
        packet.push(b);
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(Closed::Rule("malformed remaining length".into()));
        }
    }
    if len > MAX_PACKET {
        return Err(Closed::Rule(format!("packet of {len} bytes is over {MAX_PACKET}")));
    }
    let start = packet.len();
    packet.resize(start + len, 0);
    r.read_exact(&mut packet[start..]).await?;
    Ok(Some(packet))
}

/// Checks one packet from the agent; returns what to forward (CONNECT gets the broker's
/// credentials instead of the agent's).
fn check(packet: Vec<u8>, agent: Uuid, connected: &mut bool, upstream: &Upstream) -> Result<Vec<u8>, String> {
    let kind = packet[0] >> 4;
    let body = &packet[header_len(&packet)..];
    match (kind, *connected) {
        (1, false) => {
            *connected = true;
            let connect = Connect::parse(body)?;
            let expected = fleet::agent_client_id(agent);
            if connect.client_id != expected {
                return Err(format!("client id {:?} is not {expected:?}", connect.client_id));
            }
            if let Some(topic) = &connect.will_topic {
                if !fleet::agent_may_publish(agent, topic) {
                    return Err(format!("last will on {topic:?}"));
                }
            }
            Ok(connect.encode(&upstream.username, &upstream.password))
        }
        (1, true) => Err("second CONNECT".into()),
        (_, false) => Err("first packet is not CONNECT".into()),
        (3, true) => {
            let topic = read_str(body, 0)?.0;
            if fleet::agent_may_publish(agent, topic) {
                Ok(packet)
            } else {
                Err(format!("publish to {topic:?}"))
            }
        }
        (8, true) => {
            let mut at = 2; // packet id
            while at < body.len() {
                let (filter, next) = read_str(body, at)?;
                if !fleet::agent_may_subscribe(agent, filter) {
                    return Err(format!("subscribe to {filter:?}"));
                }
                at = next + 1; // requested QoS
            }
            Ok(packet)
        }
        _ => Ok(packet),
    }
}

fn header_len(packet: &[u8]) -> usize {
    1 + packet[1..].iter().position(|b| b & 0x80 == 0).map_or(4, |i| i + 1)
}

/// A length-prefixed UTF-8 string at `at`, and the offset after it.
fn read_str(buf: &[u8], at: usize) -> Result<(&str, usize), String> {
    let bytes = read_bytes(buf, at)?;
    let s = std::str::from_utf8(bytes.0).map_err(|_| "string is not UTF-8".to_string())?;
    Ok((s, bytes.1))
}

fn read_bytes(buf: &[u8], at: usize) -> Result<(&[u8], usize), String> {
    let len = buf
        .get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or("truncated packet")?;
    let bytes = buf.get(at + 2..at + 2 + len).ok_or("truncated packet")?;
    Ok((bytes, at + 2 + len))
}

/// The parts of an MQTT 3.1.1 CONNECT the gateway looks at or keeps.
#[derive(Debug, PartialEq)]
struct Connect {
    /// The connect flags without the user name and password bits.
    flags: u8,
    keep_alive: u16,
    client_id: String,
    will_topic: Option<String>,
    will_message: Vec<u8>,
}

impl Connect {
    fn parse(body: &[u8]) -> Result<Connect, String> {
        let (protocol, at) = read_str(body, 0)?;
        let level = *body.get(at).ok_or("truncated CONNECT")?;
        if protocol != "MQTT" || level != 4 {
            return Err(format!(
                "protocol {protocol:?} level {level}; only MQTT 3.1.1 is served"
            ));
        }
        let flags = *body.get(at + 1).ok_or("truncated CONNECT")?;
        let keep_alive = body
            .get(at + 2..at + 4)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or("truncated CONNECT")?;
        let (client_id, mut at) = read_str(body, at + 4)?;
        let (mut will_topic, mut will_message) = (None, Vec::new());
        if flags & 0x04 != 0 {
            let (topic, next) = read_str(body, at)?;
            let (message, next) = read_bytes(body, next)?;
            will_topic = Some(topic.to_string());
            will_message = message.to_vec();
            at = next;
        }
        let _ = at; // user name and password, if any, are the agent's business; they are replaced
        Ok(Connect {
            flags: flags & !0xc0,
            keep_alive,
            client_id: client_id.to_string(),
            will_topic,
            will_message,
        })
    }

    fn encode(&self, username: &str, password: &str) -> Vec<u8> {
        let mut body = Vec::with_capacity(64 + self.will_message.len());
        put_bytes(&mut body, b"MQTT");
        body.push(4);
        body.push(self.flags | 0xc0);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        put_bytes(&mut body, self.client_id.as_bytes());
        if let Some(topic) = &self.will_topic {
            put_bytes(&mut body, topic.as_bytes());
            put_bytes(&mut body, &self.will_message);
        }
        put_bytes(&mut body, username.as_bytes());
        put_bytes(&mut body, password.as_bytes());
        let mut packet = vec![0x10];
        let mut len = body.len();
        loop {
            let mut b = (len % 128) as u8;
            len /= 128;
            if len > 0 {
                b |= 0x80;
            }
            packet.push(b);
            if len == 0 {
                break;
            }
        }
        packet.extend_from_slice(&body);
        packet
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Every string here is far below 64 KiB (ids, topics, a status message).
    out.extend_from_slice(&(bytes.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::v4::{Connect as RConnect, LastWill, Login, Publish, Subscribe};
    use rumqttc::mqttbytes::QoS;

    fn upstream() -> Upstream {
        Upstream {
            addr: "127.0.0.1:1".parse().expect("addr"),
            username: "gateway".into(),
            password: "s3cret".into(),
        }
    }

    fn bytes(write: impl FnOnce(&mut bytes::BytesMut)) -> Vec<u8> {
        let mut buf = bytes::BytesMut::new();
        write(&mut buf);
        buf.to_vec()
    }

    fn connect(client_id: &str, will: Option<&str>) -> Vec<u8> {
        let mut c = RConnect::new(client_id);
        c.keep_alive = 7;
        c.clean_session = false;
        c.login = Some(Login::new("agent", "whatever"));
        c.last_will = will.map(|t| LastWill::new(t, "offline", QoS::AtLeastOnce, true));
        bytes(|b| {
            c.write(b).expect("encode");
        })
    }

    #[test]
    fn connect_is_rewritten_with_the_brokers_credentials_and_nothing_else_changes() {
        let agent = Uuid::now_v7();
        let status = fleet::topic(agent, fleet::Channel::Status);
        let mut connected = false;
        let out = check(
            connect(&fleet::agent_client_id(agent), Some(&status)),
            agent,
            &mut connected,
            &upstream(),
        )
        .expect("allowed");
        assert!(connected);
        let parsed = match rumqttc::mqttbytes::v4::Packet::read(&mut bytes::BytesMut::from(&out[..]), 1 << 20) {
            Ok(rumqttc::mqttbytes::v4::Packet::Connect(c)) => c,
            other => panic!("not a connect: {other:?}"),
        };
        assert_eq!(parsed.client_id, fleet::agent_client_id(agent));
        assert_eq!(parsed.keep_alive, 7);
        assert!(!parsed.clean_session);
        assert_eq!(parsed.login, Some(Login::new("gateway", "s3cret")));
        let will = parsed.last_will.expect("will kept");
        assert_eq!((will.topic.as_str(), will.retain), (status.as_str(), true));
    }

    #[test]
    fn an_agent_cannot_speak_or_listen_as_another() {
        let (me, other) = (Uuid::now_v7(), Uuid::now_v7());
        let up = upstream();
        let refused = |packet: Vec<u8>, connected: bool| {
            let mut c = connected;
            check(packet, me, &mut c, &up).is_err()
        };
        assert!(
            refused(connect(&fleet::agent_client_id(other), None), false),
            "someone else's client id"
        );
        assert!(refused(
            connect(
                &fleet::agent_client_id(me),
                Some(&fleet::topic(other, fleet::Channel::Status))
            ),
            false
        ));
        let publish = |topic: String| {
            bytes(|b| {
                let mut p = Publish::new(topic, QoS::AtLeastOnce, vec![1, 2, 3]);
                p.pkid = 1;
                p.write(b).expect("encode");
            })
        };
        assert!(!refused(publish(fleet::topic(me, fleet::Channel::Predictions)), true));
        assert!(refused(publish(fleet::topic(other, fleet::Channel::Predictions)), true));
        assert!(
            refused(publish(fleet::topic(me, fleet::Channel::Ack)), true),
            "acks are the hub's"
        );
        assert!(
            refused(publish(fleet::topic(me, fleet::Channel::Predictions)), false),
            "publish before CONNECT"
        );
        let subscribe = |filter: String| {
            bytes(|b| {
                let mut s = Subscribe::new(filter, QoS::AtLeastOnce);
                s.pkid = 1;
                s.write(b).expect("encode");
            })
        };
        assert!(!refused(subscribe(fleet::topic(me, fleet::Channel::Ack)), true));
        assert!(refused(subscribe("gw/v1/agents/+/ack".into()), true));
        assert!(refused(subscribe("#".into()), true));
        assert!(
            refused(connect(&fleet::agent_client_id(me), None), true),
            "second CONNECT"
        );
    }

    #[tokio::test]
    async fn packets_are_framed_by_their_remaining_length() {
        let agent = Uuid::now_v7();
        let big = bytes(|b| {
            let mut p = Publish::new(
                fleet::topic(agent, fleet::Channel::Predictions),
                QoS::AtLeastOnce,
                vec![7u8; 300_000],
            );
            p.pkid = 9;
            p.write(b).expect("encode");
        });
        let ping = vec![0xc0, 0x00];
        let stream: Vec<u8> = [big.clone(), ping.clone()].concat();
        let mut r = &stream[..];
        assert_eq!(read_packet(&mut r).await.expect("read"), Some(big));
        assert_eq!(read_packet(&mut r).await.expect("read"), Some(ping));
        assert_eq!(read_packet(&mut r).await.expect("eof"), None);
        let mut oversized = &[0x30u8, 0xff, 0xff, 0xff, 0x7f][..];
        assert!(matches!(read_packet(&mut oversized).await, Err(Closed::Rule(_))));
    }
}
