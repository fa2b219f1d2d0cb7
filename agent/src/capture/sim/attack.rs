//! Attack generators. Rates scale linearly with intensity between the `lerp` bounds below;
//! every TCP conversation except raw SYN probes goes through [`TcpConn`].

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use etherparse::{TcpHeader, TcpOptionElement};
use rand::seq::SliceRandom;
use rand::Rng;

use super::net::{
    build_err, icmp_port_unreachable, lerp, tcp_frame, udp_frame, Ephemeral, Gen, Host, Span, Udp, MS, SEC, US,
};
use super::payload::{
    html_page, http_request, http_response, pick, ssh_ecdh_init, ssh_ecdh_reply_newkeys, ssh_encrypted, ssh_kexinit,
    ssh_newkeys, tls_record, url_encode, BROWSER_AGENTS, PASSWORDS, SQLI, SSH_CLIENT_BANNER, SSH_SERVER_BANNER,
    TLS_APPLICATION, TLS_CHANGE_CIPHER, TLS_HANDSHAKE, USERS, XSS,
};
use super::tcp::{Dir, Endpoint, TcpConn, LINUX};
use super::{AttackPhase, AttackType, FloodVariant, SimConfig, SimError};

/// TCP ports the target (an embedded Linux camera) listens on.
pub(crate) const OPEN_PORTS: [u16; 7] = [21, 22, 23, 80, 443, 554, 8080];

/// DDoS sources: the attacker and bots beyond the router.
fn bot_count(i: f64) -> usize {
    lerp(20.0, 250.0, i).round() as usize
}
fn syn_rate(i: f64) -> f64 {
    lerp(2_000.0, 30_000.0, i)
}
/// Share of flood SYNs the target still answers (backlog full, more so under a heavier flood).
fn syn_answered(i: f64) -> f64 {
    lerp(0.5, 0.1, i)
}
fn udp_rate(i: f64) -> f64 {
    lerp(1_000.0, 12_000.0, i)
}
fn http_conn_rate(i: f64) -> f64 {
    lerp(20.0, 300.0, i)
}
fn slow_connections(i: f64) -> f64 {
    lerp(50.0, 500.0, i)
}
fn scan_rate(i: f64) -> f64 {
    lerp(300.0, 4_000.0, i)
}
fn brute_tasks(i: f64) -> usize {
    lerp(2.0, 16.0, i).round() as usize
}
fn beacon_interval_s(i: f64) -> f64 {
    lerp(30.0, 3.0, i)
}
fn exfil_bps(i: f64) -> f64 {
    lerp(1e6, 10e6, i)
}
fn web_rate(i: f64) -> f64 {
    lerp(1.0, 40.0, i)
}

/// Hybrid's stages as fractions of the attack window.
const HYBRID: [(AttackType, f64, f64); 3] = [
    (AttackType::PortScan, 0.0, 0.25),
    (AttackType::BruteForceSsh, 0.25, 0.7),
    (AttackType::DataExfiltration, 0.7, 1.0),
];

/// The attack runs from a short benign lead-in (a tenth, at most 5 s) to the capture's end.
pub(crate) fn span(whole: Span) -> Span {
    let lead = ((whole.end - whole.start) / 10).min(5 * SEC);
    Span {
        start: whole.start + lead,
        end: whole.end,
    }
}

/// Expected frames of an attack over `span`, for the up-front size check.
pub(crate) fn estimate(kind: AttackType, i: f64, span: Span) -> u64 {
    let s = span.secs();
    let n = match kind {
        AttackType::DdosFlood(FloodVariant::Syn) => syn_rate(i) * s * (1.0 + 2.0 * syn_answered(i)),
        AttackType::DdosFlood(FloodVariant::Udp) => udp_rate(i) * s + bot_count(i) as f64 * (s + 6.0),
        AttackType::DdosFlood(FloodVariant::Http) => http_conn_rate(i) * s * 40.0,
        AttackType::SlowRate => slow_connections(i) * (6.0 + s / 4.0),
        AttackType::PortScan => scan_rate(i) * s * 2.05,
        AttackType::BruteForceSsh => brute_tasks(i) as f64 * s * 20.0,
        AttackType::BruteForceFtp => brute_tasks(i) as f64 * s * 25.0,
        AttackType::BotnetBeacon => (s / beacon_interval_s(i) + 2.0) * 15.0,
        AttackType::DataExfiltration => exfil_bps(i) / 8.0 * s / 1448.0 * 1.6,
        AttackType::WebXss | AttackType::WebSqli => web_rate(i) * s * 12.0,
        AttackType::Hybrid => {
            return HYBRID
                .iter()
                .map(|(kind, from, to)| estimate(*kind, i, span.part(*from, *to)))
                .sum()
        }
    };
    n.ceil() as u64 + 100
}

