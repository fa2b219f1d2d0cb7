//! One TCP conversation as the capture point sees it: three-way handshake with the options
//! both stacks negotiate, data segmented to the MSS with sequence and acknowledgement numbers
//! advancing by payload length, slow start, ACK of every second segment and delayed ACKs
//! (piggybacked when the receiver answers in time), FIN/ACK close or RST.
//!
//! Timing model: a packet observed at `t` reaches its receiver and that host's reaction is
//! observed at `t + rtt(receiver) + think`, where `rtt` is the round trip between the
//! capture point and the host.

use etherparse::{TcpHeader, TcpOptionElement};

use super::net::{build_err, tcp_frame, Gen, Host, Out, MS, US};
use super::SimError;
use rand::Rng;

pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;

/// Segments sent before the first ACK returns, and the ceiling slow start grows to.
const INITIAL_CWND: usize = 10;
const MAX_CWND: usize = 64;
/// Ethernet + IPv4 + TCP header bytes used to pace segments on the link.
const WIRE_OVERHEAD: usize = 66;

/// How an operating system's TCP behaves on the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stack {
    pub mss: u16,
    /// Window field of SYN and SYN-ACK (never scaled).
    pub syn_window: u16,
    /// Receive window in bytes after the handshake.
    pub window: u32,
    pub wscale: Option<u8>,
    pub sack: bool,
    pub timestamps: bool,
    pub delack_ns: i64,
    pub dont_fragment: bool,
}

/// Linux (gateways, cameras, servers, attack tools).
pub(crate) const LINUX: Stack = Stack {
    mss: 1460,
    syn_window: 64_240,
    window: 502 << 7,
    wscale: Some(7),
    sack: true,
    timestamps: true,
    delack_ns: 40 * MS,
    dont_fragment: true,
};

/// lwIP as on ESP32-class sensors: small window, no options beyond MSS, slow delayed ACK.
pub(crate) const LWIP: Stack = Stack {
    mss: 1440,
    syn_window: 5_760,
    window: 5_760,
    wscale: None,
    sack: false,
    timestamps: false,
    delack_ns: 100 * MS,
    dont_fragment: false,
};

/// Direction: `Up` from the client (who sent the SYN) to the server, `Down` back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Up,
    Down,
}

impl Dir {
    pub fn other(self) -> Dir {
        match self {
            Dir::Up => Dir::Down,
            Dir::Down => Dir::Up,
        }
    }

    fn idx(self) -> usize {
        match self {
            Dir::Up => 0,
            Dir::Down => 1,
        }
    }
}

/// One end of a conversation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Endpoint {
    pub host: Host,
    pub port: u16,
    pub stack: Stack,
}

#[derive(Debug)]
struct Side {
    ep: Endpoint,
    /// Next sequence number to send.
    seq: u32,
    ip_id: u16,
    /// Offset of this host's timestamp clock (ms ticks).
    ts_clock: u32,
    /// Last timestamp value received from the peer (echoed in TSecr).
    ts_recent: u32,
    /// Time of this side's latest packet: a host sends in order.
    last_t: i64,
}

/// An ACK a side owes and will send at `deadline` unless it sends something first.
#[derive(Debug, Clone, Copy)]
struct Pending {
    owner: Dir,
    deadline: i64,
    ack: u32,
}

#[derive(Debug)]
pub(crate) struct TcpConn {
    sides: [Side; 2],
    scaled: bool,
    timestamps: bool,
    sack: bool,
    /// Bottleneck rate of bulk transfers, bits per second.
    bps: f64,
    /// Time of the latest packet of the conversation.
    t: i64,
    last_from: Dir,
    pending: Option<Pending>,
}

impl TcpConn {
    /// A conversation whose SYN will be observed at `start`.
    pub fn new(g: &mut Gen<'_>, client: Endpoint, server: Endpoint, start: i64, bps: f64) -> Self {
        let mut side = |ep: Endpoint| Side {
            ep,
            seq: g.rng.gen(),
            ip_id: g.rng.gen(),
            ts_clock: g.rng.gen(),
            ts_recent: 0,
            last_t: i64::MIN,
        };
        let sides = [side(client), side(server)];
        TcpConn {
            scaled: client.stack.wscale.is_some() && server.stack.wscale.is_some(),
            timestamps: client.stack.timestamps && server.stack.timestamps,
            sack: client.stack.sack && server.stack.sack,
            sides,
            bps,
            t: start,
            last_from: Dir::Down,
            pending: None,
        }
    }

