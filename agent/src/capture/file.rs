//! pcap and pcapng files (also gzip-compressed), detected by magic number.
//!
//! Frames are handed to a callback while they still sit in the reader's buffer, so a
//! packet costs no allocation on the legacy pcap path.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};

use super::{Frame, LinkType};

/// Read buffer size; it must hold the largest block (pcapng blocks can reach 256 KiB).
const BUFFER_BYTES: usize = 1 << 20;

/// What can go wrong reading a capture file. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: cannot open: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("{path}: empty file")]
    Empty { path: PathBuf },
    #[error("{path}: not a pcap or pcapng file (magic {magic})")]
    NotACapture { path: PathBuf, magic: String },
    #[error("{path}: gzip-compressed, but the content is not a pcap or pcapng file")]
    GzipNotACapture { path: PathBuf },
    #[error("{path}: unsupported pcap version {major}.{minor} (2.0 to 2.4 exist)")]
    PcapVersion { path: PathBuf, major: u16, minor: u16 },
    #[error("{path}: unsupported pcapng section version {major}.{minor} (only 1.0 exists)")]
    PcapngVersion { path: PathBuf, major: u16, minor: u16 },
    #[error("{path}: pcapng interface {interface} has an unusable timestamp resolution")]
    TimestampResolution { path: PathBuf, interface: usize },
    #[error("{path}: pcapng packet refers to interface {interface}, which was never described")]
    UnknownInterface { path: PathBuf, interface: u32 },
    #[error("{path}: truncated: the last record is incomplete after {offset} bytes")]
    Truncated { path: PathBuf, offset: u64 },
    #[error("{path}: malformed at byte {offset}: {detail}")]
    Malformed { path: PathBuf, offset: u64, detail: String },
    #[error("{path}: read error: {detail}")]
    Read { path: PathBuf, detail: String },
}

/// Container format found by the magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcap { nanosecond: bool },
    Pcapng,
}

/// Totals of one pass over a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadSummary {
    pub frames: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    resolution: u64,
    offset_s: i64,
}

/// A capture file opened for one sequential pass.
pub struct CaptureFile {
    path: PathBuf,
    format: Format,
    reader: Box<dyn PcapReaderIterator + Send>,
}

impl std::fmt::Debug for CaptureFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureFile")
            .field("path", &self.path)
            .field("format", &self.format)
            .finish()
    }
}

fn magic_of(bytes: &[u8]) -> Option<Format> {
    let magic: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    match magic {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4] => Some(Format::Pcap { nanosecond: false }),
        [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d] => Some(Format::Pcap { nanosecond: true }),
        [0x0a, 0x0d, 0x0d, 0x0a] => Some(Format::Pcapng),
        _ => None,
    }
}

/// Makes every `read` fill the buffer unless the input ends: the pcap reader expects
/// its first read to hold the whole file header, which a gzip stream need not give.
struct FillingReader<R>(R);

impl<R: Read> Read for FillingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.0.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
}

fn first_bytes<R: Read>(reader: R) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(4);
    reader.take(4).read_to_end(&mut head)?;
    Ok(head)
}