pub(crate) fn generate(
    g: &mut Gen<'_>,
    cfg: &SimConfig,
    kind: AttackType,
    span: Span,
) -> Result<Vec<AttackPhase>, SimError> {
    if kind == AttackType::Hybrid {
        let mut phases = Vec::with_capacity(HYBRID.len());
        for (stage, from, to) in HYBRID {
            let part = span.part(from, to);
            phases.push(run(g, cfg, stage, part)?);
        }
        Ok(phases)
    } else {
        Ok(vec![run(g, cfg, kind, span)?])
    }
}

fn run(g: &mut Gen<'_>, cfg: &SimConfig, kind: AttackType, span: Span) -> Result<AttackPhase, SimError> {
    let i = cfg.intensity;
    let mut remotes = vec![match kind {
        AttackType::BotnetBeacon | AttackType::DataExfiltration => cfg.c2,
        _ => cfg.attacker,
    }];
    match kind {
        AttackType::DdosFlood(variant) => {
            remotes = botnet(g, cfg, bot_count(i));
            let bots: Vec<Host> = remotes.iter().map(|ip| g.host(*ip)).collect();
            match variant {
                FloodVariant::Syn => syn_flood(g, cfg, &bots, i, span)?,
                FloodVariant::Udp => udp_flood(g, cfg, &bots, i, span)?,
                FloodVariant::Http => http_flood(g, cfg, &bots, i, span)?,
            }
        }
        AttackType::SlowRate => slowloris(g, cfg, i, span)?,
        AttackType::PortScan => port_scan(g, cfg, i, span)?,
        AttackType::BruteForceSsh => brute_force_ssh(g, cfg, i, span)?,
        AttackType::BruteForceFtp => brute_force_ftp(g, cfg, i, span)?,
        AttackType::BotnetBeacon => beacon(g, cfg, i, span)?,
        AttackType::DataExfiltration => exfiltration(g, cfg, i, span)?,
        AttackType::WebXss | AttackType::WebSqli => web_attack(g, cfg, kind == AttackType::WebSqli, i, span)?,
        // Split into its stages by `generate`.
        AttackType::Hybrid => {}
    }
    Ok(AttackPhase {
        attack: kind,
        attackers: remotes.into_iter().map(IpAddr::V4).collect(),
        window_ns: (span.start, span.end),
    })
}

/// The attacker plus `n - 1` bots at random addresses of 10.128.0.0/9, so that a flood's
/// 5-tuples rarely repeat (one source has only 64 K ports).
fn botnet(g: &mut Gen<'_>, cfg: &SimConfig, n: usize) -> Vec<Ipv4Addr> {
    let taken = [cfg.target, cfg.gateway, cfg.hub, cfg.broker, cfg.ntp_server, cfg.c2];
    let mut bots = vec![cfg.attacker];
    while bots.len() < n {
        let ip = Ipv4Addr::from(0x0A80_0000 | (g.rng.gen::<u32>() & 0x007F_FFFF));
        let on_lan = ip.octets()[..3] == cfg.gateway.octets()[..3];
        if !on_lan && !matches!(ip.octets()[3], 0 | 255) && !taken.contains(&ip) && !bots.contains(&ip) {
            bots.push(ip);
        }
    }
    bots
}

fn endpoint(g: &Gen<'_>, ip: Ipv4Addr, port: u16) -> Endpoint {
    Endpoint {
        host: g.host(ip),
        port,
        stack: LINUX,
    }
}

/// A bare TCP segment outside any conversation (crafted probes and the replies to them).
struct Raw {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    rst: bool,
    window: u16,
    mss: Option<u16>,
}

fn raw_header(r: &Raw) -> Result<TcpHeader, SimError> {
    let mut h = TcpHeader::new(r.sport, r.dport, r.seq, r.window);
    h.syn = r.syn;
    h.rst = r.rst;
    if let Some(ack) = r.ack {
        h.ack = true;
        h.acknowledgment_number = ack;
    }
    if let Some(mss) = r.mss {
        h.set_options(&[TcpOptionElement::MaximumSegmentSize(mss)])
            .map_err(build_err)?;
    }
    Ok(h)
}

