//! The bidirectional flow table: packets in, finished flows out, in time order.
//!
//! Flows live in a slab indexed from a hash map keyed by the direction-free 5-tuple.
//! A flow's timeout is fixed at its first packet (CICFlowMeter: 120 s from the start),
//! so creation order is deadline order and a FIFO queue finds expired flows without
//! scanning. Closed TCP connections linger briefly so their last ACK stays with them.
//! Connectionless flows also end when idle; their deadlines move with every packet, so they
//! sit in a min-heap, checked lazily: a popped deadline that the flow has outlived is pushed
//! again at the flow's real one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::IpAddr;

use gatewatch_proto::flow::{protocol, EndReason, FlowKey, FlowRecord};
use hashbrown::HashMap;

use super::state::{is_connection_start, FlowState};
use super::{FlowConfig, Mode};
use crate::capture::decode::tcp_flags;
use crate::capture::PacketMeta;

/// Latest timestamp accepted (2096-10-02); later ones are clamped, as are pre-1970 ones.
pub const MAX_TIMESTAMP_NS: i64 = 4_000_000_000_000_000_000;

/// The 5-tuple with its endpoints in a fixed order, so both directions hash alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct TupleKey {
    a: IpAddr,
    b: IpAddr,
    a_port: u16,
    b_port: u16,
    protocol: u8,
}

impl TupleKey {
    #[inline]
    fn new(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, protocol: u8) -> Self {
        if (src, src_port) <= (dst, dst_port) {
            TupleKey {
                a: src,
                b: dst,
                a_port: src_port,
                b_port: dst_port,
                protocol,
            }
        } else {
            TupleKey {
                a: dst,
                b: src,
                a_port: dst_port,
                b_port: src_port,
                protocol,
            }
        }
    }

    #[inline]
    fn of(pkt: &PacketMeta) -> Self {
        Self::new(pkt.src, pkt.dst, pkt.src_port, pkt.dst_port, pkt.protocol)
    }

    fn of_key(key: &FlowKey) -> Self {
        Self::new(key.src, key.dst, key.src_port, key.dst_port, key.protocol)
    }
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    state: Option<FlowState>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Deadline {
    at_ns: i64,
    slot: u32,
    generation: u32,
}

/// Which queue a deadline came from, in the order ties are broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    Linger,
    Timeout,
    Idle,
}

/// Counters of what the table did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    pub packets: u64,
    pub flows_started: u64,
    pub flows_emitted: u64,
    /// Flows pushed out early because the table was full.
    pub evicted: u64,
    /// Flows that ended with fewer packets than `min_packets` and were not emitted.
    pub below_min_packets: u64,
    pub live: u64,
    pub peak_live: u64,
}

/// Bidirectional flow table with timeouts, TCP close handling and a live-flow cap.
#[derive(Debug)]
pub struct FlowTable {
    config: FlowConfig,
    /// 5-tuples come from the network: a fixed seed would let an attacker precompute keys
    /// that collide and slow the table down while it floods, so every table draws its own.
    index: HashMap<TupleKey, u32, foldhash::fast::RandomState>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    timeouts: VecDeque<Deadline>,
    lingering: VecDeque<Deadline>,
    idle: BinaryHeap<Reverse<Deadline>>,
    next_id: u64,
    stats: TableStats,
    clock_ns: i64,
}

impl FlowTable {
    pub fn new(config: FlowConfig) -> Self {
        FlowTable {
            config,
            index: HashMap::with_hasher(foldhash::fast::RandomState::default()),
            slots: Vec::new(),
            free: Vec::new(),
            timeouts: VecDeque::new(),
            lingering: VecDeque::new(),
            idle: BinaryHeap::new(),
            next_id: 1,
            stats: TableStats::default(),
            clock_ns: i64::MIN,
        }
    }

