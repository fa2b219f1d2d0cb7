//! Which addresses are monitored devices: the configured networks, with the devices an
//! operator started or stopped from the hub on top. The hub's choices are kept in the state
//! directory (`monitoring.json`) so that a restart or a configuration reload keeps them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use gatewatch_models::data::Network;
use serde::{Deserialize, Serialize};

/// The file in the state directory.
pub const FILE: &str = "monitoring.json";

/// Devices started or stopped from the hub; a device is in at most one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    pub started: BTreeSet<IpAddr>,
    pub stopped: BTreeSet<IpAddr>,
}

impl Overrides {
    pub fn start(&mut self, device: IpAddr) {
        self.stopped.remove(&device);
        self.started.insert(device);
    }

    pub fn stop(&mut self, device: IpAddr) {
        self.started.remove(&device);
        self.stopped.insert(device);
    }

    /// The overrides kept in `path`; none if the file does not exist.
    pub fn load(path: &Path) -> std::io::Result<Overrides> {
        crate::state_file::load(path, "delete it to forget the hub's start/stop choices")
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        crate::state_file::save(path, self)
    }
}

/// The monitored set: configured networks plus the hub's overrides.
#[derive(Debug, Clone, Default)]
pub struct Monitored {
    pub networks: Vec<Network>,
    pub overrides: Overrides,
}

impl Monitored {
    pub fn new(networks: Vec<Network>, overrides: Overrides) -> Monitored {
        Monitored { networks, overrides }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        !self.overrides.stopped.contains(&ip)
            && (self.overrides.started.contains(&ip) || self.networks.iter().any(|n| n.contains(ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn the_hub_starts_and_stops_devices_inside_and_outside_the_networks() {
        let net: Network = "10.0.0.0/24".parse().expect("network");
        let mut m = Monitored::new(vec![net], Overrides::default());
        assert!(m.contains(ip("10.0.0.5")));
        assert!(!m.contains(ip("172.16.0.9")));
        m.overrides.stop(ip("10.0.0.5"));
        m.overrides.start(ip("172.16.0.9"));
        assert!(!m.contains(ip("10.0.0.5")), "stopped inside a configured network");
        assert!(m.contains(ip("10.0.0.6")), "its neighbours are still watched");
        assert!(m.contains(ip("172.16.0.9")), "started outside every network");
        m.overrides.start(ip("10.0.0.5"));
        assert!(m.contains(ip("10.0.0.5")));
        assert!(!m.overrides.stopped.contains(&ip("10.0.0.5")), "in one set at most");
    }

    #[test]
    fn overrides_survive_a_restart_and_a_bad_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(FILE);
        assert_eq!(Overrides::load(&path).expect("missing is empty"), Overrides::default());
        let mut o = Overrides::default();
        o.start(ip("fd00::1"));
        o.stop(ip("192.168.1.4"));
        o.save(&path).expect("save");
        assert_eq!(Overrides::load(&path).expect("load"), o);
        std::fs::write(&path, b"{not json").expect("write");
        let e = Overrides::load(&path).expect_err("corrupt");
        assert!(e.to_string().contains(FILE), "{e}");
    }
}