/// hping3-style SYN flood on the web port from every bot: no options, window 64, random
/// source ports. The target answers some SYNs; the bot's kernel resets those SYN-ACKs.
fn syn_flood(g: &mut Gen<'_>, cfg: &SimConfig, bots: &[Host], i: f64, span: Span) -> Result<(), SimError> {
    let target = g.host(cfg.target);
    let (rate, answered) = (syn_rate(i), syn_answered(i));
    let mut t = span.start;
    loop {
        t += g.exp_gap(rate);
        if t >= span.end {
            return Ok(());
        }
        let Some(attacker) = bots.choose(&mut g.rng) else {
            return Ok(());
        };
        let sport = g.rng.gen_range(1024..=65_535);
        let seq: u32 = g.rng.gen();
        let syn = Raw {
            sport,
            dport: 80,
            seq,
            ack: None,
            syn: true,
            rst: false,
            window: 64,
            mss: None,
        };
        let frame = tcp_frame(attacker, &target, g.rng.gen(), false, raw_header(&syn)?, &[])?;
        g.out.push(t, frame)?;
        if g.rng.gen_bool(answered) {
            let synack = Raw {
                sport: 80,
                dport: sport,
                seq: g.rng.gen(),
                ack: Some(seq.wrapping_add(1)),
                syn: true,
                rst: false,
                window: 64_240,
                mss: Some(1460),
            };
            let ta = t + g.jitter(target.rtt_ns, 0.3) + g.between(20 * US, 400 * US);
            g.out
                .push(ta, tcp_frame(&target, attacker, 0, true, raw_header(&synack)?, &[])?)?;
            let rst = Raw {
                sport,
                dport: 80,
                seq: seq.wrapping_add(1),
                ack: None,
                syn: false,
                rst: true,
                window: 0,
                mss: None,
            };
            let tr = ta + g.jitter(attacker.rtt_ns, 0.3);
            g.out
                .push(tr, tcp_frame(attacker, &target, 0, true, raw_header(&rst)?, &[])?)?;
        }
    }
}

/// UDP datagrams of 16-512 random bytes from the bots to random ports; the target's ICMP
/// port-unreachable replies are rate-limited as Linux does per destination (1/s, burst 6).
fn udp_flood(g: &mut Gen<'_>, cfg: &SimConfig, bots: &[Host], i: f64, span: Span) -> Result<(), SimError> {
    const BURST: f64 = 6.0;
    let target = g.host(cfg.target);
    let rate = udp_rate(i);
    let mut buckets: HashMap<Ipv4Addr, (f64, i64)> = HashMap::new();
    let mut icmp_id: u16 = g.rng.gen();
    let mut t = span.start;
    loop {
        t += g.exp_gap(rate);
        if t >= span.end {
            return Ok(());
        }
        let Some(attacker) = bots.choose(&mut g.rng) else {
            return Ok(());
        };
        let len = g.rng.gen_range(16..=512);
        let payload = g.bytes(len);
        let u = Udp {
            src: attacker,
            dst: &target,
            sport: g.rng.gen_range(1024..=65_535),
            dport: g.rng.gen_range(1..=65_535),
            ip_id: g.rng.gen(),
            dont_fragment: false,
        };
        let frame = udp_frame(u, &payload)?;
        let (tokens, refilled) = buckets.entry(attacker.ip).or_insert((BURST, span.start));
        *tokens = (*tokens + (t - *refilled) as f64 / SEC as f64).min(BURST);
        *refilled = t;
        let reply = if *tokens >= 1.0 {
            *tokens -= 1.0;
            icmp_id = icmp_id.wrapping_add(1);
            Some(icmp_port_unreachable(&target, attacker, icmp_id, &frame)?)
        } else {
            None
        };
        g.out.push(t, frame)?;
        if let Some(reply) = reply {
            let ta = t + g.jitter(target.rtt_ns, 0.3) + g.between(10 * US, 100 * US);
            g.out.push(ta, reply)?;
        }
    }
}

fn flood_request(g: &mut Gen<'_>, host: &str) -> Vec<u8> {
    let target = format!(
        "/?{}={}",
        pick(&mut g.rng, &["id", "q", "s", "page", "r"]),
        g.rng.gen::<u32>()
    );
    let agent = pick(&mut g.rng, &BROWSER_AGENTS);
    http_request(
        "GET",
        &target,
        host,
        &[
            ("User-Agent", agent),
            ("Accept", "*/*"),
            ("Accept-Encoding", "gzip, deflate"),
            ("Cache-Control", "no-cache"),
            ("Connection", "keep-alive"),
        ],
        &[],
    )
}

