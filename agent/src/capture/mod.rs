//! Packet sources: pcap/pcapng files, live libpcap capture and the packet simulator.
//! Every source yields timestamped link-layer frames; `decode` turns a frame into the
//! fields the flow table needs.

pub mod decode;
pub mod file;
pub mod live;
pub mod sim;
pub mod writer;

pub use decode::{Decoder, PacketMeta, SkipReason};
pub use file::CaptureFile;
pub use writer::PcapWriter;

/// Link-layer header types we decode (values are the LINKTYPE_* registry numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    Null,
    Ethernet,
    /// Raw IP, version taken from the first nibble (DLT_RAW, LINKTYPE_RAW 101).
    Raw,
    Ipv4,
    Ipv6,
    LinuxSll,
    LinuxSll2,
    /// Anything else: frames are counted and skipped.
    Other(u32),
}

impl LinkType {
    pub fn from_linktype(value: u32) -> Self {
        match value {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            12 | 14 | 101 => LinkType::Raw,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    pub fn to_linktype(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll => 113,
            LinkType::LinuxSll2 => 276,
            LinkType::Other(v) => v,
        }
    }
}

/// One captured frame that owns its bytes (simulator output, channel hand-over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub link: LinkType,
    pub data: Vec<u8>,
}

impl OwnedFrame {
    pub fn as_frame(&self) -> Frame<'_> {
        Frame {
            ts_ns: self.ts_ns,
            link: self.link,
            data: &self.data,
            wire_len: self.data.len() as u32,
        }
    }
}

/// A frame borrowed from a source's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub link: LinkType,
    /// Captured bytes (may be cut short by the snap length).
    pub data: &'a [u8],
    /// Length of the frame on the wire.
    pub wire_len: u32,
}