    /// Time of the latest packet.
    pub fn now(&self) -> i64 {
        self.t
    }

    /// When `who` can send something in reaction to the latest packet after thinking `think`.
    pub fn react(&self, g: &mut Gen<'_>, who: Dir, think: i64) -> i64 {
        if who == self.last_from {
            self.t + think
        } else {
            self.t + g.jitter(self.sides[who.idx()].ep.host.rtt_ns, 0.1) + think
        }
    }

    /// SYN now, SYN-ACK, ACK.
    pub fn connect(&mut self, g: &mut Gen<'_>) -> Result<(), SimError> {
        let t0 = self.t;
        self.emit(g.out, Dir::Up, t0, SYN, &[])?;
        let d = g.between(20 * US, 80 * US);
        let t1 = self.react(g, Dir::Down, d);
        self.emit(g.out, Dir::Down, t1, SYN | ACK, &[])?;
        let d = g.between(10 * US, 40 * US);
        let t2 = self.react(g, Dir::Up, d);
        self.emit(g.out, Dir::Up, t2, ACK, &[])
    }

    /// `from` sends `data` after thinking `think` in reaction to the latest packet.
    pub fn send_after(&mut self, g: &mut Gen<'_>, from: Dir, think: i64, data: &[u8]) -> Result<(), SimError> {
        let at = self.react(g, from, think);
        self.send_at(g, from, at, data)
    }

    /// `from` sends `data` starting at `at` (not before the latest packet): MSS-sized
    /// segments, PSH on the last, paced by the link rate and slow start; the receiver ACKs
    /// every second segment at once and the rest with a delayed ACK.
    pub fn send_at(&mut self, g: &mut Gen<'_>, from: Dir, at: i64, data: &[u8]) -> Result<(), SimError> {
        let to = from.other();
        let mut seg = usize::from(self.sides[0].ep.stack.mss.min(self.sides[1].ep.stack.mss));
        if self.timestamps {
            seg -= 12;
        }
        let flight = self.sides[0].ep.host.rtt_ns + self.sides[1].ep.host.rtt_ns;
        let recv_rtt = self.sides[to.idx()].ep.host.rtt_ns;
        let ns_per_byte = 8e9 / self.bps;
        let mut t = at.max(self.t);
        let mut last_t = t;
        let (mut burst_start, mut in_burst, mut cwnd, mut unacked) = (t, 0, INITIAL_CWND, 0);
        let n = data.len().div_ceil(seg);
        for (i, chunk) in data.chunks(seg).enumerate() {
            if in_burst == cwnd {
                // Wait for the ACKs of the burst, then grow the window.
                t = t.max(burst_start + g.jitter(flight, 0.1));
                burst_start = t;
                in_burst = 0;
                cwnd = (cwnd * 2).min(MAX_CWND);
            }
            let flags = if i + 1 == n { ACK | PSH } else { ACK };
            self.emit(g.out, from, t, flags, chunk)?;
            last_t = self.sides[from.idx()].last_t;
            t = t.max(last_t);
            in_burst += 1;
            unacked += 1;
            if unacked == 2 {
                let ack = self.sides[from.idx()].seq;
                let ta = t + g.jitter(recv_rtt, 0.1);
                self.emit_raw(g.out, to, ta, ACK, ack, &[])?;
                if self.pending.is_some_and(|p| p.owner == to) {
                    self.pending = None;
                }
                unacked = 0;
            }
            let wire = ((chunk.len() + WIRE_OVERHEAD) as f64 * ns_per_byte) as i64;
            t += g.jitter(wire, 0.2).max(2 * US);
        }
        if unacked > 0 {
            let owner_delack = self.sides[to.idx()].ep.stack.delack_ns;
            self.pending = Some(Pending {
                owner: to,
                deadline: last_t + recv_rtt + owner_delack,
                ack: self.sides[from.idx()].seq,
            });
        }
        self.t = self.t.max(last_t);
        self.last_from = from;
        Ok(())
    }

    /// Orderly close: `initiator` FIN/ACK, the peer FIN/ACK, final ACK.
    pub fn close(&mut self, g: &mut Gen<'_>, initiator: Dir, think: i64) -> Result<(), SimError> {
        let peer = initiator.other();
        let t1 = self.react(g, initiator, think);
        self.emit(g.out, initiator, t1, FIN | ACK, &[])?;
        let d = g.between(30 * US, 300 * US);
        let t2 = self.react(g, peer, d);
        self.emit(g.out, peer, t2, FIN | ACK, &[])?;
        let d = g.between(10 * US, 50 * US);
        let t3 = self.react(g, initiator, d);
        self.emit(g.out, initiator, t3, ACK, &[])
    }

