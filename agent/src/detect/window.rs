//! Per-device sliding windows over completed flows (plan §3.4).
//!
//! A device is a monitored address (see [`Monitored`]); a flow counts for each of its
//! endpoints that is a device (a flow between two devices is in both windows). From the
//! 10th flow of a device on, every new flow makes a window of its last 10 flows ready.
//!
//! A device with fewer than 10 flows is not left unscored: once it has had no new flow for
//! `partial_after_ns` (or when the capture ends, [`Windows::finish`]), its flows so far make
//! a partial window, padded in front and marked by [`ReadyWindow::padded`]. A single exploit,
//! a one-flow tunnel or the first probes of a new attacker are scored within that delay.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
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
    /// Raw features, oldest flow first; the first `padded` rows are padding.
    pub features: Box<Window>,
    /// Rows that hold no flow: 0 for a full window, 10 − flows for a partial one.
    pub padded: usize,
    /// The mark of the newest simulated flow in the window, if it holds any (see
    /// [`Windows::push_marked`]).
    pub simulated: Option<u32>,
}

#[derive(Debug, Clone)]
struct Slot {
    id: u64,
    peer: IpAddr,
    first_ts_ns: i64,
    last_ts_ns: i64,
    features: [f32; FEATURE_COUNT],
    simulated: Option<u32>,
}

#[derive(Debug, Default)]
struct Device {
    recent: VecDeque<Slot>,
    last_seen_ns: i64,
    /// When its partial window is due: set while it has fewer than 10 flows and one came
    /// since its last partial window.
    partial_due_ns: Option<i64>,
}

