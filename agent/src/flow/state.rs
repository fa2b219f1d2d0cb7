//! One live flow: per-packet accumulators and, at the end, the 78 features.
//!
//! Everything is updated in place per packet (no allocation); features are computed
//! once, when the flow is emitted.

use gatewatch_proto::features::{idx, FEATURE_COUNT};
use gatewatch_proto::flow::{protocol, FlowKey};

use super::stats::{Moments, Welford};
use super::Mode;
use crate::capture::decode::tcp_flags;
use crate::capture::PacketMeta;

/// The activity timeout that splits Active/Idle periods (CICFlowMeter: 5 s).
pub const ACTIVITY_TIMEOUT_NS: i64 = 5_000_000_000;
/// A gap longer than this starts a new subflow, and breaks a bulk.
const SUBFLOW_GAP_NS: i64 = 1_000_000_000;
const SUBFLOW_GAP_US: u32 = 1_000_000;
/// Consecutive payload packets in one direction that make a bulk.
const BULK_MIN_PACKETS: u32 = 4;

/// Bulk transfer detection for one direction. Times are µs since the flow's first
/// packet, which keeps the state small (a flow spans at most 71 minutes at u32 µs).
#[derive(Debug, Clone, Copy, Default)]
struct Bulk {
    /// Candidate run: packets so far (0 = none), its bytes, first and last times.
    run_packets: u32,
    run_start_us: u32,
    run_last_us: u32,
    /// Completed bulks.
    bulks: u32,
    packets: u32,
    duration_us: u32,
    run_bytes: u64,
    bytes: u64,
}

impl Bulk {
    /// `other_last_payload_us`: when the other direction last carried payload; a bulk
    /// candidate that the other side interrupted starts over.
    #[inline]
    fn push(&mut self, at_us: u32, payload: u32, other_last_payload_us: u32) {
        if self.run_packets > 0 && other_last_payload_us > self.run_start_us {
            self.run_packets = 0;
        }
        if payload == 0 {
            return;
        }
        let size = u64::from(payload);
        if self.run_packets == 0 || at_us.saturating_sub(self.run_last_us) > SUBFLOW_GAP_US {
            self.run_packets = 1;
            self.run_bytes = size;
            self.run_start_us = at_us;
        } else {
            self.run_packets += 1;
            self.run_bytes += size;
            if self.run_packets == BULK_MIN_PACKETS {
                self.bulks += 1;
                self.packets += BULK_MIN_PACKETS;
                self.bytes += self.run_bytes;
                self.duration_us = self.duration_us.saturating_add(at_us.saturating_sub(self.run_start_us));
            } else if self.run_packets > BULK_MIN_PACKETS {
                self.packets += 1;
                self.bytes += size;
                self.duration_us = self.duration_us.saturating_add(at_us.saturating_sub(self.run_last_us));
            }
        }
        self.run_last_us = at_us;
    }

    fn avg_bytes(&self) -> f64 {
        if self.bulks == 0 {
            0.0
        } else {
            self.bytes as f64 / f64::from(self.bulks)
        }
    }

    fn avg_packets(&self) -> f64 {
        if self.bulks == 0 {
            0.0
        } else {
            f64::from(self.packets) / f64::from(self.bulks)
        }
    }

    fn rate(&self) -> f64 {
        if self.duration_us == 0 {
            0.0
        } else {
            self.bytes as f64 / (f64::from(self.duration_us) / 1e6)
        }
    }
}

/// Accumulators for one direction of a flow.
#[derive(Debug, Clone, Copy, Default)]
struct Direction {
    packets: u32,
    psh: u32,
    urg: u32,
    fin_seen: bool,
    bytes: u64,
    header_bytes: u64,
    last_ns: i64,
    /// µs since the flow's first packet.
    last_payload_us: u32,
    /// Payload sizes (count: `packets`).
    len: Moments,
    /// Inter-arrival times in µs (count: `packets - 1`).
    iat: Moments,
    bulk: Bulk,
}

impl Direction {
    fn packets(&self) -> u32 {
        self.packets
    }

    fn len(&self) -> Welford {
        self.len.with_count(self.packets)
    }

    fn iat(&self) -> Welford {
        self.iat.with_count(self.packets.saturating_sub(1))
    }
}