    pub fn config(&self) -> &FlowConfig {
        &self.config
    }

    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// Adds one packet; flows that end before or because of it go to `emit`.
    pub fn process(&mut self, pkt: &PacketMeta, emit: &mut impl FnMut(FlowRecord)) {
        let mut pkt = *pkt;
        // Timestamps come from files; keep them where differences cannot overflow.
        pkt.ts_ns = pkt.ts_ns.clamp(0, MAX_TIMESTAMP_NS);
        if self.config.mode == Mode::Cic2017 {
            // The 2017 extractor worked in whole microseconds.
            pkt.ts_ns -= pkt.ts_ns.rem_euclid(1_000);
        }
        self.stats.packets += 1;
        self.advance(pkt.ts_ns, emit);
        let tuple = TupleKey::of(&pkt);
        let mode = self.config.mode;
        if let Some(&slot) = self.index.get(&tuple) {
            let state = self.slots[slot as usize].state.as_mut();
            let Some(state) = state else {
                // Index and slab disagree: cannot happen, but recover by starting over.
                self.index.remove(&tuple);
                return self.start_flow(tuple, &pkt, emit);
            };
            if state.closing && is_connection_start(&pkt) {
                // A new connection reuses the 5-tuple of one that has closed.
                let reason = self.close_reason(slot).unwrap_or(EndReason::Fin);
                self.finish(slot, reason, emit);
                return self.start_flow(tuple, &pkt, emit);
            }
            let forward = state.is_forward(&pkt);
            state.add(&pkt, forward, mode);
            if pkt.protocol == protocol::TCP {
                self.after_tcp_packet(slot, &pkt, emit);
            }
            return;
        }
        self.start_flow(tuple, &pkt, emit);
    }

