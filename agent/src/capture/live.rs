//! Live capture from a network interface through libpcap (the `pcap` crate).

use pcap::{Active, Capture, Precision};

use super::{Frame, LinkType};

/// How to open an interface.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub interface: String,
    /// BPF filter expression (tcpdump syntax); empty means everything.
    pub filter: String,
    pub snaplen: i32,
    pub promiscuous: bool,
    /// Deliver packets as they arrive instead of filling the kernel buffer first.
    pub immediate: bool,
    /// How long a read may wait; bounds how late flow expiry runs on a quiet link.
    pub read_timeout_ms: i32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            interface: String::new(),
            filter: String::new(),
            snaplen: 65_535,
            promiscuous: true,
            immediate: true,
            read_timeout_ms: 200,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("interface {interface}: no such interface (available: {available})")]
    NoSuchInterface { interface: String, available: String },
    #[error("interface {interface}: cannot open: {detail}")]
    Open { interface: String, detail: String },
    #[error("interface {interface}: invalid BPF filter {filter:?}: {detail}")]
    Filter {
        interface: String,
        filter: String,
        detail: String,
    },
    #[error("interface {interface}: capture failed: {detail}")]
    Read { interface: String, detail: String },
}

/// Kernel and libpcap drop counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveStats {
    pub received: u32,
    pub dropped: u32,
    pub if_dropped: u32,
}

/// An open live capture.
pub struct LiveCapture {
    interface: String,
    link: LinkType,
    capture: Capture<Active>,
    read_timeout_ms: i32,
    /// The last read found nothing: wait on the descriptor before the next.
    drained: bool,
}

impl std::fmt::Debug for LiveCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCapture")
            .field("interface", &self.interface)
            .field("link", &self.link)
            .finish()
    }
}

impl LiveCapture {
    pub fn open(options: &LiveOptions) -> Result<Self, LiveError> {
        let interface = options.interface.clone();
        let devices = pcap::Device::list().map_err(|e| LiveError::Open {
            interface: interface.clone(),
            detail: e.to_string(),
        })?;
        let Some(device) = devices.iter().find(|d| d.name == interface).cloned() else {
            let available = devices.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ");
            return Err(LiveError::NoSuchInterface { interface, available });
        };
        let open_err = |e: pcap::Error| LiveError::Open {
            interface: interface.clone(),
            detail: e.to_string(),
        };
        let mut capture = Capture::from_device(device)
            .map_err(open_err)?
            .snaplen(options.snaplen)
            .promisc(options.promiscuous)
            .immediate_mode(options.immediate)
            .timeout(options.read_timeout_ms)
            .precision(Precision::Nano)
            .open()
            .map_err(open_err)?
            // libpcap ignores the read timeout in immediate mode on Linux (a read on a quiet
            // link would block for good): reads never block, and next_frame waits itself.
            .setnonblock()
            .map_err(open_err)?;
        if !options.filter.trim().is_empty() {
            capture.filter(&options.filter, true).map_err(|e| LiveError::Filter {
                interface: interface.clone(),
                filter: options.filter.clone(),
                detail: e.to_string(),
            })?;
        }
        let link = LinkType::from_linktype(capture.get_datalink().0 as u32);
        Ok(LiveCapture {
            interface,
            link,
            capture,
            read_timeout_ms: options.read_timeout_ms.max(1),
            drained: false,
        })
    }

    pub fn link(&self) -> LinkType {
        self.link
    }

    /// Waits up to the read timeout for one packet. `Ok(None)` means the timeout passed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, LiveError> {
        if self.drained {
            use rustix::event::{poll, PollFd, PollFlags, Timespec};
            let timeout = Timespec {
                tv_sec: i64::from(self.read_timeout_ms / 1000),
                tv_nsec: i64::from(self.read_timeout_ms % 1000) * 1_000_000,
            };
            let mut fds = [PollFd::new(&self.capture, PollFlags::IN)];
            match poll(&mut fds, Some(&timeout)) {
                Ok(0) => return Ok(None),
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    return Err(LiveError::Read {
                        interface: self.interface.clone(),
                        detail: e.to_string(),
                    })
                }
            }
        }
        self.drained = false;
        match self.capture.next_packet() {
            Ok(packet) => {
                let ts = packet.header.ts;
                // Opened with nanosecond precision, so tv_usec holds nanoseconds. time_t is
                // 32-bit on armhf, hence the conversions.
                #[allow(clippy::useless_conversion)]
                let ts_ns = i64::from(ts.tv_sec) * 1_000_000_000 + i64::from(ts.tv_usec);
                Ok(Some(Frame {
                    ts_ns,
                    link: self.link,
                    data: packet.data,
                    wire_len: packet.header.len,
                }))
            }
            Err(pcap::Error::TimeoutExpired) => {
                self.drained = true;
                Ok(None)
            }
            Err(e) => Err(LiveError::Read {
                interface: self.interface.clone(),
                detail: e.to_string(),
            }),
        }
    }

    pub fn stats(&mut self) -> LiveStats {
        self.capture
            .stats()
            .map(|s| LiveStats {
                received: s.received,
                dropped: s.dropped,
                if_dropped: s.if_dropped,
            })
            .unwrap_or_default()
    }
}