/// Full connections from the bots, each firing 1-8 GETs back to back, closed with FIN (or
/// RST by 30 %). The overloaded server answers slower, and with 503 now and then.
fn http_flood(g: &mut Gen<'_>, cfg: &SimConfig, bots: &[Host], i: f64, span: Span) -> Result<(), SimError> {
    let host = cfg.target.to_string();
    let rate = http_conn_rate(i);
    let mut t = span.start;
    loop {
        t += g.exp_gap(rate);
        if t >= span.end {
            return Ok(());
        }
        let Some(&host_of_bot) = bots.choose(&mut g.rng) else {
            return Ok(());
        };
        let client = Endpoint {
            host: host_of_bot,
            port: g.rng.gen_range(32_768..=60_999),
            stack: LINUX,
        };
        let server = endpoint(g, cfg.target, 80);
        let mut c = TcpConn::new(g, client, server, t, 50e6);
        c.connect(g)?;
        for _ in 0..g.rng.gen_range(1..=8) {
            let request = flood_request(g, &host);
            let think = g.between(100 * US, 3 * MS);
            c.send_after(g, Dir::Up, think, &request)?;
            let work = g.between(lerp(2.0, 10.0, i) as i64 * MS, lerp(10.0, 60.0, i) as i64 * MS);
            let at = c.react(g, Dir::Down, work);
            let response = if g.rng.gen_bool(0.3 * i) {
                http_response(
                    "503 Service Unavailable",
                    at,
                    &[("Server", "lighttpd/1.4.59"), ("Content-Type", "text/html")],
                    b"<html><body><h1>503 Service Unavailable</h1></body></html>\n",
                )
            } else {
                let len = g.between(1_500, 4_500) as usize;
                http_response(
                    "200 OK",
                    at,
                    &[
                        ("Server", "lighttpd/1.4.59"),
                        ("Content-Type", "text/html; charset=utf-8"),
                    ],
                    &html_page(len, "IP Camera", ""),
                )
            };
            c.send_at(g, Dir::Down, at, &response)?;
        }
        let think = g.between(100 * US, 2 * MS);
        if g.rng.gen_bool(0.7) {
            c.close(g, Dir::Up, think)?;
        } else {
            c.abort(g, Dir::Up, think)?;
        }
    }
}

/// Slowloris: opens its connections quickly, sends an unfinished request, then one more
/// header line per connection every ~10 s. Some connections hit the server's header
/// timeout and are closed by it; the tool reopens them on its next pass.
fn slowloris(g: &mut Gen<'_>, cfg: &SimConfig, i: f64, span: Span) -> Result<(), SimError> {
    let host = cfg.target.to_string();
    let agent = pick(&mut g.rng, &BROWSER_AGENTS);
    let mut ports = Ephemeral::new(&mut g.rng);
    // One pass over all sockets per cycle, as the tool's main loop does.
    let mut passes = Vec::new();
    let mut p = span.start;
    while p < span.end {
        p += g.between(9 * SEC, 11 * SEC);
        passes.push(p);
    }
    let mut opened = span.start;
    for _ in 0..slow_connections(i) as usize {
        opened += g.exp_gap(150.0);
        let mut start = opened;
        while start < span.end {
            let client = endpoint(g, cfg.attacker, ports.next_port());
            let server = endpoint(g, cfg.target, 80);
            let mut c = TcpConn::new(g, client, server, start, 20e6);
            c.connect(g)?;
            let partial = format!(
                "GET /?{} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent}\r\nAccept-language: en-US,en,q=0.5\r\n",
                g.rng.gen_range(0..2000)
            );
            let think = g.between(50 * US, 500 * US);
            c.send_after(g, Dir::Up, think, partial.as_bytes())?;
            let timeout = g.rng.gen_bool(0.3).then(|| c.now() + g.between(30 * SEC, 60 * SEC));
            start = span.end;
            let sent = c.now();
            for &pass in passes.iter().filter(|&&pass| pass > sent) {
                if let Some(deadline) = timeout.filter(|&d| d <= pass) {
                    // The server gives up on the headers; the tool notices on its next pass.
                    let wait = (deadline - c.now()).max(0);
                    c.close(g, Dir::Down, wait)?;
                    start = pass + g.between(0, 200 * MS);
                    break;
                }
                let line = format!("X-a: {}\r\n", g.rng.gen_range(1..5000));
                let at = pass + g.between(0, 200 * MS);
                c.send_at(g, Dir::Up, at, line.as_bytes())?;
            }
            c.flush(g.out)?;
        }
    }
    Ok(())
}

