//! Background traffic of a small IoT site: every device keeps an MQTT session to the broker
//! (telemetry PUBLISH QoS 1 + PUBACK, PINGREQ keep-alive, occasional commands), resolves
//! names through the gateway and syncs its clock over NTP; the hub pulls JPEG snapshots from
//! the cameras over HTTP and polls the sensors over CoAP.

use std::net::Ipv4Addr;

use rand::Rng;

use super::net::{Ephemeral, Gen, Span, Udp, MS, SEC, US};
use super::payload::{
    coap_content, coap_get, dns_query, dns_response, http_request, http_response, jpeg, mqtt_connect, mqtt_puback,
    mqtt_publish_qos1, mqtt_suback, mqtt_subscribe, ntp_reply, ntp_request, DNS_A, DNS_AAAA, MQTT_CONNACK,
    MQTT_PINGREQ, MQTT_PINGRESP,
};
use super::tcp::{Dir, Endpoint, Stack, TcpConn, LINUX, LWIP};
use super::{SimConfig, SimError};

/// Packets per second at most of a camera pulled every 5 s, and of a sensor publishing
/// every 2 s and polled every 5 s.
const CAMERA_PACKETS_PER_SECOND: u64 = 15;
const SENSOR_PACKETS_PER_SECOND: u64 = 3;

/// Frames the benign generators may produce, for the up-front size check.
pub(crate) fn estimate(other_devices: usize, span: Span) -> u64 {
    let cameras = (0..other_devices).filter(|&i| kind_of_other(i) == Kind::Camera).count() as u64 + 1;
    let sensors = other_devices as u64 + 1 - cameras;
    let per_second = cameras * CAMERA_PACKETS_PER_SECOND + sensors * SENSOR_PACKETS_PER_SECOND;
    per_second * span.secs().ceil() as u64 + 100
}