/// Active and idle periods; only flows with a pause over the activity timeout need them.
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    active: Welford,
    idle: Welford,
}

/// State of one flow while it is live.
#[derive(Debug, Clone)]
pub struct FlowState {
    pub key: FlowKey,
    pub first_ns: i64,
    pub last_ns: i64,
    fwd: Direction,
    bwd: Direction,
    /// Inter-arrival times of the whole flow in µs (count: packets − 1).
    flow_iat: Moments,
    /// Boxed because most flows never pause that long.
    activity: Option<Box<Activity>>,
    /// Payload of the first packet (2017 counted it twice, Q6).
    first_payload: u32,
    active_start_ns: i64,
    /// Packets per TCP flag bit, FIN first (bit order of the header).
    flag_counts: [u32; 8],
    first_flags: u8,
    init_win_fwd: i32,
    init_win_bwd: i32,
    act_data_fwd: u32,
    min_seg_fwd: u16,
    subflows: u32,
    /// Set once the flow's TCP connection has closed (both FINs, or a RST).
    pub closing: bool,
}

impl FlowState {
    /// Starts a flow with its first packet, which defines the forward direction.
    pub fn new(pkt: &PacketMeta, mode: Mode) -> Self {
        let key = FlowKey {
            src: pkt.src,
            dst: pkt.dst,
            src_port: pkt.src_port,
            dst_port: pkt.dst_port,
            protocol: pkt.protocol,
        };
        let mut state = FlowState {
            key,
            first_ns: pkt.ts_ns,
            last_ns: pkt.ts_ns,
            fwd: Direction::default(),
            bwd: Direction::default(),
            flow_iat: Moments::default(),
            activity: None,
            first_payload: payload_of(pkt, mode),
            active_start_ns: pkt.ts_ns,
            flag_counts: [0; 8],
            first_flags: pkt.tcp_flags,
            init_win_fwd: pkt.tcp_window.map_or(-1, i32::from),
            init_win_bwd: -1,
            act_data_fwd: 0,
            min_seg_fwd: u16::MAX,
            subflows: 1,
            closing: false,
        };
        state.add(pkt, true, mode);
        state
    }

    /// Whether `pkt` travels in the flow's forward direction.
    #[inline]
    pub fn is_forward(&self, pkt: &PacketMeta) -> bool {
        pkt.src == self.key.src && pkt.src_port == self.key.src_port
    }

    pub fn packets(&self) -> u32 {
        self.fwd.packets() + self.bwd.packets()
    }

    pub fn fwd_packets(&self) -> u32 {
        self.fwd.packets()
    }

    pub fn bwd_packets(&self) -> u32 {
        self.bwd.packets()
    }

    pub fn fin_both_ways(&self) -> bool {
        self.fwd.fin_seen && self.bwd.fin_seen
    }

