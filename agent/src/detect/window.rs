//! Per-device sliding windows over completed flows (plan §3.4).
//!
//! A device is a monitored address (see [`Monitored`]); a flow counts for each of its
//! endpoints that is a device (a flow between two devices is in both windows). From the
//! 10th flow of a device on, every new flow makes a window of its last 10 flows ready.

use std::collections::VecDeque;
use std::net::IpAddr;

use gatewatch_models::data::Network;
use gatewatch_models::{Window, FEATURE_COUNT, WINDOW};
use gatewatch_proto::{FlowRecord, WindowSpan};
use hashbrown::HashMap;

use super::monitor::{Monitored, Overrides};

/// A window ready to score.
#[derive(Debug, Clone)]
pub struct ReadyWindow {
    pub device: IpAddr,
    pub span: WindowSpan,
    /// The address most of the window's flows have at their other end (the latest on a tie).
    pub peer: IpAddr,
    /// Raw features, oldest flow first.
    pub features: Box<Window>,
}

#[derive(Debug, Clone)]
struct Slot {
    id: u64,
    peer: IpAddr,
    first_ts_ns: i64,
    last_ts_ns: i64,
    features: [f32; FEATURE_COUNT],
}

#[derive(Debug, Default)]
struct Device {
    recent: VecDeque<Slot>,
    last_seen_ns: i64,
}

/// Counters of the windowing stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Flows with at least one endpoint that is a device.
    pub flows_seen: u64,
    /// Flows of no monitored device.
    pub flows_ignored: u64,
    pub windows_ready: u64,
    /// Devices currently tracked.
    pub devices: usize,
    /// Devices forgotten after `idle_ns` without a flow.
    pub devices_expired: u64,
    /// Flows of new devices not tracked because `max_devices` were tracked already.
    pub flows_over_device_cap: u64,
}

/// The sliding windows of every monitored device.
#[derive(Debug)]
pub struct Windows {
    monitored: Monitored,
    devices: HashMap<IpAddr, Device>,
    max_devices: usize,
    idle_ns: i64,
    next_sweep_ns: i64,
    stats: WindowStats,
}

impl Windows {
    /// `max_devices` bounds memory (about 3 KB per device) when a scan of the monitored
    /// range makes every address look like a device; idle devices are forgotten.
    pub fn new(monitored: Monitored, max_devices: usize, idle_ns: i64) -> Windows {
        Windows {
            monitored,
            devices: HashMap::new(),
            max_devices,
            idle_ns,
            next_sweep_ns: i64::MIN,
            stats: WindowStats::default(),
        }
    }

    pub fn stats(&self) -> WindowStats {
        WindowStats {
            devices: self.devices.len(),
            ..self.stats
        }
    }

    /// Monitors these networks from now on. Devices outside them stop getting windows; what
    /// they had is dropped when they go idle.
    pub fn set_networks(&mut self, networks: Vec<Network>) {
        self.monitored.networks = networks;
    }

    /// Applies the hub's start/stop choices. A stopped device's window is dropped at once, so
    /// that if it is started again its windows hold only flows seen while monitored.
    pub fn set_overrides(&mut self, overrides: Overrides) {
        self.monitored.overrides = overrides;
        let monitored = &self.monitored;
        self.devices.retain(|ip, _| monitored.contains(*ip));
    }

    pub fn is_device(&self, ip: IpAddr) -> bool {
        self.monitored.contains(ip)
    }

    /// Adds a completed flow; appends the windows it makes ready.
    pub fn push(&mut self, flow: &FlowRecord, ready: &mut Vec<ReadyWindow>) {
        self.sweep(flow.last_ts_ns);
        let endpoints = [flow.key.src, flow.key.dst];
        let mut counted = false;
        for (i, &ip) in endpoints.iter().enumerate() {
            if !self.is_device(ip) || (i == 1 && endpoints[0] == ip) {
                continue;
            }
            counted = true;
            if !self.devices.contains_key(&ip) && self.devices.len() >= self.max_devices {
                self.stats.flows_over_device_cap += 1;
                continue;
            }
            let device = self.devices.entry(ip).or_default();
            device.last_seen_ns = device.last_seen_ns.max(flow.last_ts_ns);
            if device.recent.len() == WINDOW {
                device.recent.pop_front();
            }
            device.recent.push_back(Slot {
                id: flow.id,
                peer: endpoints[1 - i],
                first_ts_ns: flow.first_ts_ns,
                last_ts_ns: flow.last_ts_ns,
                features: flow.features_f32(),
            });
            if device.recent.len() == WINDOW {
                ready.push(Self::window_of(ip, &device.recent));
                self.stats.windows_ready += 1;
            }
        }
        if counted {
            self.stats.flows_seen += 1;
        } else {
            self.stats.flows_ignored += 1;
        }
    }

