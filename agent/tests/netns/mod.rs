//! Two network namespaces joined by a veth pair, made by a test and removed when it ends
//! (even when it fails), with the processes the test started in them.

use std::process::{Child, Command};

/// One end of the pair: its namespace, interface and address (in a /24).
#[derive(Debug)]
pub struct Host {
    pub ns: String,
    pub dev: String,
    pub ip: String,
}

impl Host {
    /// `program` run inside this host's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, program]);
        c
    }
}

#[derive(Debug)]
pub struct Pair {
    pub a: Host,
    pub b: Host,
    /// Killed when the pair goes.
    pub children: Vec<Child>,
}

impl Drop for Pair {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.a.ns, &self.b.ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs a command that must succeed.
pub fn sh(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(status.success(), "{args:?} failed");
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Pair {
    /// Namespaces named after `name` and this process, addresses `10.{octet}.N.1` (a) and
    /// `.2` (b) with N from the process id, so that tests can run side by side.
    pub fn new(name: &str, octet: u8) -> Pair {
        let tag = std::process::id() % 100_000;
        let net = 100 + tag % 150;
        let host = |end: &str, last: u8| Host {
            ns: format!("gw{name}{tag}{end}"),
            dev: format!("{name}{tag}{end}"),
            ip: format!("10.{octet}.{net}.{last}"),
        };
        let pair = Pair {
            a: host("a", 1),
            b: host("b", 2),
            children: Vec::new(),
        };
        sh(&["ip", "netns", "add", &pair.a.ns]);
        sh(&["ip", "netns", "add", &pair.b.ns]);
        sh(&[
            "ip",
            "link",
            "add",
            &pair.a.dev,
            "netns",
            &pair.a.ns,
            "type",
            "veth",
            "peer",
            "name",
            &pair.b.dev,
            "netns",
            &pair.b.ns,
        ]);
        for h in [&pair.a, &pair.b] {
            sh(&["ip", "-n", &h.ns, "addr", "add", &format!("{}/24", h.ip), "dev", &h.dev]);
            sh(&["ip", "-n", &h.ns, "link", "set", &h.dev, "up"]);
            sh(&["ip", "-n", &h.ns, "link", "set", "lo", "up"]);
        }
        pair
    }
}
