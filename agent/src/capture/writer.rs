//! Writes classic pcap files with nanosecond timestamps (magic a1b23c4d), which
//! Wireshark, tcpdump and libpcap all open.

use std::io::{self, Write};

use super::{Frame, LinkType};

/// Streaming pcap writer; one link type per file, as the format requires.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    link: LinkType,
    snaplen: u32,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header. Frames longer than `snaplen` are cut (their wire length kept).
    pub fn new(mut out: W, link: LinkType, snaplen: u32) -> io::Result<Self> {
        out.write_all(&0xa1b2_3c4du32.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?;
        out.write_all(&4u16.to_le_bytes())?;
        out.write_all(&0i32.to_le_bytes())?; // thiszone
        out.write_all(&0u32.to_le_bytes())?; // sigfigs
        out.write_all(&snaplen.to_le_bytes())?;
        out.write_all(&link.to_linktype().to_le_bytes())?;
        Ok(PcapWriter { out, link, snaplen })
    }

    /// Appends one frame; its link type must be the file's.
    pub fn write(&mut self, frame: &Frame<'_>) -> io::Result<()> {
        if frame.link != self.link {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("frame link type {:?} in a {:?} file", frame.link, self.link),
            ));
        }
        if frame.ts_ns < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "pcap cannot hold timestamps before 1970",
            ));
        }
        let secs = u32::try_from(frame.ts_ns / 1_000_000_000)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "timestamp beyond 2106"))?;
        let nanos = (frame.ts_ns % 1_000_000_000) as u32;
        let kept = frame.data.len().min(self.snaplen as usize);
        let wire = frame.wire_len.max(frame.data.len() as u32);
        self.out.write_all(&secs.to_le_bytes())?;
        self.out.write_all(&nanos.to_le_bytes())?;
        self.out.write_all(&(kept as u32).to_le_bytes())?;
        self.out.write_all(&wire.to_le_bytes())?;
        self.out.write_all(&frame.data[..kept])
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CaptureFile;

    #[test]
    fn written_files_read_back_with_nanoseconds_and_wire_length() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.pcap");
        let frames: Vec<(i64, Vec<u8>)> = vec![(1_000_000_123, vec![1; 80]), (2_500_000_007, vec![2; 300])];
        let mut w =
            PcapWriter::new(std::fs::File::create(&path).expect("create"), LinkType::Ethernet, 128).expect("header");
        for (ts, data) in &frames {
            w.write(&Frame {
                ts_ns: *ts,
                link: LinkType::Ethernet,
                data,
                wire_len: data.len() as u32,
            })
            .expect("write");
        }
        drop(w);
        let mut read = Vec::new();
        CaptureFile::open(&path)
            .expect("open")
            .for_each(|f| {
                read.push((f.ts_ns, f.data.len(), f.wire_len, f.link));
                true
            })
            .expect("read");
        assert_eq!(
            read,
            vec![
                (1_000_000_123, 80, 80, LinkType::Ethernet),
                (2_500_000_007, 128, 300, LinkType::Ethernet)
            ]
        );
    }

    #[test]
    fn mixed_link_types_are_refused() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 65_535).expect("header");
        let err = w
            .write(&Frame {
                ts_ns: 0,
                link: LinkType::Raw,
                data: &[0x45],
                wire_len: 1,
            })
            .expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
