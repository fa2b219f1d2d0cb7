//! Live capture on a veth pair between two network namespaces made by the test: real
//! ping, HTTP (curl against a local server) and UDP traffic must come out as flows.
//! Namespaces and processes are removed even when the test fails.

mod netns;

use std::process::Stdio;
use std::time::{Duration, Instant};

use gatewatch_proto::FlowRecord;
use netns::{is_root, sh, Pair};

#[test]
fn live_capture_sees_ping_http_and_udp_between_namespaces() {
    if !is_root() {
        eprintln!("SKIPPED live_capture_sees_ping_http_and_udp_between_namespaces: needs root for ip netns");
        return;
    }
    let mut lab = Pair::new("lc", 213);
    let (server_ip, client_ip) = (lab.a.ip.clone(), lab.b.ip.clone());
    let (client_ns, veth_s) = (lab.b.ns.clone(), lab.a.dev.clone());

    let agent = lab
        .a
        .command(env!("CARGO_BIN_EXE_gatewatch-agent"))
        .args(["capture", "--interface", &veth_s])
        .args(["--format", "json", "--duration", "8s", "--flow-timeout", "120s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start agent");
    lab.children.push(agent);
    let http = lab
        .a
        .command("python3")
        .args(["-m", "http.server", "8080", "--bind", &server_ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start http server");
    lab.children.push(http);
    let udp_echo = lab
        .a
        .command("python3")
        .arg("-c")
        .arg(format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{server_ip}',9999))\nfor _ in range(3):\n    d,a=s.recvfrom(2048)\n    s.sendto(d.upper(),a)\n"
        ))
        .spawn()
        .expect("start udp echo");
    lab.children.push(udp_echo);
    // Let the capture and the servers come up.
    std::thread::sleep(Duration::from_millis(1500));

    sh(&[
        "ip", "netns", "exec", &client_ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", &server_ip,
    ]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ok = lab
            .b
            .command("curl")
            .args(["-sf", "-o", "/dev/null", "--max-time", "2"])
            .arg(format!("http://{server_ip}:8080/"))
            .status()
            .is_ok_and(|s| s.success());
        if ok || Instant::now() > deadline {
            assert!(ok, "curl against the namespace's HTTP server failed");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    sh(&[
        "ip",
        "netns",
        "exec",
        &client_ns,
        "python3",
        "-c",
        &format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.settimeout(2)\nfor m in (b'a',b'bb',b'ccc'):\n    s.sendto(m,('{server_ip}',9999)); s.recvfrom(64)\n"
        ),
    ]);

    let agent = lab.children.remove(0);
    let out = agent.wait_with_output().expect("agent output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "agent failed: {stderr}");
    let flows: Vec<FlowRecord> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();
    let between = |f: &&FlowRecord| {
        let ends = [f.key.src.to_string(), f.key.dst.to_string()];
        ends.contains(&server_ip) && ends.contains(&client_ip)
    };
    let ping: Vec<&FlowRecord> = flows.iter().filter(between).filter(|f| f.key.protocol == 1).collect();
    assert_eq!(ping.len(), 1, "one ICMP flow: {flows:#?}");
    assert_eq!((ping[0].fwd_packets, ping[0].bwd_packets), (3, 3));
    assert_eq!(ping[0].key.src.to_string(), client_ip);

    let http: Vec<&FlowRecord> = flows
        .iter()
        .filter(between)
        .filter(|f| f.key.protocol == 6 && f.key.dst_port == 8080)
        .collect();
    assert_eq!(http.len(), 1, "one HTTP connection: {flows:#?}");
    let h = http[0];
    assert!(
        h.fwd_packets >= 4 && h.bwd_packets >= 3,
        "handshake, request, response, close: {h:?}"
    );
    assert_eq!(h.end, gatewatch_proto::EndReason::Fin);
    // The response body went server → client.
    assert!(h.features[gatewatch_proto::features::idx::TOTAL_LENGTH_OF_BWD_PACKETS] > 100.0);

    let udp: Vec<&FlowRecord> = flows
        .iter()
        .filter(between)
        .filter(|f| f.key.protocol == 17 && f.key.dst_port == 9999)
        .collect();
    assert_eq!(udp.len(), 1, "one UDP flow: {flows:#?}");
    assert_eq!((udp[0].fwd_packets, udp[0].bwd_packets), (3, 3));
    assert_eq!(
        udp[0].features[gatewatch_proto::features::idx::TOTAL_LENGTH_OF_FWD_PACKETS],
        6.0
    );
}