    /// Abortive close: `from` sends RST/ACK; nothing follows.
    pub fn abort(&mut self, g: &mut Gen<'_>, from: Dir, think: i64) -> Result<(), SimError> {
        let at = self.react(g, from, think);
        self.emit(g.out, from, at, RST | ACK, &[])?;
        self.pending = None;
        Ok(())
    }

    /// Sends an ACK still owed (a conversation left open).
    pub fn flush(&mut self, out: &mut Out) -> Result<(), SimError> {
        match self.pending.take() {
            Some(p) => self.emit_raw(out, p.owner, p.deadline, ACK, p.ack, &[]).map(drop),
            None => Ok(()),
        }
    }

    /// Sends a segment acknowledging everything the peer sent, after any ACK owed earlier.
    fn emit(&mut self, out: &mut Out, from: Dir, at: i64, flags: u8, payload: &[u8]) -> Result<(), SimError> {
        if let Some(p) = self.pending {
            if at >= p.deadline {
                self.pending = None;
                self.emit_raw(out, p.owner, p.deadline, ACK, p.ack, &[])?;
            } else if p.owner == from {
                // Piggybacked on this segment.
                self.pending = None;
            }
        }
        let ack = self.sides[from.other().idx()].seq;
        let at = self.emit_raw(out, from, at, flags, ack, payload)?;
        self.t = self.t.max(at);
        self.last_from = from;
        Ok(())
    }

    fn emit_raw(
        &mut self,
        out: &mut Out,
        from: Dir,
        at: i64,
        flags: u8,
        ack: u32,
        payload: &[u8],
    ) -> Result<i64, SimError> {
        let (scaled, timestamps, sack) = (self.scaled, self.timestamps, self.sack);
        let [up, down] = &mut self.sides;
        let (src, dst) = match from {
            Dir::Up => (up, down),
            Dir::Down => (down, up),
        };
        let at = at.max(src.last_t);
        src.last_t = at;
        let st = src.ep.stack;
        let syn = flags & SYN != 0;
        let window = if syn {
            st.syn_window
        } else if scaled {
            (st.window >> st.wscale.unwrap_or(0)).min(65_535) as u16
        } else {
            st.window.min(65_535) as u16
        };
        let mut h = TcpHeader::new(src.ep.port, dst.ep.port, src.seq, window);
        h.fin = flags & FIN != 0;
        h.syn = syn;
        h.rst = flags & RST != 0;
        h.psh = flags & PSH != 0;
        h.ack = flags & ACK != 0;
        if h.ack {
            h.acknowledgment_number = ack;
        }
        let tsval = src.ts_clock.wrapping_add((at / MS) as u32);
        let mut opts = Vec::with_capacity(6);
        if syn {
            // A SYN offers what the stack supports; the SYN-ACK grants what both support.
            let (use_sack, use_ts, use_ws) = if h.ack {
                (sack, timestamps, scaled)
            } else {
                (st.sack, st.timestamps, st.wscale.is_some())
            };
            opts.push(TcpOptionElement::MaximumSegmentSize(st.mss));
            if use_ts {
                if use_sack {
                    opts.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
                } else {
                    opts.extend([TcpOptionElement::Noop, TcpOptionElement::Noop]);
                }
                let ecr = if h.ack { src.ts_recent } else { 0 };
                opts.push(TcpOptionElement::Timestamp(tsval, ecr));
            } else if use_sack {
                opts.extend([
                    TcpOptionElement::Noop,
                    TcpOptionElement::Noop,
                    TcpOptionElement::SelectiveAcknowledgementPermitted,
                ]);
            }
            if use_ws {
                opts.extend([
                    TcpOptionElement::Noop,
                    TcpOptionElement::WindowScale(st.wscale.unwrap_or(0)),
                ]);
            }
        } else if timestamps && !h.rst {
            opts.extend([
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(tsval, src.ts_recent),
            ]);
        }
        h.set_options(&opts).map_err(build_err)?;
        if timestamps || syn {
            dst.ts_recent = tsval;
        }
        let id = src.ip_id;
        src.ip_id = id.wrapping_add(1);
        let frame = tcp_frame(&src.ep.host, &dst.ep.host, id, st.dont_fragment, h, payload)?;
        let advance = payload.len() as u32 + u32::from(syn) + u32::from(flags & FIN != 0);
        src.seq = src.seq.wrapping_add(advance);
        out.push(at, frame)?;
        Ok(at)
    }
}