    fn window_of(device: IpAddr, recent: &VecDeque<Slot>) -> ReadyWindow {
        let mut features = Box::new([[0f32; FEATURE_COUNT]; WINDOW]);
        for (row, slot) in features.iter_mut().zip(recent) {
            *row = slot.features;
        }
        let (first, last) = (&recent[0], &recent[WINDOW - 1]);
        let count = |ip: IpAddr| recent.iter().filter(|s| s.peer == ip).count();
        // max_by_key keeps the last of equals: oldest first, so a tie goes to the latest.
        let peer = recent
            .iter()
            .map(|s| s.peer)
            .max_by_key(|ip| count(*ip))
            .unwrap_or(last.peer);
        ReadyWindow {
            device,
            peer,
            span: WindowSpan {
                first_flow_id: first.id,
                last_flow_id: last.id,
                first_ts_ns: first.first_ts_ns,
                last_ts_ns: recent.iter().map(|s| s.last_ts_ns).max().unwrap_or(last.last_ts_ns),
            },
            features,
        }
    }

    /// Forgets idle devices, at most once per idle period.
    fn sweep(&mut self, now_ns: i64) {
        if now_ns < self.next_sweep_ns {
            return;
        }
        self.next_sweep_ns = now_ns.saturating_add(self.idle_ns);
        let cutoff = now_ns.saturating_sub(self.idle_ns);
        let before = self.devices.len();
        self.devices.retain(|_, d| d.last_seen_ns >= cutoff);
        self.stats.devices_expired += (before - self.devices.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_proto::{EndReason, FlowKey};

    fn flow(id: u64, src: &str, dst: &str, t_s: i64) -> FlowRecord {
        let mut features = [0f64; FEATURE_COUNT];
        features[0] = id as f64;
        FlowRecord {
            id,
            key: FlowKey {
                src: src.parse().expect("ip"),
                dst: dst.parse().expect("ip"),
                src_port: 40_000,
                dst_port: 80,
                protocol: 6,
            },
            first_ts_ns: t_s * 1_000_000_000,
            last_ts_ns: t_s * 1_000_000_000 + 5,
            fwd_packets: 1,
            bwd_packets: 1,
            end: EndReason::Fin,
            features,
        }
    }

    fn nets(s: &[&str]) -> Monitored {
        Monitored::new(
            s.iter().map(|n| n.parse().expect("net")).collect(),
            Overrides::default(),
        )
    }

    #[test]
    fn every_flow_from_the_tenth_on_makes_a_window_of_the_last_ten() {
        let mut w = Windows::new(nets(&["10.0.0.0/8"]), 16, i64::MAX / 2);
        let mut ready = Vec::new();
        for id in 1..=9 {
            w.push(&flow(id, "10.0.0.5", "1.1.1.1", id as i64), &mut ready);
        }
        assert!(ready.is_empty());
        for id in 10..=12 {
            w.push(&flow(id, "1.1.1.1", "10.0.0.5", id as i64), &mut ready);
        }
        assert_eq!(ready.len(), 3);
        let last = &ready[2];
        assert_eq!(last.device, "10.0.0.5".parse::<IpAddr>().expect("ip"));
        assert_eq!((last.span.first_flow_id, last.span.last_flow_id), (3, 12));
        assert_eq!(last.span.first_ts_ns, 3_000_000_000);
        assert_eq!(last.span.last_ts_ns, 12_000_000_005);
        let firsts: Vec<f32> = last.features.iter().map(|row| row[0]).collect();
        assert_eq!(firsts, (3..=12).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(w.stats().windows_ready, 3);
    }

    #[test]
    fn a_window_names_the_peer_most_of_its_flows_talk_to() {
        let mut w = Windows::new(nets(&["10.0.0.0/24"]), 16, i64::MAX);
        let mut ready = Vec::new();
        for i in 0..10u64 {
            let peer = if i % 3 == 0 { "198.51.100.1" } else { "203.0.113.9" };
            // The device is the source of some flows and the destination of others.
            let (src, dst) = if i % 2 == 0 {
                ("10.0.0.5", peer)
            } else {
                (peer, "10.0.0.5")
            };
            w.push(&flow(i, src, dst, i as i64), &mut ready);
        }
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].peer, "203.0.113.9".parse::<IpAddr>().expect("ip"));
        w.push(&flow(10, "10.0.0.5", "198.51.100.1", 10), &mut ready);
        w.push(&flow(11, "10.0.0.5", "198.51.100.1", 11), &mut ready);
        // 5 and 5 now: the latest flow's peer wins the tie.
        assert_eq!(ready[2].peer, "198.51.100.1".parse::<IpAddr>().expect("ip"));
    }

    #[test]
    fn a_flow_between_two_devices_counts_for_both_and_others_are_ignored() {
        let mut w = Windows::new(nets(&["192.168.1.0/24"]), 16, i64::MAX / 2);
        let mut ready = Vec::new();
        for id in 1..=10 {
            w.push(&flow(id, "192.168.1.2", "192.168.1.3", id as i64), &mut ready);
            w.push(&flow(100 + id, "8.8.8.8", "9.9.9.9", id as i64), &mut ready);
        }
        let mut devices: Vec<String> = ready.iter().map(|r| r.device.to_string()).collect();
        devices.sort();
        assert_eq!(devices, ["192.168.1.2", "192.168.1.3"]);
        let s = w.stats();
        assert_eq!((s.flows_seen, s.flows_ignored, s.devices), (10, 10, 2));
    }

    #[test]
    fn the_device_cap_holds_and_idle_devices_are_forgotten() {
        let mut w = Windows::new(nets(&["10.0.0.0/8"]), 2, 60_000_000_000);
        let mut ready = Vec::new();
        w.push(&flow(1, "10.0.0.1", "1.1.1.1", 0), &mut ready);
        w.push(&flow(2, "10.0.0.2", "1.1.1.1", 1), &mut ready);
        w.push(&flow(3, "10.0.0.3", "1.1.1.1", 2), &mut ready);
        assert_eq!(w.stats().flows_over_device_cap, 1);
        assert_eq!(w.stats().devices, 2);
        // Two minutes later both are idle; the new device takes a free place.
        w.push(&flow(4, "10.0.0.3", "1.1.1.1", 200), &mut ready);
        let s = w.stats();
        assert_eq!((s.devices, s.devices_expired), (1, 2));
    }

    #[test]
    fn a_device_stopped_from_the_hub_loses_its_window_and_starts_over_when_started() {
        let mut w = Windows::new(nets(&["10.0.0.0/8"]), 16, i64::MAX / 2);
        let mut ready = Vec::new();
        for id in 1..=9 {
            w.push(&flow(id, "10.0.0.5", "1.1.1.1", id as i64), &mut ready);
        }
        let device: IpAddr = "10.0.0.5".parse().expect("ip");
        let mut o = Overrides::default();
        o.stop(device);
        w.set_overrides(o.clone());
        assert_eq!(w.stats().devices, 0, "its flows are forgotten");
        w.push(&flow(10, "10.0.0.5", "1.1.1.1", 10), &mut ready);
        assert!(ready.is_empty());
        assert_eq!(w.stats().flows_ignored, 1);
        o.start(device);
        w.set_overrides(o);
        for id in 11..=20 {
            w.push(&flow(id, "10.0.0.5", "1.1.1.1", id as i64), &mut ready);
        }
        assert_eq!(ready.len(), 1, "ten flows after the start make the first window");
        assert_eq!(ready[0].span.first_flow_id, 11);
    }
}