/// nmap -sS: one SYN (window 1024, MSS only) per port in random order from one source
/// port per sweep. Closed ports answer RST/ACK; open ones SYN-ACK, which the scanner's
/// kernel resets. Sweeps repeat over all 65535 ports until the window ends.
fn port_scan(g: &mut Gen<'_>, cfg: &SimConfig, i: f64, span: Span) -> Result<(), SimError> {
    let scanner = g.host(cfg.attacker);
    let target = g.host(cfg.target);
    let gap = (SEC as f64 / scan_rate(i)) as i64;
    let mut ports: Vec<u16> = (1..=65_535).collect();
    let mut t = span.start;
    loop {
        ports.shuffle(&mut g.rng);
        let sport = g.rng.gen_range(33_000..=65_000);
        for &port in &ports {
            t += g.jitter(gap, 0.5).max(1);
            if t >= span.end {
                return Ok(());
            }
            let seq: u32 = g.rng.gen();
            let probe = Raw {
                sport,
                dport: port,
                seq,
                ack: None,
                syn: true,
                rst: false,
                window: 1024,
                mss: Some(1460),
            };
            g.out.push(
                t,
                tcp_frame(&scanner, &target, g.rng.gen(), false, raw_header(&probe)?, &[])?,
            )?;
            let ta = t + g.jitter(target.rtt_ns, 0.3) + g.between(10 * US, 80 * US);
            let open = OPEN_PORTS.contains(&port);
            let reply = Raw {
                sport: port,
                dport: sport,
                seq: if open { g.rng.gen() } else { 0 },
                ack: Some(seq.wrapping_add(1)),
                syn: open,
                rst: !open,
                window: if open { 64_240 } else { 0 },
                mss: open.then_some(1460),
            };
            g.out
                .push(ta, tcp_frame(&target, &scanner, 0, true, raw_header(&reply)?, &[])?)?;
            if open {
                let rst = Raw {
                    sport,
                    dport: port,
                    seq: seq.wrapping_add(1),
                    ack: None,
                    syn: false,
                    rst: true,
                    window: 0,
                    mss: None,
                };
                let tr = ta + g.jitter(scanner.rtt_ns, 0.3);
                g.out
                    .push(tr, tcp_frame(&scanner, &target, 0, true, raw_header(&rst)?, &[])?)?;
            }
        }
    }
}

/// Hydra-like SSH guessing: parallel tasks, each looping over connections with version
/// exchange, curve25519 key exchange, then 1-4 password attempts, each refused after the
/// PAM failure delay, and a disconnect.
fn brute_force_ssh(g: &mut Gen<'_>, cfg: &SimConfig, i: f64, span: Span) -> Result<(), SimError> {
    let mut ports = Ephemeral::new(&mut g.rng);
    for _ in 0..brute_tasks(i) {
        let mut t = span.start + g.between(0, 500 * MS);
        while t < span.end {
            let client = endpoint(g, cfg.attacker, ports.next_port());
            let server = endpoint(g, cfg.target, 22);
            let mut c = TcpConn::new(g, client, server, t, 50e6);
            c.connect(g)?;
            let d = g.between(2 * MS, 8 * MS);
            c.send_after(g, Dir::Down, d, SSH_SERVER_BANNER)?;
            let d = g.between(100 * US, MS);
            c.send_after(g, Dir::Up, d, SSH_CLIENT_BANNER)?;
            let kex = ssh_kexinit(&mut g.rng, false);
            let d = g.between(50 * US, 300 * US);
            c.send_after(g, Dir::Up, d, &kex)?;
            let kex = ssh_kexinit(&mut g.rng, true);
            let d = g.between(200 * US, MS);
            c.send_after(g, Dir::Down, d, &kex)?;
            let init = ssh_ecdh_init(&mut g.rng);
            let d = g.between(300 * US, 2 * MS);
            c.send_after(g, Dir::Up, d, &init)?;
            let reply = ssh_ecdh_reply_newkeys(&mut g.rng);
            let d = g.between(3 * MS, 15 * MS);
            c.send_after(g, Dir::Down, d, &reply)?;
            let keys = ssh_newkeys(&mut g.rng);
            let d = g.between(MS, 3 * MS);
            c.send_after(g, Dir::Up, d, &keys)?;
            // ssh-userauth service request and accept, then the "none" method probe.
            for (from, len, think) in [
                (Dir::Up, 17, 100 * US),
                (Dir::Down, 17, 300 * US),
                (Dir::Up, 45, 100 * US),
                (Dir::Down, 28, 300 * US),
            ] {
                let packet = ssh_encrypted(&mut g.rng, len);
                let d = g.jitter(think, 0.5);
                c.send_after(g, from, d, &packet)?;
            }
            for _ in 0..g.rng.gen_range(1..=4) {
                let user = pick(&mut g.rng, &USERS);
                let pass = pick(&mut g.rng, &PASSWORDS);
                let request = ssh_encrypted(&mut g.rng, 43 + user.len() + pass.len());
                let d = g.between(100 * US, MS);
                c.send_after(g, Dir::Up, d, &request)?;
                let failure = ssh_encrypted(&mut g.rng, 28);
                let d = g.between(1_800 * MS, 2_400 * MS);
                c.send_after(g, Dir::Down, d, &failure)?;
            }
            let disconnect = ssh_encrypted(&mut g.rng, 30);
            let d = g.between(100 * US, MS);
            c.send_after(g, Dir::Up, d, &disconnect)?;
            let d = g.between(50 * US, 300 * US);
            c.close(g, Dir::Up, d)?;
            t = c.now() + g.between(50 * MS, 400 * MS);
        }
    }
    Ok(())
}