    /// Adds one packet (the first one through [`FlowState::new`]).
    #[inline]
    pub fn add(&mut self, pkt: &PacketMeta, forward: bool, mode: Mode) {
        // Reordered captures put a packet before its predecessor: `correct` counts it at
        // the flow's latest time; 2017 let durations and gaps go negative.
        let ts = match mode {
            Mode::Correct => pkt.ts_ns.max(self.last_ns),
            Mode::Cic2017 => pkt.ts_ns,
        };
        let payload = payload_of(pkt, mode);
        let first = self.packets() == 0;
        if !first {
            let gap = ts - self.last_ns;
            self.flow_iat.push(gap as f64 / 1e3, self.packets());
            if gap > ACTIVITY_TIMEOUT_NS {
                let activity = self.activity.get_or_insert_with(Box::default);
                if self.last_ns > self.active_start_ns {
                    activity.active.push((self.last_ns - self.active_start_ns) as f64 / 1e3);
                }
                activity.idle.push(gap as f64 / 1e3);
                self.active_start_ns = ts;
            }
            if gap > SUBFLOW_GAP_NS {
                self.subflows += 1;
            }
        }
        self.last_ns = ts;

        let header = match mode {
            Mode::Correct => u64::from(pkt.ip_header_len) + u64::from(pkt.l4_header_len),
            Mode::Cic2017 => u64::from(pkt.l4_header_len),
        };
        let flags = pkt.tcp_flags;
        if mode == Mode::Correct {
            for (bit, count) in self.flag_counts.iter_mut().enumerate() {
                *count += u32::from((flags >> bit) & 1);
            }
        }
        let at_us = u32::try_from((ts - self.first_ns).max(0) / 1_000).unwrap_or(u32::MAX);
        let (this, other) = if forward {
            (&mut self.fwd, &self.bwd)
        } else {
            (&mut self.bwd, &self.fwd)
        };
        this.packets += 1;
        if this.packets > 1 {
            this.iat.push((ts - this.last_ns) as f64 / 1e3, this.packets - 1);
        }
        this.last_ns = ts;
        this.len.push(f64::from(payload), this.packets);
        this.bytes += u64::from(payload);
        this.header_bytes += header;
        if flags & tcp_flags::FIN != 0 {
            this.fin_seen = true;
        }
        if mode == Mode::Correct {
            this.psh += u32::from(flags & tcp_flags::PSH != 0);
            this.urg += u32::from(flags & tcp_flags::URG != 0);
            this.bulk.push(at_us, payload, other.last_payload_us);
        }
        if payload > 0 {
            this.last_payload_us = at_us;
        }

        if forward {
            if pkt.l4_header_len < self.min_seg_fwd {
                self.min_seg_fwd = pkt.l4_header_len;
            }
            // Q10: the 2017 extractor counted data packets only after the first one.
            if payload > 0 && !(mode == Mode::Cic2017 && first) {
                self.act_data_fwd += 1;
            }
        } else if let Some(win) = pkt.tcp_window {
            // Q9: 2017 kept overwriting the backward window; correct keeps the first.
            if mode == Mode::Cic2017 || self.init_win_bwd < 0 {
                self.init_win_bwd = i32::from(win);
            }
        }
    }