impl CaptureFile {
    /// Opens `path`, detecting pcap, nanosecond pcap, pcapng and gzip by magic number.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FileError> {
        let path = path.as_ref().to_path_buf();
        let open = || {
            File::open(&path).map_err(|source| FileError::Open {
                path: path.clone(),
                source,
            })
        };
        let head = first_bytes(open()?).map_err(|e| FileError::Read {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if head.is_empty() {
            return Err(FileError::Empty { path });
        }
        if head.starts_with(&[0x1f, 0x8b]) {
            let inner = first_bytes(MultiGzDecoder::new(open()?))
                .map_err(|_| FileError::GzipNotACapture { path: path.clone() })?;
            let format = magic_of(&inner).ok_or_else(|| FileError::GzipNotACapture { path: path.clone() })?;
            let stream = FillingReader(MultiGzDecoder::new(BufReader::with_capacity(1 << 16, open()?)));
            return Self::with_stream(path, format, Box::new(stream));
        }
        let format = magic_of(&head).ok_or_else(|| FileError::NotACapture {
            path: path.clone(),
            magic: head.iter().map(|b| format!("{b:02x}")).collect(),
        })?;
        let stream = FillingReader(open()?);
        Self::with_stream(path, format, Box::new(stream))
    }

    fn with_stream(path: PathBuf, format: Format, stream: Box<dyn Read + Send>) -> Result<Self, FileError> {
        let reader = pcap_parser::create_reader(BUFFER_BYTES, stream).map_err(|e| match e {
            PcapError::Eof | PcapError::Incomplete(_) | PcapError::UnexpectedEof => FileError::Truncated {
                path: path.clone(),
                offset: 0,
            },
            other => FileError::Malformed {
                path: path.clone(),
                offset: 0,
                detail: describe(&other),
            },
        })?;
        Ok(CaptureFile { path, format, reader })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Calls `on_frame` for every packet in file order. Stops early when it returns false.
    pub fn for_each<F>(&mut self, mut on_frame: F) -> Result<ReadSummary, FileError>
    where
        F: FnMut(&Frame<'_>) -> bool,
    {
        let mut summary = ReadSummary::default();
        let mut legacy: Option<(LinkType, i64)> = None; // link type, ns per timestamp fraction unit
        let mut interfaces: Vec<Interface> = Vec::new();
        let path = self.path.clone();
        loop {
            let consumed = self.reader.consumed() as u64;
            let (offset, keep_going) = match self.reader.next() {
                Ok((offset, block)) => {
                    let keep_going = match block {
                        PcapBlockOwned::LegacyHeader(header) => {
                            // 2.4 since 1998; libpcap still reads the older 2.0-2.3 files
                            // (their records may swap caplen and len: the larger one is kept).
                            if header.version_major != 2 || header.version_minor > 4 {
                                return Err(FileError::PcapVersion {
                                    path,
                                    major: header.version_major,
                                    minor: header.version_minor,
                                });
                            }
                            let unit = if header.is_nanosecond_precision() { 1 } else { 1_000 };
                            legacy = Some((LinkType::from_linktype(header.network.0 as u32), unit));
                            true
                        }
                        PcapBlockOwned::Legacy(packet) => {
                            let (link, unit) = legacy.ok_or_else(|| FileError::Malformed {
                                path: path.clone(),
                                offset: consumed,
                                detail: "packet before file header".into(),
                            })?;
                            let ts_ns = i64::from(packet.ts_sec) * 1_000_000_000 + i64::from(packet.ts_usec) * unit;
                            summary.frames += 1;
                            summary.bytes += u64::from(packet.origlen);
                            on_frame(&Frame {
                                ts_ns,
                                link,
                                data: packet.data,
                                wire_len: packet.origlen.max(packet.caplen),
                            })
                        }
                        PcapBlockOwned::NG(Block::SectionHeader(shb)) => {
                            if shb.major_version != 1 || shb.minor_version != 0 {
                                return Err(FileError::PcapngVersion {
                                    path,
                                    major: shb.major_version,
                                    minor: shb.minor_version,
                                });
                            }
                            interfaces.clear();
                            true
                        }
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let resolution =
                                idb.ts_resolution()
                                    .filter(|r| *r > 0)
                                    .ok_or(FileError::TimestampResolution {
                                        path: path.clone(),
                                        interface: interfaces.len(),
                                    })?;
                            interfaces.push(Interface {
                                link: LinkType::from_linktype(idb.linktype.0 as u32),
                                resolution,
                                offset_s: idb.ts_offset(),
                            });
                            true
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                            let iface = *interfaces.get(epb.if_id as usize).ok_or(FileError::UnknownInterface {
                                path: path.clone(),
                                interface: epb.if_id,
                            })?;
                            let ticks = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                            let ns = i64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(iface.resolution))
                                .unwrap_or(i64::MAX);
                            let ts_ns = ns.saturating_add(iface.offset_s.saturating_mul(1_000_000_000));
                            summary.frames += 1;
                            summary.bytes += u64::from(epb.origlen);
                            on_frame(&Frame {
                                ts_ns,
                                link: iface.link,
                                data: epb.data,
                                wire_len: epb.origlen.max(epb.caplen),
                            })
                        }
                        PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                            // Simple packets carry no timestamp; they belong to interface 0.
                            let iface = *interfaces.first().ok_or(FileError::UnknownInterface {
                                path: path.clone(),
                                interface: 0,
                            })?;
                            summary.frames += 1;
                            summary.bytes += u64::from(spb.origlen);
                            on_frame(&Frame {
                                ts_ns: 0,
                                link: iface.link,
                                data: spb.data,
                                wire_len: spb.origlen,
                            })
                        }
                        PcapBlockOwned::NG(_) => true,
                    };
                    (offset, keep_going)
                }
                Err(PcapError::Eof) => return Ok(summary),
                Err(PcapError::Incomplete(_)) => {
                    // Needs more bytes: once the input is exhausted, next() says Eof or UnexpectedEof.
                    self.reader.refill().map_err(|e| FileError::Read {
                        path: path.clone(),
                        detail: describe(&e),
                    })?;
                    continue;
                }
                Err(PcapError::UnexpectedEof) => return Err(FileError::Truncated { path, offset: consumed }),
                Err(e) => {
                    return Err(FileError::Malformed {
                        path,
                        offset: consumed,
                        detail: describe(&e),
                    })
                }
            };
            self.reader.consume(offset);
            if !keep_going {
                return Ok(summary);
            }
        }
    }
}

fn describe<I>(e: &PcapError<I>) -> String {
    match e {
        PcapError::Eof => "end of file".into(),
        PcapError::BufferTooSmall => "a record is larger than 1 MiB".into(),
        PcapError::UnexpectedEof => "unexpected end of file".into(),
        PcapError::ReadError => "read failed".into(),
        PcapError::Incomplete(_) => "incomplete record".into(),
        PcapError::HeaderNotRecognized => "header not recognised".into(),
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => format!("invalid record ({kind:?})"),
    }
}