/// Hydra-like FTP guessing against vsftpd: banner, USER/PASS, "530 Login incorrect." after
/// the 1 s failure delay; after three failures the server hangs up, otherwise QUIT.
fn brute_force_ftp(g: &mut Gen<'_>, cfg: &SimConfig, i: f64, span: Span) -> Result<(), SimError> {
    const MAX_FAILS: usize = 3;
    let mut ports = Ephemeral::new(&mut g.rng);
    for _ in 0..brute_tasks(i) {
        let mut t = span.start + g.between(0, 500 * MS);
        while t < span.end {
            let client = endpoint(g, cfg.attacker, ports.next_port());
            let server = endpoint(g, cfg.target, 21);
            let mut c = TcpConn::new(g, client, server, t, 50e6);
            c.connect(g)?;
            let d = g.between(MS, 5 * MS);
            c.send_after(g, Dir::Down, d, b"220 (vsFTPd 3.0.3)\r\n")?;
            let attempts = g.rng.gen_range(1..=MAX_FAILS);
            for _ in 0..attempts {
                let user = format!("USER {}\r\n", pick(&mut g.rng, &USERS));
                let d = g.between(200 * US, 2 * MS);
                c.send_after(g, Dir::Up, d, user.as_bytes())?;
                let d = g.between(200 * US, MS);
                c.send_after(g, Dir::Down, d, b"331 Please specify the password.\r\n")?;
                let pass = format!("PASS {}\r\n", pick(&mut g.rng, &PASSWORDS));
                let d = g.between(200 * US, 2 * MS);
                c.send_after(g, Dir::Up, d, pass.as_bytes())?;
                let d = g.between(950 * MS, 1_100 * MS);
                c.send_after(g, Dir::Down, d, b"530 Login incorrect.\r\n")?;
            }
            if attempts < MAX_FAILS {
                let d = g.between(200 * US, 2 * MS);
                c.send_after(g, Dir::Up, d, b"QUIT\r\n")?;
                let d = g.between(100 * US, 500 * US);
                c.send_after(g, Dir::Down, d, b"221 Goodbye.\r\n")?;
            }
            let d = g.between(50 * US, 300 * US);
            c.close(g, Dir::Down, d)?;
            t = c.now() + g.between(20 * MS, 300 * MS);
        }
    }
    Ok(())
}