    fn start_flow(&mut self, tuple: TupleKey, pkt: &PacketMeta, emit: &mut impl FnMut(FlowRecord)) {
        if self.stats.live >= self.config.max_live_flows as u64 {
            self.evict_oldest(emit);
        }
        let state = FlowState::new(pkt, self.config.mode);
        let slot = match self.free.pop() {
            Some(slot) => {
                let s = &mut self.slots[slot as usize];
                s.generation = s.generation.wrapping_add(1);
                s.state = Some(state);
                slot
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    state: Some(state),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(tuple, slot);
        self.stats.flows_started += 1;
        self.stats.live += 1;
        self.stats.peak_live = self.stats.peak_live.max(self.stats.live);
        let generation = self.slots[slot as usize].generation;
        self.timeouts.push_back(Deadline {
            at_ns: pkt.ts_ns.saturating_add(self.config.flow_timeout_ns),
            slot,
            generation,
        });
        if let Some(idle) = self.config.idle_timeout_ns().filter(|_| pkt.protocol != protocol::TCP) {
            self.idle.push(Reverse(Deadline {
                at_ns: pkt.ts_ns.saturating_add(idle),
                slot,
                generation,
            }));
        }
        // The 2017 extractor checked FIN only on packets joining an existing flow, which
        // is how the FIN/ACK "appendix" flows of Q1 came to be.
        if pkt.protocol == protocol::TCP && self.config.mode == Mode::Correct {
            self.after_tcp_packet(slot, pkt, emit);
        }
    }

    /// FIN/RST handling after a TCP packet joined the flow in `slot`.
    fn after_tcp_packet(&mut self, slot: u32, pkt: &PacketMeta, emit: &mut impl FnMut(FlowRecord)) {
        let flags = pkt.tcp_flags;
        match self.config.mode {
            // Q1/Q2: the first FIN ends the flow; RST does not.
            Mode::Cic2017 => {
                if flags & tcp_flags::FIN != 0 {
                    self.finish(slot, EndReason::Fin, emit);
                }
            }
            Mode::Correct => {
                let s = &mut self.slots[slot as usize];
                let Some(state) = s.state.as_mut() else { return };
                if state.closing {
                    return;
                }
                if flags & tcp_flags::RST != 0 || state.fin_both_ways() {
                    state.closing = true;
                    let generation = s.generation;
                    self.lingering.push_back(Deadline {
                        at_ns: pkt.ts_ns.saturating_add(self.config.close_linger_ns),
                        slot,
                        generation,
                    });
                }
            }
        }
    }

    /// Emits every flow whose deadline is before `now_ns` (packet time for files, wall
    /// time for live capture), oldest deadline first.
    pub fn advance(&mut self, now_ns: i64, emit: &mut impl FnMut(FlowRecord)) {
        if now_ns > self.clock_ns {
            self.clock_ns = now_ns;
        }
        let now = self.clock_ns;
        loop {
            let timeout = self.timeouts.front().copied().filter(|d| d.at_ns < now);
            let linger = self.lingering.front().copied().filter(|d| d.at_ns < now);
            let idle = self.idle.peek().map(|r| r.0).filter(|d| d.at_ns < now);
            let Some((deadline, source)) = [
                timeout.map(|d| (d, Source::Timeout)),
                linger.map(|d| (d, Source::Linger)),
                idle.map(|d| (d, Source::Idle)),
            ]
            .into_iter()
            .flatten()
            .min_by_key(|(d, source)| (d.at_ns, *source)) else {
                break;
            };
            match source {
                Source::Timeout => self.timeouts.pop_front(),
                Source::Linger => self.lingering.pop_front(),
                Source::Idle => self.idle.pop().map(|r| r.0),
            };
            if !self.is_current(deadline) {
                continue;
            }
            let reason = match source {
                Source::Timeout => EndReason::FlowTimeout,
                Source::Linger => self.close_reason(deadline.slot).unwrap_or(EndReason::Fin),
                Source::Idle => {
                    let quiet_until = self.idle_deadline(deadline.slot);
                    if quiet_until > deadline.at_ns {
                        // Packets came since this deadline was set: wait for the real one.
                        self.idle.push(Reverse(Deadline {
                            at_ns: quiet_until,
                            ..deadline
                        }));
                        continue;
                    }
                    EndReason::IdleTimeout
                }
            };
            self.finish(deadline.slot, reason, emit);
        }
    }

    /// When the flow in `slot` goes idle, counted from its last packet.
    fn idle_deadline(&self, slot: u32) -> i64 {
        let last = self.slots[slot as usize].state.as_ref().map_or(i64::MIN, |s| s.last_ns);
        last.saturating_add(self.config.idle_timeout_ns().unwrap_or(0))
    }

    /// Emits every live flow (end of input), oldest first.
    pub fn flush(&mut self, emit: &mut impl FnMut(FlowRecord)) {
        let mut remaining: Vec<Deadline> = self
            .timeouts
            .drain(..)
            .filter(|d| d.slot < self.slots.len() as u32)
            .collect();
        remaining.retain(|d| self.is_current(*d));
        remaining.sort_by_key(|d| d.at_ns);
        for d in remaining {
            let reason = self.close_reason(d.slot).unwrap_or(EndReason::EndOfInput);
            self.finish(d.slot, reason, emit);
        }
        self.lingering.clear();
        self.idle.clear();
    }

    fn close_reason(&self, slot: u32) -> Option<EndReason> {
        let state = self.slots.get(slot as usize)?.state.as_ref()?;
        if !state.closing {
            return None;
        }
        Some(if state.fin_both_ways() {
            EndReason::Fin
        } else {
            EndReason::Rst
        })
    }

    fn is_current(&self, d: Deadline) -> bool {
        self.slots
            .get(d.slot as usize)
            .is_some_and(|s| s.generation == d.generation && s.state.is_some())
    }

    fn evict_oldest(&mut self, emit: &mut impl FnMut(FlowRecord)) {
        while let Some(d) = self.timeouts.pop_front() {
            if self.is_current(d) {
                self.stats.evicted += 1;
                self.finish(d.slot, EndReason::Evicted, emit);
                return;
            }
        }
    }

    fn finish(&mut self, slot: u32, reason: EndReason, emit: &mut impl FnMut(FlowRecord)) {
        let Some(s) = self.slots.get_mut(slot as usize) else {
            return;
        };
        let Some(state) = s.state.take() else { return };
        self.index.remove(&TupleKey::of_key(&state.key));
        self.free.push(slot);
        self.stats.live -= 1;
        if state.packets() < self.config.min_packets() {
            self.stats.below_min_packets += 1;
            return;
        }
        let record = FlowRecord {
            id: self.next_id,
            key: state.key,
            first_ts_ns: state.first_ns,
            last_ts_ns: state.last_ns,
            fwd_packets: state.fwd_packets(),
            bwd_packets: state.bwd_packets(),
            end: reason,
            features: state.features(self.config.mode),
        };
        self.next_id += 1;
        self.stats.flows_emitted += 1;
        emit(record);
    }
}

#[cfg(test)]
mod hashing {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn every_table_hashes_tuples_with_a_seed_of_its_own() {
        // Keys that collide in one table must not collide in the next (HashDoS).
        let key = TupleKey::new(
            "10.0.0.1".parse().expect("ip"),
            "10.0.0.2".parse().expect("ip"),
            40_000,
            80,
            6,
        );
        let hashes: std::collections::HashSet<u64> = (0..8)
            .map(|_| FlowTable::new(FlowConfig::default()).index.hasher().hash_one(key))
            .collect();
        assert!(hashes.len() > 1, "eight tables hashed a tuple alike");
    }
}