/// The target is a camera; of the other devices every third is one too.
fn kind_of_other(index: usize) -> Kind {
    if index % 3 == 2 {
        Kind::Camera
    } else {
        Kind::Sensor
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Embedded Linux IP camera: serves snapshots on port 80.
    Camera,
    /// lwIP sensor node: serves CoAP.
    Sensor,
}

pub(crate) fn generate(g: &mut Gen<'_>, cfg: &SimConfig, others: &[Ipv4Addr], span: Span) -> Result<(), SimError> {
    let mut hub_ports = Ephemeral::new(&mut g.rng);
    let devices = std::iter::once((cfg.target, Kind::Camera))
        .chain(others.iter().enumerate().map(|(i, ip)| (*ip, kind_of_other(i))));
    for (ip, kind) in devices {
        let stack = match kind {
            Kind::Camera => LINUX,
            Kind::Sensor => LWIP,
        };
        let mut ports = Ephemeral::new(&mut g.rng);
        dns(g, cfg, ip, stack, &mut ports, span)?;
        ntp(g, cfg, ip, stack, &mut ports, span)?;
        mqtt(g, cfg, ip, kind, &mut ports, span)?;
        match kind {
            Kind::Camera => snapshots(g, cfg.hub, ip, &mut hub_ports, span)?,
            Kind::Sensor => coap(g, cfg.hub, ip, hub_ports.next_port(), span)?,
        }
    }
    Ok(())
}

fn device_name(ip: Ipv4Addr, kind: Kind) -> String {
    let [_, _, c, d] = ip.octets();
    match kind {
        Kind::Camera => format!("cam-{c:02x}{d:02x}"),
        Kind::Sensor => format!("env-{c:02x}{d:02x}"),
    }
}

/// Lookups of the broker, NTP and update server names, repeated when the TTL runs out.
/// Linux resolvers ask A and AAAA from one socket; lwIP asks A only.
fn dns(
    g: &mut Gen<'_>,
    cfg: &SimConfig,
    dev: Ipv4Addr,
    stack: Stack,
    ports: &mut Ephemeral,
    span: Span,
) -> Result<(), SimError> {
    let names: [(&str, &[Ipv4Addr], u32); 3] = [
        ("mqtt.iot-cloud.example", &[cfg.broker], 300),
        ("ntp.iot-cloud.example", &[cfg.ntp_server], 3600),
        (
            "fw.iot-vendor.example",
            &[Ipv4Addr::new(10, 20, 0, 80), Ipv4Addr::new(10, 20, 0, 81)],
            60,
        ),
    ];
    let client = g.host(dev);
    let resolver = g.host(cfg.gateway);
    for (name, addrs, ttl) in names {
        let mut t = span.start + g.between(0, 10 * SEC);
        while t < span.end {
            let sport = ports.next_port();
            let qtypes: &[u16] = if stack.timestamps { &[DNS_A, DNS_AAAA] } else { &[DNS_A] };
            let mut at = t;
            for &qtype in qtypes {
                let id = g.rng.gen();
                let query = Udp {
                    src: &client,
                    dst: &resolver,
                    sport,
                    dport: 53,
                    ip_id: g.rng.gen(),
                    dont_fragment: stack.dont_fragment,
                };
                g.push_udp(at, query, &dns_query(id, name, qtype))?;
                // Cache hit at the gateway, or a trip upstream.
                let work = if g.rng.gen_bool(0.7) {
                    g.between(50 * US, 300 * US)
                } else {
                    g.between(8 * MS, 40 * MS)
                };
                let reply = Udp {
                    src: &resolver,
                    dst: &client,
                    sport: 53,
                    dport: sport,
                    ip_id: g.rng.gen(),
                    dont_fragment: false,
                };
                let rt = at + client.rtt_ns.max(resolver.rtt_ns) + work;
                g.push_udp(rt, reply, &dns_response(id, name, qtype, addrs, ttl))?;
                at += g.between(20 * US, 120 * US);
            }
            t += i64::from(ttl.min(300)) * SEC + g.between(0, 5 * SEC);
        }
    }
    Ok(())
}

/// ntpd on Linux (port 123, poll 64 s) or SNTP on lwIP (ephemeral port, hourly).
fn ntp(
    g: &mut Gen<'_>,
    cfg: &SimConfig,
    dev: Ipv4Addr,
    stack: Stack,
    ports: &mut Ephemeral,
    span: Span,
) -> Result<(), SimError> {
    let linux = stack.timestamps;
    let (sport, poll) = if linux {
        (123, 64 * SEC)
    } else {
        (ports.next_port(), 3600 * SEC)
    };
    let client = g.host(dev);
    let server = g.host(cfg.ntp_server);
    let mut t = span.start + g.between(0, if linux { 64 * SEC } else { 120 * SEC });
    while t < span.end {
        let request = ntp_request(t);
        let req = Udp {
            src: &client,
            dst: &server,
            sport,
            dport: 123,
            ip_id: g.rng.gen(),
            dont_fragment: stack.dont_fragment,
        };
        g.push_udp(t, req, &request)?;
        let rtt = g.jitter(server.rtt_ns, 0.1);
        let rx = t + rtt / 2;
        let tx = rx + g.between(20 * US, 90 * US);
        let reply = Udp {
            src: &server,
            dst: &client,
            sport: 123,
            dport: sport,
            ip_id: g.rng.gen(),
            dont_fragment: true,
        };
        g.push_udp(t + rtt + (tx - rx), reply, &ntp_reply(&request, rx, tx))?;
        t += g.jitter(poll, 0.02);
    }
    Ok(())
}

/// One long MQTT session: CONNECT/CONNACK, SUBSCRIBE to commands, then telemetry PUBLISHes
/// (QoS 1, PUBACKed), PINGREQ when nothing was sent for the keep-alive, occasional commands.
fn mqtt(
    g: &mut Gen<'_>,
    cfg: &SimConfig,
    dev: Ipv4Addr,
    kind: Kind,
    ports: &mut Ephemeral,
    span: Span,
) -> Result<(), SimError> {
    let stack = if kind == Kind::Camera { LINUX } else { LWIP };
    let client = Endpoint {
        host: g.host(dev),
        port: ports.next_port(),
        stack,
    };
    let server = Endpoint {
        host: g.host(cfg.broker),
        port: 1883,
        stack: LINUX,
    };
    let start = span.start + g.between(10 * MS, 3 * SEC);
    let mut c = TcpConn::new(g, client, server, start, 20e6);
    c.connect(g)?;
    let name = device_name(dev, kind);
    // Cameras report events rarely and rely on PINGREQ; sensors stream telemetry.
    let (keepalive, period) = match kind {
        Kind::Camera => (15 * SEC, g.between(20 * SEC, 40 * SEC)),
        Kind::Sensor => (60 * SEC, g.between(2 * SEC, 10 * SEC)),
    };
    let think = |g: &mut Gen<'_>| g.between(100 * US, 2 * MS);
    let broker_work = |g: &mut Gen<'_>| g.between(200 * US, 3 * MS);
    let connect = mqtt_connect(&name, (keepalive / SEC) as u16, "device", "9f2c41d7e0b3");
    let t = think(g);
    c.send_after(g, Dir::Up, t, &connect)?;
    let t = broker_work(g);
    c.send_after(g, Dir::Down, t, &MQTT_CONNACK)?;
    let cmd_topic = format!("site/{name}/cmd");
    let t = think(g);
    c.send_after(g, Dir::Up, t, &mqtt_subscribe(1, &cmd_topic))?;
    let t = broker_work(g);
    c.send_after(g, Dir::Down, t, &mqtt_suback(1))?;

    let topic = format!("site/{name}/telemetry");
    let mut pid: u16 = 2;
    let mut broker_pid: u16 = g.rng.gen_range(1..1000);
    let mut last_sent = c.now();
    let mut next_pub = c.now() + g.jitter(period, 0.5);
    let mut next_cmd = c.now() + g.exp_gap(1.0 / 180.0);
    let (mut temp, mut hum) = (g.rng.gen_range(18.0..24.0f64), g.rng.gen_range(30.0..55.0f64));
    loop {
        let next_ping = last_sent + keepalive;
        let t = next_pub.min(next_ping).min(next_cmd);
        if t >= span.end {
            break;
        }
        if t == next_pub {
            temp += g.rng.gen_range(-0.2..0.2);
            hum += g.rng.gen_range(-0.5..0.5);
            let body = match kind {
                Kind::Sensor => format!(
                    "{{\"temp\":{temp:.2},\"hum\":{hum:.1},\"bat\":{},\"rssi\":{},\"ts\":{}}}",
                    g.rng.gen_range(3_700..4_100),
                    g.rng.gen_range(-78..-45),
                    t / SEC
                ),
                Kind::Camera => format!(
                    "{{\"event\":\"motion\",\"zone\":{},\"score\":{:.2},\"ts\":{}}}",
                    g.rng.gen_range(1..5),
                    g.rng.gen_range(0.5..1.0f64),
                    t / SEC
                ),
            };
            c.send_at(g, Dir::Up, t, &mqtt_publish_qos1(&topic, pid, body.as_bytes()))?;
            let w = broker_work(g);
            c.send_after(g, Dir::Down, w, &mqtt_puback(pid))?;
            pid = pid % u16::MAX + 1;
            last_sent = t;
            next_pub = t + g.jitter(period, 0.1);
        } else if t == next_ping {
            c.send_at(g, Dir::Up, t, &MQTT_PINGREQ)?;
            let w = broker_work(g);
            c.send_after(g, Dir::Down, w, &MQTT_PINGRESP)?;
            last_sent = t;
        } else {
            let cmd = format!("{{\"cmd\":\"set_interval\",\"value\":{}}}", g.rng.gen_range(2..30));
            c.send_at(
                g,
                Dir::Down,
                t,
                &mqtt_publish_qos1(&cmd_topic, broker_pid, cmd.as_bytes()),
            )?;
            let w = think(g);
            c.send_after(g, Dir::Up, w, &mqtt_puback(broker_pid))?;
            broker_pid = broker_pid % u16::MAX + 1;
            last_sent = c.now();
            next_cmd = t + g.exp_gap(1.0 / 180.0);
        }
    }
    c.flush(g.out)
}

/// The hub pulls `/snapshot.jpg` every 5-15 s on a new connection; the camera answers with
/// a 20-80 KB JPEG and closes (Connection: close).
fn snapshots(
    g: &mut Gen<'_>,
    hub: Ipv4Addr,
    camera: Ipv4Addr,
    hub_ports: &mut Ephemeral,
    span: Span,
) -> Result<(), SimError> {
    let period = g.between(5 * SEC, 15 * SEC);
    let mut t = span.start + g.between(0, period);
    let host = camera.to_string();
    while t < span.end {
        let client = Endpoint {
            host: g.host(hub),
            port: hub_ports.next_port(),
            stack: LINUX,
        };
        let server = Endpoint {
            host: g.host(camera),
            port: 80,
            stack: LINUX,
        };
        let mut c = TcpConn::new(g, client, server, t, 40e6);
        c.connect(g)?;
        let request = http_request(
            "GET",
            "/snapshot.jpg?channel=1",
            &host,
            &[
                ("User-Agent", "gatewatch-hub/0.1"),
                ("Accept", "image/jpeg"),
                ("Authorization", "Basic aHViOmNhbS1wdWxsLTI3"),
                ("Connection", "close"),
            ],
            &[],
        );
        let think = g.between(50 * US, 300 * US);
        c.send_after(g, Dir::Up, think, &request)?;
        let size = g.between(20_000, 80_000) as usize;
        let image = jpeg(&mut g.rng, size);
        let encode = g.between(5 * MS, 40 * MS);
        let date = c.react(g, Dir::Down, encode);
        let response = http_response(
            "200 OK",
            date,
            &[
                ("Server", "lighttpd/1.4.59"),
                ("Content-Type", "image/jpeg"),
                ("Cache-Control", "no-cache"),
                ("Connection", "close"),
            ],
            &image,
        );
        c.send_at(g, Dir::Down, date, &response)?;
        let linger = g.between(100 * US, 500 * US);
        c.close(g, Dir::Down, linger)?;
        t += g.jitter(period, 0.2);
    }
    Ok(())
}

/// The hub polls a sensor's `/sensors/env` with confirmable GETs from one socket.
fn coap(g: &mut Gen<'_>, hub: Ipv4Addr, sensor: Ipv4Addr, hub_port: u16, span: Span) -> Result<(), SimError> {
    let client = g.host(hub);
    let server = g.host(sensor);
    let period = g.between(5 * SEC, 15 * SEC);
    let mut message_id: u16 = g.rng.gen();
    let mut t = span.start + g.between(0, period);
    while t < span.end {
        let token: [u8; 4] = g.rng.gen();
        let get = Udp {
            src: &client,
            dst: &server,
            sport: hub_port,
            dport: 5683,
            ip_id: g.rng.gen(),
            dont_fragment: true,
        };
        g.push_udp(t, get, &coap_get(message_id, &token, &["sensors", "env"]))?;
        let json = format!(
            "{{\"t\":{:.1},\"h\":{:.0},\"p\":{:.1},\"co2\":{}}}",
            g.rng.gen_range(18.0..26.0f64),
            g.rng.gen_range(30.0..60.0f64),
            g.rng.gen_range(990.0..1030.0f64),
            g.rng.gen_range(400..900)
        );
        let reply = Udp {
            src: &server,
            dst: &client,
            sport: 5683,
            dport: hub_port,
            ip_id: g.rng.gen(),
            dont_fragment: false,
        };
        let at = t + g.jitter(server.rtt_ns, 0.1) + g.between(2 * MS, 20 * MS);
        g.push_udp(at, reply, &coap_content(message_id, &token, json.as_bytes()))?;
        message_id = message_id.wrapping_add(1);
        t += g.jitter(period, 0.1);
    }
    Ok(())
}