    /// The 78 features, in file order.
    pub fn features(&self, mode: Mode) -> [f64; FEATURE_COUNT] {
        let mut f = [0.0; FEATURE_COUNT];
        let duration_us = (self.last_ns - self.first_ns) as f64 / 1e3;
        let duration_s = duration_us / 1e6;
        let (fwd, bwd) = (&self.fwd, &self.bwd);
        let (fwd_len, bwd_len, fwd_iat, bwd_iat) = (fwd.len(), bwd.len(), fwd.iat(), bwd.iat());
        let flow_iat = self.flow_iat.with_count(self.packets().saturating_sub(1));
        let mut all_len = fwd_len.merge(&bwd_len);
        if mode == Mode::Cic2017 {
            // Q6: the first packet's payload enters the all-packet statistics twice.
            let mut first = Welford::default();
            first.push(f64::from(self.first_payload));
            all_len = all_len.merge(&first);
        }
        let fwd_packets = f64::from(fwd.packets());
        let bwd_packets = f64::from(bwd.packets());
        let packets = fwd_packets + bwd_packets;
        let bytes = (fwd.bytes + bwd.bytes) as f64;
        let per_second = |count: f64| if duration_s > 0.0 { count / duration_s } else { 0.0 };

        f[idx::DESTINATION_PORT] = f64::from(self.key.dst_port);
        f[idx::FLOW_DURATION] = duration_us;
        f[idx::TOTAL_FWD_PACKETS] = fwd_packets;
        f[idx::TOTAL_BACKWARD_PACKETS] = bwd_packets;
        f[idx::TOTAL_LENGTH_OF_FWD_PACKETS] = fwd.bytes as f64;
        f[idx::TOTAL_LENGTH_OF_BWD_PACKETS] = bwd.bytes as f64;
        f[idx::FWD_PACKET_LENGTH_MAX] = fwd_len.max();
        f[idx::FWD_PACKET_LENGTH_MIN] = fwd_len.min();
        f[idx::FWD_PACKET_LENGTH_MEAN] = fwd_len.mean();
        f[idx::FWD_PACKET_LENGTH_STD] = fwd_len.std();
        f[idx::BWD_PACKET_LENGTH_MAX] = bwd_len.max();
        f[idx::BWD_PACKET_LENGTH_MIN] = bwd_len.min();
        f[idx::BWD_PACKET_LENGTH_MEAN] = bwd_len.mean();
        f[idx::BWD_PACKET_LENGTH_STD] = bwd_len.std();
        match mode {
            // Java double division: x/0 is Infinity, 0/0 is NaN.
            Mode::Cic2017 => {
                f[idx::FLOW_BYTES_S] = bytes / duration_s;
                f[idx::FLOW_PACKETS_S] = packets / duration_s;
            }
            Mode::Correct => {
                f[idx::FLOW_BYTES_S] = per_second(bytes);
                f[idx::FLOW_PACKETS_S] = per_second(packets);
            }
        }
        f[idx::FLOW_IAT_MEAN] = flow_iat.mean();
        f[idx::FLOW_IAT_STD] = flow_iat.std();
        f[idx::FLOW_IAT_MAX] = flow_iat.max();
        f[idx::FLOW_IAT_MIN] = flow_iat.min();
        f[idx::FWD_IAT_TOTAL] = fwd_iat.sum();
        f[idx::FWD_IAT_MEAN] = fwd_iat.mean();
        f[idx::FWD_IAT_STD] = fwd_iat.std();
        f[idx::FWD_IAT_MAX] = fwd_iat.max();
        f[idx::FWD_IAT_MIN] = fwd_iat.min();
        f[idx::BWD_IAT_TOTAL] = bwd_iat.sum();
        f[idx::BWD_IAT_MEAN] = bwd_iat.mean();
        f[idx::BWD_IAT_STD] = bwd_iat.std();
        f[idx::BWD_IAT_MAX] = bwd_iat.max();
        f[idx::BWD_IAT_MIN] = bwd_iat.min();
        let first_bit = |flag: u8| f64::from(u8::from(self.first_flags & flag != 0));
        match mode {
            Mode::Correct => {
                f[idx::FWD_PSH_FLAGS] = f64::from(fwd.psh);
                f[idx::BWD_PSH_FLAGS] = f64::from(bwd.psh);
                f[idx::FWD_URG_FLAGS] = f64::from(fwd.urg);
                f[idx::BWD_URG_FLAGS] = f64::from(bwd.urg);
            }
            // Q4: only the first (always forward) packet's flags were counted.
            Mode::Cic2017 => {
                f[idx::FWD_PSH_FLAGS] = first_bit(tcp_flags::PSH);
                f[idx::FWD_URG_FLAGS] = first_bit(tcp_flags::URG);
            }
        }
        f[idx::FWD_HEADER_LENGTH] = fwd.header_bytes as f64;
        f[idx::BWD_HEADER_LENGTH] = bwd.header_bytes as f64;
        f[idx::FWD_PACKETS_S] = per_second(fwd_packets);
        f[idx::BWD_PACKETS_S] = per_second(bwd_packets);
        f[idx::MIN_PACKET_LENGTH] = all_len.min();
        f[idx::MAX_PACKET_LENGTH] = all_len.max();
        f[idx::PACKET_LENGTH_MEAN] = all_len.mean();
        f[idx::PACKET_LENGTH_STD] = all_len.std();
        f[idx::PACKET_LENGTH_VARIANCE] = all_len.variance();
        let flag_columns = [
            idx::FIN_FLAG_COUNT,
            idx::SYN_FLAG_COUNT,
            idx::RST_FLAG_COUNT,
            idx::PSH_FLAG_COUNT,
            idx::ACK_FLAG_COUNT,
            idx::URG_FLAG_COUNT,
            idx::CWE_FLAG_COUNT,
            idx::ECE_FLAG_COUNT,
        ];
        match mode {
            Mode::Correct => {
                let bits = [
                    tcp_flags::FIN,
                    tcp_flags::SYN,
                    tcp_flags::RST,
                    tcp_flags::PSH,
                    tcp_flags::ACK,
                    tcp_flags::URG,
                    tcp_flags::CWR,
                    tcp_flags::ECE,
                ];
                for (column, flag) in flag_columns.iter().zip(bits) {
                    f[*column] = f64::from(self.flag_counts[flag.trailing_zeros() as usize]);
                }
            }
            // Q3: the 2017 writer emitted the first packet's flags in hash-map order.
            Mode::Cic2017 => {
                let bits = [
                    tcp_flags::RST,
                    tcp_flags::PSH,
                    tcp_flags::ECE,
                    tcp_flags::SYN,
                    tcp_flags::ACK,
                    tcp_flags::FIN,
                    tcp_flags::URG,
                    tcp_flags::CWR,
                ];
                for (column, flag) in flag_columns.iter().zip(bits) {
                    f[*column] = first_bit(flag);
                }
            }
        }
        f[idx::DOWN_UP_RATIO] = match mode {
            Mode::Correct if fwd_packets > 0.0 => bwd_packets / fwd_packets,
            Mode::Correct => 0.0,
            // Q8: integer division.
            Mode::Cic2017 => f64::from(bwd.packets().checked_div(fwd.packets()).unwrap_or(0)),
        };
        f[idx::AVERAGE_PACKET_SIZE] = match mode {
            Mode::Correct => bytes / packets,
            Mode::Cic2017 => all_len.sum() / packets,
        };
        f[idx::AVG_FWD_SEGMENT_SIZE] = fwd_len.mean();
        f[idx::AVG_BWD_SEGMENT_SIZE] = bwd_len.mean();
        f[idx::FWD_HEADER_LENGTH_2] = f[idx::FWD_HEADER_LENGTH];
        match mode {
            Mode::Correct => {
                f[idx::FWD_AVG_BYTES_BULK] = fwd.bulk.avg_bytes();
                f[idx::FWD_AVG_PACKETS_BULK] = fwd.bulk.avg_packets();
                f[idx::FWD_AVG_BULK_RATE] = fwd.bulk.rate();
                f[idx::BWD_AVG_BYTES_BULK] = bwd.bulk.avg_bytes();
                f[idx::BWD_AVG_PACKETS_BULK] = bwd.bulk.avg_packets();
                f[idx::BWD_AVG_BULK_RATE] = bwd.bulk.rate();
                let subflows = f64::from(self.subflows);
                f[idx::SUBFLOW_FWD_PACKETS] = fwd_packets / subflows;
                f[idx::SUBFLOW_FWD_BYTES] = fwd.bytes as f64 / subflows;
                f[idx::SUBFLOW_BWD_PACKETS] = bwd_packets / subflows;
                f[idx::SUBFLOW_BWD_BYTES] = bwd.bytes as f64 / subflows;
            }
            // Q5: bulks always 0, one subflow.
            Mode::Cic2017 => {
                f[idx::SUBFLOW_FWD_PACKETS] = fwd_packets;
                f[idx::SUBFLOW_FWD_BYTES] = fwd.bytes as f64;
                f[idx::SUBFLOW_BWD_PACKETS] = bwd_packets;
                f[idx::SUBFLOW_BWD_BYTES] = bwd.bytes as f64;
            }
        }
        f[idx::INIT_WIN_BYTES_FORWARD] = f64::from(self.init_win_fwd);
        f[idx::INIT_WIN_BYTES_BACKWARD] = f64::from(self.init_win_bwd);
        f[idx::ACT_DATA_PKT_FWD] = f64::from(self.act_data_fwd);
        f[idx::MIN_SEG_SIZE_FORWARD] = if self.min_seg_fwd == u16::MAX {
            0.0
        } else {
            f64::from(self.min_seg_fwd)
        };
        let activity = self.activity.as_deref().copied().unwrap_or_default();
        let mut active = activity.active;
        // The 2017 extractor never closed the last active period (golden row 1: Active 0).
        if mode == Mode::Correct && self.last_ns > self.active_start_ns {
            active.push((self.last_ns - self.active_start_ns) as f64 / 1e3);
        }
        f[idx::ACTIVE_MEAN] = active.mean();
        f[idx::ACTIVE_STD] = active.std();
        f[idx::ACTIVE_MAX] = active.max();
        f[idx::ACTIVE_MIN] = active.min();
        f[idx::IDLE_MEAN] = activity.idle.mean();
        f[idx::IDLE_STD] = activity.idle.std();
        f[idx::IDLE_MAX] = activity.idle.max();
        f[idx::IDLE_MIN] = activity.idle.min();
        f
    }
}

/// Payload as each mode measures it (Q7: 2017 counted link padding).
#[inline]
fn payload_of(pkt: &PacketMeta, mode: Mode) -> u32 {
    match mode {
        Mode::Correct => pkt.payload_len,
        Mode::Cic2017 => pkt.padded_payload_len,
    }
}

/// Whether a packet can open a new connection on a flow's 5-tuple.
#[inline]
pub fn is_connection_start(pkt: &PacketMeta) -> bool {
    pkt.protocol == protocol::TCP && pkt.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
}