/// The infected target POSTs a small check-in to its C2 every interval ± 20 %, on a new
/// connection each time; the C2 mostly says sleep.
fn beacon(g: &mut Gen<'_>, cfg: &SimConfig, i: f64, span: Span) -> Result<(), SimError> {
    let interval = (beacon_interval_s(i) * SEC as f64) as i64;
    let bot_id: u64 = g.rng.gen();
    let mut ports = Ephemeral::new(&mut g.rng);
    let mut t = span.start + g.between(0, interval);
    while t < span.end {
        let client = endpoint(g, cfg.target, ports.next_port());
        let server = endpoint(g, cfg.c2, 8080);
        let mut c = TcpConn::new(g, client, server, t, 5e6);
        c.connect(g)?;
        let body = format!(
            "id={bot_id:016x}&v=2.1.4&arch=armv7l&up={}&st=idle",
            (t - span.start) / SEC + 86_400
        );
        let request = http_request(
            "POST",
            "/api/v2/ping",
            "cdn-sync.update-check.example",
            &[
                ("User-Agent", "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1)"),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Connection", "close"),
            ],
            body.as_bytes(),
        );
        let d = g.between(100 * US, MS);
        c.send_after(g, Dir::Up, d, &request)?;
        let task: &[u8] = if g.rng.gen_bool(0.9) {
            b"{\"cmd\":\"sleep\"}"
        } else {
            b"{\"cmd\":\"update\",\"url\":\"http://10.99.0.66:8080/b/armv7\"}"
        };
        let d = g.between(2 * MS, 20 * MS);
        let at = c.react(g, Dir::Down, d);
        let response = http_response(
            "200 OK",
            at,
            &[
                ("Server", "nginx"),
                ("Content-Type", "application/json"),
                ("Connection", "close"),
            ],
            task,
        );
        c.send_at(g, Dir::Down, at, &response)?;
        let d = g.between(100 * US, MS);
        c.close(g, Dir::Down, d)?;
        t += g.jitter(interval, 0.2);
    }
    Ok(())
}

/// The infected target uploads 4-16 MB per TLS session to the external host's port 443
/// at the intensity's rate, with short pauses between sessions.
fn exfiltration(g: &mut Gen<'_>, cfg: &SimConfig, i: f64, span: Span) -> Result<(), SimError> {
    const RECORD: usize = 16_384;
    let bps = exfil_bps(i);
    let mut ports = Ephemeral::new(&mut g.rng);
    let mut t = span.start + g.between(0, 2 * SEC);
    while t < span.end {
        let client = endpoint(g, cfg.target, ports.next_port());
        let server = endpoint(g, cfg.c2, 443);
        let mut c = TcpConn::new(g, client, server, t, bps);
        c.connect(g)?;
        let hello = tls_record(&mut g.rng, TLS_HANDSHAKE, 512);
        let d = g.between(100 * US, MS);
        c.send_after(g, Dir::Up, d, &hello)?;
        let mut flight = tls_record(&mut g.rng, TLS_HANDSHAKE, 122);
        flight.extend(tls_record(&mut g.rng, TLS_CHANGE_CIPHER, 1));
        let cert_len = g.between(2_500, 4_000) as usize;
        flight.extend(tls_record(&mut g.rng, TLS_APPLICATION, cert_len));
        let d = g.between(2 * MS, 10 * MS);
        c.send_after(g, Dir::Down, d, &flight)?;
        let mut finished = tls_record(&mut g.rng, TLS_CHANGE_CIPHER, 1);
        finished.extend(tls_record(&mut g.rng, TLS_APPLICATION, 74));
        let d = g.between(MS, 5 * MS);
        c.send_after(g, Dir::Up, d, &finished)?;
        // No more than the rest of the capture can show.
        let left = ((span.end - c.now()).max(0) as f64 / SEC as f64 * bps / 8.0) as i64 + 65_536;
        let total = g.between(4_000_000, 16_000_000).min(left) as usize;
        let mut upload = Vec::with_capacity(total + RECORD);
        while upload.len() < total {
            upload.extend(tls_record(
                &mut g.rng,
                TLS_APPLICATION,
                RECORD.min(total - upload.len()) + 17,
            ));
        }
        let d = g.between(200 * US, 2 * MS);
        c.send_after(g, Dir::Up, d, &upload)?;
        let len = g.between(100, 300) as usize;
        let ack = tls_record(&mut g.rng, TLS_APPLICATION, len);
        let d = g.between(5 * MS, 30 * MS);
        c.send_after(g, Dir::Down, d, &ack)?;
        let d = g.between(MS, 5 * MS);
        c.close(g, Dir::Up, d)?;
        t = c.now() + g.between(SEC, 5 * SEC);
    }
    Ok(())
}