/// Counters of the windowing stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// Flows with at least one endpoint that is a device.
    pub flows_seen: u64,
    /// Flows of no monitored device.
    pub flows_ignored: u64,
    pub windows_ready: u64,
    /// Of those, partial windows of devices with fewer than 10 flows.
    pub partial_windows: u64,
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
    /// Quiet time after which a device with fewer than 10 flows is scored; 0: never (only
    /// at [`Windows::finish`]).
    partial_after_ns: i64,
    /// Partial windows by due time; entries a device has outgrown are skipped when popped.
    partial_due: BinaryHeap<Reverse<(i64, IpAddr)>>,
    /// The latest flow end seen: the data's own clock (packet time for files).
    clock_ns: i64,
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
            partial_after_ns: 0,
            partial_due: BinaryHeap::new(),
            clock_ns: i64::MIN,
            stats: WindowStats::default(),
        }
    }

    /// Scores a device with fewer than 10 flows once it has been quiet for `after_ns`
    /// (0: only when the data ends).
    pub fn with_partial_after(mut self, after_ns: i64) -> Windows {
        self.partial_after_ns = after_ns.max(0);
        self
    }

    /// Whether a partial window waits for its quiet time to pass.
    pub fn partial_due(&self) -> bool {
        !self.partial_due.is_empty()
    }

    /// The latest flow end seen, in ns (`i64::MIN` before the first flow).
    pub fn clock_ns(&self) -> i64 {
        self.clock_ns
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
        self.push_marked(flow, None, ready);
    }

    /// Adds a flow that may be simulated: `mark` says which attack-simulation step made it
    /// and for which device; it goes into that device's window only (a simulated attacker is
    /// no device), and the windows that hold it carry the mark of their newest simulated flow.
    pub fn push_marked(&mut self, flow: &FlowRecord, mark: Option<(u32, IpAddr)>, ready: &mut Vec<ReadyWindow>) {
        self.clock_ns = self.clock_ns.max(flow.last_ts_ns);
        self.sweep(flow.last_ts_ns);
        let endpoints = [flow.key.src, flow.key.dst];
        let mut counted = false;
        for (i, &ip) in endpoints.iter().enumerate() {
            if !self.is_device(ip) || (i == 1 && endpoints[0] == ip) || mark.is_some_and(|(_, d)| d != ip) {
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
                simulated: mark.map(|(m, _)| m),
            });
            if device.recent.len() == WINDOW {
                device.partial_due_ns = None;
                ready.push(Self::window_of(ip, &device.recent));
                self.stats.windows_ready += 1;
            } else if self.partial_after_ns > 0 {
                let due = self.clock_ns.saturating_add(self.partial_after_ns);
                device.partial_due_ns = Some(due);
                self.partial_due.push(Reverse((due, ip)));
            } else {
                // Only the end of the data scores it; any time in the past will do.
                device.partial_due_ns = Some(i64::MIN);
            }
        }
        if counted {
            self.stats.flows_seen += 1;
        } else {
            self.stats.flows_ignored += 1;
        }
        self.advance(self.clock_ns, ready);
    }

    /// Makes the partial windows due by `now_ns` ready: devices with fewer than 10 flows that
    /// have been quiet for the partial delay.
    pub fn advance(&mut self, now_ns: i64, ready: &mut Vec<ReadyWindow>) {
        while let Some(&Reverse((due, ip))) = self.partial_due.peek() {
            if due > now_ns {
                break;
            }
            self.partial_due.pop();
            self.release_partial(ip, Some(due), ready);
        }
    }

    /// The data has ended: every device with fewer than 10 flows and a flow since its last
    /// partial window gets one now, in the order their flows came.
    pub fn finish(&mut self, ready: &mut Vec<ReadyWindow>) {
        let mut waiting: Vec<(i64, IpAddr)> = self
            .devices
            .iter()
            .filter_map(|(ip, d)| d.partial_due_ns.map(|_| (d.last_seen_ns, *ip)))
            .collect();
        waiting.sort_unstable();
        for (_, ip) in waiting {
            self.release_partial(ip, None, ready);
        }
        self.partial_due.clear();
    }

    /// Emits `ip`'s partial window if it is still due (`due` None: whenever it is waiting).
    fn release_partial(&mut self, ip: IpAddr, due: Option<i64>, ready: &mut Vec<ReadyWindow>) {
        let Some(device) = self.devices.get_mut(&ip) else {
            return;
        };
        let waiting = match (device.partial_due_ns, due) {
            (Some(d), Some(want)) => d == want,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !waiting || device.recent.is_empty() || device.recent.len() >= WINDOW {
            return;
        }
        device.partial_due_ns = None;
        ready.push(Self::window_of(ip, &device.recent));
        self.stats.windows_ready += 1;
        self.stats.partial_windows += 1;
    }

    /// The window of a device's recent flows (1 to 10 of them; fewer are padded in front).
    fn window_of(device: IpAddr, recent: &VecDeque<Slot>) -> ReadyWindow {
        let padded = WINDOW - recent.len().min(WINDOW);
        let mut features = Box::new([[0f32; FEATURE_COUNT]; WINDOW]);
        for (row, slot) in features[padded..].iter_mut().zip(recent) {
            *row = slot.features;
        }
        let (first, last) = (&recent[0], &recent[recent.len() - 1]);
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
            padded,
            simulated: recent.iter().rev().find_map(|s| s.simulated),
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

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn a_quiet_device_with_few_flows_gets_a_padded_window_after_the_delay() {
        let mut w = Windows::new(nets(&["10.0.0.0/8"]), 16, i64::MAX / 2).with_partial_after(5 * SEC);
        let mut ready = Vec::new();
        for id in 1..=3 {
            w.push(&flow(id, "10.0.0.5", "1.1.1.1", id as i64), &mut ready);
        }
        assert!(ready.is_empty());
        // The last flow ended at 3 s + 5 ns: due at 8 s + 5 ns.
        w.advance(8 * SEC, &mut ready);
        assert!(ready.is_empty(), "not before the delay");
        w.advance(8 * SEC + 5, &mut ready);
        assert_eq!(ready.len(), 1);
        let p = &ready[0];
        assert_eq!(p.padded, 7);
        assert_eq!((p.span.first_flow_id, p.span.last_flow_id), (1, 3));
        let firsts: Vec<f32> = p.features.iter().map(|row| row[0]).collect();
        assert_eq!(firsts, [0., 0., 0., 0., 0., 0., 0., 1., 2., 3.]);
        w.advance(100 * SEC, &mut ready);
        w.finish(&mut ready);
        assert_eq!(ready.len(), 1, "once per quiet spell");
        assert_eq!(w.stats().partial_windows, 1);
    }

    #[test]
    fn another_devices_flow_moves_the_clock_and_the_end_scores_what_waits() {
        let mut w = Windows::new(nets(&["10.0.0.0/8"]), 16, i64::MAX / 2).with_partial_after(5 * SEC);
        let mut ready = Vec::new();
        w.push(&flow(1, "10.0.0.5", "1.1.1.1", 0), &mut ready);
        w.push(&flow(2, "10.0.0.6", "1.1.1.1", 2), &mut ready);
        assert!(ready.is_empty());
        w.push(&flow(3, "10.0.0.7", "1.1.1.1", 6), &mut ready);
        assert_eq!(ready.len(), 1, "10.0.0.5 was due at 5 s");
        assert_eq!(ready[0].device, "10.0.0.5".parse::<IpAddr>().expect("ip"));
        assert_eq!(ready[0].padded, 9);
        w.finish(&mut ready);
        let devices: Vec<String> = ready.iter().map(|r| r.device.to_string()).collect();
        assert_eq!(devices, ["10.0.0.5", "10.0.0.6", "10.0.0.7"]);
    }

    #[test]
    fn a_device_that_reaches_ten_flows_gets_full_windows_only() {
        let mut w = Windows::new(nets(&["10.0.0.0/8"]), 16, i64::MAX / 2).with_partial_after(5 * SEC);
        let mut ready = Vec::new();
        for id in 1..=10 {
            w.push(&flow(id, "10.0.0.5", "1.1.1.1", 0), &mut ready);
        }
        w.advance(60 * SEC, &mut ready);
        w.finish(&mut ready);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].padded, 0);
        // Without a delay, partial windows come only at the end of the data.
        let mut w = Windows::new(nets(&["10.0.0.0/8"]), 16, i64::MAX / 2);
        let mut ready = Vec::new();
        w.push(&flow(1, "10.0.0.5", "1.1.1.1", 0), &mut ready);
        w.advance(i64::MAX, &mut ready);
        assert!(ready.is_empty());
        w.finish(&mut ready);
        assert_eq!(ready.len(), 1);
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