/// One injected request and the server's answer to it.
fn web_exchange(g: &mut Gen<'_>, sqli: bool, host: &str) -> (Vec<u8>, &'static str, Vec<u8>, i64) {
    let keep = [("Connection", "keep-alive"), ("Accept", "text/html,*/*;q=0.8")];
    let sqlmap = "sqlmap/1.7.2#stable (https://sqlmap.org)";
    if sqli {
        let probe = pick(&mut g.rng, &SQLI);
        let enc = url_encode(probe);
        let request = match g.rng.gen_range(0..3) {
            0 => http_request(
                "GET",
                &format!("/login.cgi?user={enc}&pass=x"),
                host,
                &[("User-Agent", sqlmap), keep[0], keep[1]],
                &[],
            ),
            1 => http_request(
                "GET",
                &format!("/view.cgi?id={enc}"),
                host,
                &[("User-Agent", sqlmap), keep[0], keep[1]],
                &[],
            ),
            _ => http_request(
                "POST",
                "/login.cgi",
                host,
                &[
                    ("User-Agent", sqlmap),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    keep[0],
                    keep[1],
                ],
                format!("username={enc}&password=x").as_bytes(),
            ),
        };
        // Time-based probes hold the server for their sleep.
        let delay = if probe.contains("SLEEP") && g.rng.gen_bool(0.5) {
            5 * SEC
        } else {
            0
        };
        let (status, body) = match g.rng.gen_range(0..10) {
            0..=5 => ("200 OK", html_page(g.between(1_500, 3_500) as usize, "Login", "")),
            6..=8 => (
                "500 Internal Server Error",
                b"<html><body><h1>500</h1><p>You have an error in your SQL syntax; check the manual that corresponds \
                  to your MariaDB server version for the right syntax to use near ''' at line 1</p></body></html>\n"
                    .to_vec(),
            ),
            _ => ("302 Found", Vec::new()),
        };
        (request, status, body, delay)
    } else {
        let probe = pick(&mut g.rng, &XSS);
        let enc = url_encode(probe);
        let agent = pick(&mut g.rng, &BROWSER_AGENTS);
        let request = if g.rng.gen_bool(0.6) {
            http_request(
                "GET",
                &format!("/search.cgi?q={enc}"),
                host,
                &[("User-Agent", agent), keep[0], keep[1]],
                &[],
            )
        } else {
            http_request(
                "POST",
                "/cgi-bin/guestbook.cgi",
                host,
                &[
                    ("User-Agent", agent),
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    keep[0],
                    keep[1],
                ],
                format!("name=guest&comment={enc}").as_bytes(),
            )
        };
        let body = html_page(g.between(1_500, 4_000) as usize, "Search", probe);
        (request, "200 OK", body, 0)
    }
}

/// XSS or SQL-injection requests to the target's web UI from 1-4 parallel workers over
/// keep-alive connections of 1-30 requests each, at the intensity's request rate.
fn web_attack(g: &mut Gen<'_>, cfg: &SimConfig, sqli: bool, i: f64, span: Span) -> Result<(), SimError> {
    let host = cfg.target.to_string();
    let workers = lerp(1.0, 4.0, i).round() as usize;
    let rate = web_rate(i) / workers as f64;
    let mut ports = Ephemeral::new(&mut g.rng);
    for _ in 0..workers {
        web_worker(g, cfg, sqli, rate, &host, &mut ports, span)?;
    }
    Ok(())
}

fn web_worker(
    g: &mut Gen<'_>,
    cfg: &SimConfig,
    sqli: bool,
    rate: f64,
    host: &str,
    ports: &mut Ephemeral,
    span: Span,
) -> Result<(), SimError> {
    let mut t = span.start + g.exp_gap(rate);
    while t < span.end {
        let client = endpoint(g, cfg.attacker, ports.next_port());
        let server = endpoint(g, cfg.target, 80);
        let mut c = TcpConn::new(g, client, server, t, 50e6);
        c.connect(g)?;
        let mut think = g.between(100 * US, MS);
        for _ in 0..g.rng.gen_range(1..=30) {
            let (request, status, body, delay) = web_exchange(g, sqli, host);
            c.send_after(g, Dir::Up, think, &request)?;
            let work = g.between(2 * MS, 25 * MS) + delay;
            let at = c.react(g, Dir::Down, work);
            let mut headers = vec![
                ("Server", "lighttpd/1.4.59"),
                ("Content-Type", "text/html; charset=utf-8"),
                ("Keep-Alive", "timeout=5, max=100"),
            ];
            if status.starts_with("302") {
                headers.push(("Location", "/login.cgi?err=1"));
            }
            c.send_at(g, Dir::Down, at, &http_response(status, at, &headers, &body))?;
            if c.now() >= span.end {
                break;
            }
            // Stay inside the server's 5 s keep-alive.
            think = g.exp_gap(rate).min(4 * SEC);
        }
        let d = g.between(MS, 50 * MS);
        c.close(g, Dir::Up, d)?;
        t = c.now() + g.exp_gap(rate);
    }
    Ok(())
}
