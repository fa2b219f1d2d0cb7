//! The disk spool: what the agent would have sent while the hub was unreachable, kept in
//! order on disk until the hub acknowledges it.
//!
//! Records go into append-only segment files named after the sequence number of their first
//! record (`00000000000000000042.seg`); each record is `[len u32][crc32 u32][payload]`, little
//! endian. Delivery is at least once: the last acknowledged sequence number is persisted
//! (`acked`, replaced atomically), records after it are sent again after a crash, and the
//! hub's idempotent inserts make that harmless. A segment is deleted once every record in it
//! is acknowledged. When the spool reaches its size cap it either refuses new records or
//! drops the oldest segment; both are counted, never silent. A torn record at the end of the
//! last segment (power loss mid-write) is cut off at open.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 8;
const SUFFIX: &str = "seg";
const ACKED_FILE: &str = "acked";
/// Larger records are refused: the hub's batches are far smaller.
pub const MAX_RECORD: usize = 16 * 1024 * 1024;

/// When records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// After every append: nothing acknowledged by `append` is lost on power failure.
    Always,
    /// When the caller calls [`Spool::sync`] (e.g. every second), and at rotation.
    #[default]
    Periodic,
    /// Leave it to the OS (a process crash loses nothing; a power cut may).
    Never,
}

/// What to do when the spool holds `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Keep the oldest data; new records are refused (counted as `dropped_new`).
    RejectNew,
    /// Keep the newest data; the oldest segment is deleted (its records counted as `dropped_old`).
    #[default]
    DropOldest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolConfig {
    pub max_bytes: u64,
    pub segment_bytes: u64,
    pub fsync: Fsync,
    pub when_full: WhenFull,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: 256 * 1024 * 1024,
            segment_bytes: 8 * 1024 * 1024,
            fsync: Fsync::default(),
            when_full: WhenFull::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("record of {0} bytes is larger than the spool's limit of {MAX_RECORD}")]
    TooLarge(usize),
    #[error("spool config: {0}")]
    Config(String),
}

/// Counters for metrics and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Records waiting for acknowledgement.
    pub pending_records: u64,
    /// Bytes of the segment files (acknowledged records share files with pending ones).
    pub disk_bytes: u64,
    pub appended: u64,
    pub acked: u64,
    pub dropped_new: u64,
    pub dropped_old: u64,
    /// Records lost to a failed checksum or a torn tail found at open or while reading.
    pub corrupt: u64,
    pub segments: usize,
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    /// Records and bytes written to it.
    records: u64,
    bytes: u64,
}

/// Where the next read starts: record `seq`, at byte `offset` of the segment that starts at
/// `segment` (the active segment keeps growing under the cursor).
#[derive(Debug, Clone, Copy)]
struct Cursor {
    seq: u64,
    segment: u64,
    offset: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    segments: VecDeque<Segment>,
    writer: Option<BufWriter<File>>,
    next_seq: u64,
    acked_seq: u64,
    /// Reads run ahead of acknowledgements (records in flight); [`Spool::rewind`] goes back.
    read: Cursor,
    total_bytes: u64,
    stats: SpoolStats,
}

impl Spool {
    /// Opens (or creates) the spool in `dir`, repairing a torn tail.
    pub fn open(dir: &Path, config: SpoolConfig) -> Result<Spool, SpoolError> {
        if config.segment_bytes == 0 || config.max_bytes < config.segment_bytes {
            return Err(SpoolError::Config(format!(
                "max_bytes ({}) must be at least segment_bytes ({}), and both above 0",
                config.max_bytes, config.segment_bytes
            )));
        }
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let acked_seq = read_acked(dir)?;
        let mut firsts: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(first) = name
                .strip_suffix(&format!(".{SUFFIX}"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                firsts.push(first);
            } else if name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        firsts.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            config,
            segments: VecDeque::new(),
            writer: None,
            next_seq: acked_seq + 1,
            acked_seq,
            read: Cursor {
                seq: acked_seq + 1,
                segment: acked_seq + 1,
                offset: 0,
            },
            total_bytes: 0,
            stats: SpoolStats::default(),
        };
        let last = firsts.len().saturating_sub(1);
        for (i, first) in firsts.into_iter().enumerate() {
            let path = spool.segment_path(first);
            let (records, bytes, corrupt) = scan(&path)?;
            if corrupt > 0 || i == last {
                // Cut a torn or corrupt tail so appends continue after the last good record.
                let file = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                file.set_len(bytes).map_err(io_err(&path))?;
            }
            spool.stats.corrupt += corrupt;
            let segment = Segment {
                first_seq: first,
                records,
                bytes,
            };
            if records == 0 || first + records - 1 <= acked_seq {
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            spool.next_seq = spool.next_seq.max(first + records);
            spool.total_bytes += bytes;
            spool.segments.push_back(segment);
        }
        spool.read = spool.cursor_after_ack()?;
        spool.stats.segments = spool.segments.len();
        Ok(spool)
    }

    pub fn stats(&self) -> SpoolStats {
        let pending = self.next_seq - 1 - self.acked_seq.min(self.next_seq - 1);
        SpoolStats {
            pending_records: pending,
            disk_bytes: self.total_bytes,
            segments: self.segments.len(),
            ..self.stats
        }
    }

    /// The sequence number the next appended record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// True when nothing waits for acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.stats().pending_records == 0
    }

    /// Appends a record; returns its sequence number, or `None` if the spool is full and
    /// configured to refuse new records.
    pub fn append(&mut self, payload: &[u8]) -> Result<Option<u64>, SpoolError> {
        if payload.len() > MAX_RECORD {
            return Err(SpoolError::TooLarge(payload.len()));
        }
        let size = (HEADER + payload.len()) as u64;
        while self.total_bytes + size > self.config.max_bytes && !self.segments.is_empty() {
            match self.config.when_full {
                WhenFull::RejectNew => {
                    self.stats.dropped_new += 1;
                    return Ok(None);
                }
                WhenFull::DropOldest => self.drop_oldest()?,
            }
        }
        if self.writer.is_none()
            || self
                .segments
                .back()
                .is_some_and(|s| s.bytes + size > self.config.segment_bytes)
        {
            self.rotate(size)?;
        }
        let seq = self.next_seq;
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        let path = self.active_path();
        let writer = self
            .writer
            .as_mut()
            .ok_or_else(|| SpoolError::Config("no active segment".into()))?;
        let io_err = |source| SpoolError::Io {
            path: path.clone(),
            source,
        };
        writer.write_all(&header).map_err(io_err)?;
        writer.write_all(payload).map_err(io_err)?;
        if self.config.fsync == Fsync::Always {
            writer.flush().map_err(io_err)?;
            writer.get_ref().sync_data().map_err(io_err)?;
        }
        if let Some(segment) = self.segments.back_mut() {
            segment.records += 1;
            segment.bytes += size;
        }
        self.total_bytes += size;
        self.next_seq += 1;
        self.stats.appended += 1;
        Ok(Some(seq))
    }

    /// Flushes buffered records to the file and the disk.
    pub fn sync(&mut self) -> Result<(), SpoolError> {
        let path = self.active_path();
        if let Some(w) = self.writer.as_mut() {
            let io_err = |source| SpoolError::Io {
                path: path.clone(),
                source,
            };
            w.flush().map_err(io_err)?;
            if self.config.fsync != Fsync::Never {
                w.get_ref().sync_data().map_err(io_err)?;
            }
        }
        Ok(())
    }

    /// Reads up to `max_records` records (and about `max_bytes`) after the last one read.
    pub fn read_batch(&mut self, max_records: usize, max_bytes: usize) -> Result<Vec<Record>, SpoolError> {
        self.flush_writer()?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_records && bytes < max_bytes && self.read.seq < self.next_seq {
            let Some(index) = self.segment_of(self.read.seq) else {
                break;
            };
            let (first_seq, records) = (self.segments[index].first_seq, self.segments[index].records);
            if self.read.segment != first_seq {
                self.read = Cursor {
                    seq: self.read.seq,
                    segment: first_seq,
                    offset: self.offset_of(first_seq, self.read.seq)?,
                };
            }
            let path = self.segment_path(first_seq);
            let end_seq = first_seq + records;
            let file = File::open(&path).map_err(|source| SpoolError::Io {
                path: path.clone(),
                source,
            })?;
            let mut reader = BufReader::new(file);
            reader
                .seek(SeekFrom::Start(self.read.offset))
                .map_err(|source| SpoolError::Io {
                    path: path.clone(),
                    source,
                })?;
            while out.len() < max_records && bytes < max_bytes && self.read.seq < end_seq {
                match read_record(&mut reader) {
                    Ok(Some(payload)) => {
                        self.read.offset += (HEADER + payload.len()) as u64;
                        bytes += payload.len();
                        out.push(Record {
                            seq: self.read.seq,
                            payload,
                        });
                        self.read.seq += 1;
                    }
                    Ok(None) | Err(_) => {
                        // Damaged after it was written: skip the rest of this segment.
                        self.stats.corrupt += end_seq - self.read.seq;
                        self.read.seq = end_seq;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Everything up to and including `seq` was delivered: persist that and delete
    /// segments that hold nothing else.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        let seq = seq.min(self.next_seq - 1);
        if seq <= self.acked_seq {
            return Ok(());
        }
        self.stats.acked += seq - self.acked_seq;
        self.acked_seq = seq;
        write_acked(&self.dir, seq, self.config.fsync != Fsync::Never)?;
        while let Some(first) = self.segments.front() {
            if first.records == 0 || first.first_seq + first.records - 1 > seq {
                break;
            }
            self.remove_front()?;
        }
        if self.read.seq <= seq {
            self.read = self.cursor_after_ack()?;
        }
        Ok(())
    }

    /// Forgets reads that were not acknowledged: they are read again (e.g. after a reconnect).
    pub fn rewind(&mut self) -> Result<(), SpoolError> {
        self.read = self.cursor_after_ack()?;
        Ok(())
    }

    fn cursor_after_ack(&mut self) -> Result<Cursor, SpoolError> {
        self.flush_writer()?;
        let seq = (self.acked_seq + 1).max(self.segments.front().map_or(0, |s| s.first_seq));
        let Some(index) = self.segment_of(seq) else {
            // Nothing unacknowledged is on disk: the next record starts a new segment.
            return Ok(Cursor {
                seq,
                segment: seq,
                offset: 0,
            });
        };
        let first_seq = self.segments[index].first_seq;
        Ok(Cursor {
            seq,
            segment: first_seq,
            offset: self.offset_of(first_seq, seq)?,
        })
    }

    /// Buffered appends reach the file (not necessarily the disk) before it is read.
    fn flush_writer(&mut self) -> Result<(), SpoolError> {
        if let Some(w) = self.writer.as_mut() {
            w.flush().map_err(|source| SpoolError::Io {
                path: self.dir.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Byte offset of record `seq` in the segment starting at `first_seq`.
    fn offset_of(&self, first_seq: u64, seq: u64) -> Result<u64, SpoolError> {
        let skip = seq.saturating_sub(first_seq);
        if skip == 0 {
            return Ok(0);
        }
        let path = self.segment_path(first_seq);
        let io_err = |source| SpoolError::Io {
            path: path.clone(),
            source,
        };
        let mut reader = BufReader::new(File::open(&path).map_err(io_err)?);
        let mut offset = 0u64;
        for _ in 0..skip {
            let mut header = [0u8; HEADER];
            reader.read_exact(&mut header).map_err(io_err)?;
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
            reader.seek_relative(len as i64).map_err(io_err)?;
            offset += HEADER as u64 + len;
        }
        Ok(offset)
    }

    fn segment_of(&self, seq: u64) -> Option<usize> {
        self.segments
            .iter()
            .position(|s| seq >= s.first_seq && seq < s.first_seq + s.records)
    }

    fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.dir.join(format!("{first_seq:020}.{SUFFIX}"))
    }

    fn active_path(&self) -> PathBuf {
        self.segments
            .back()
            .map_or_else(|| self.dir.clone(), |s| self.segment_path(s.first_seq))
    }

    /// Opens the segment the next record goes to: the last one if it was reopened after a
    /// restart and has room (or is empty), else a new one starting at `next_seq`.
    fn rotate(&mut self, size: u64) -> Result<(), SpoolError> {
        self.sync()?;
        let reuse = match self.segments.back() {
            Some(s) if s.records == 0 => true,
            Some(s) => self.writer.is_none() && s.bytes + size <= self.config.segment_bytes,
            None => false,
        };
        if !reuse {
            self.segments.push_back(Segment {
                first_seq: self.next_seq,
                records: 0,
                bytes: 0,
            });
        }
        let path = self.active_path();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| SpoolError::Io { path, source })?;
        self.writer = Some(BufWriter::with_capacity(64 * 1024, file));
        self.stats.segments = self.segments.len();
        Ok(())
    }

    fn drop_oldest(&mut self) -> Result<(), SpoolError> {
        let Some(front) = self.segments.front() else {
            return Ok(());
        };
        let unacked_from = front.first_seq.max(self.acked_seq + 1);
        let end = front.first_seq + front.records;
        self.stats.dropped_old += end.saturating_sub(unacked_from);
        // Everything in it counts as settled: moving the ack mark past it keeps the order.
        if end > 0 && end - 1 > self.acked_seq {
            self.acked_seq = end - 1;
            write_acked(&self.dir, self.acked_seq, self.config.fsync != Fsync::Never)?;
        }
        self.remove_front()?;
        if self.read.seq < end {
            self.read = self.cursor_after_ack()?;
        }
        Ok(())
    }

    fn remove_front(&mut self) -> Result<(), SpoolError> {
        if let Some(segment) = self.segments.pop_front() {
            let path = self.segment_path(segment.first_seq);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(SpoolError::Io { path, source }),
            }
            self.total_bytes -= segment.bytes;
            if self.segments.is_empty() {
                self.writer = None;
            }
        }
        self.stats.segments = self.segments.len();
        Ok(())
    }
}

/// Reads one record: `Ok(None)` at a clean end, `Err` for a torn or corrupt record.
fn read_record(reader: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; HEADER];
    let mut filled = 0;
    while filled < HEADER {
        let n = reader.read(&mut header[filled..])?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        filled += n;
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "record length out of range"));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload)?;
    if crc32fast::hash(&payload) != crc {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "checksum mismatch"));
    }
    Ok(Some(payload))
}

/// Counts the good records of a segment: (records, bytes up to the last good one, records lost).
fn scan(path: &Path) -> Result<(u64, u64, u64), SpoolError> {
    let file = File::open(path).map_err(|source| SpoolError::Io {
        path: path.into(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let (mut records, mut bytes) = (0u64, 0u64);
    loop {
        match read_record(&mut reader) {
            Ok(Some(payload)) => {
                records += 1;
                bytes += (HEADER + payload.len()) as u64;
            }
            Ok(None) => return Ok((records, bytes, 0)),
            // A torn tail is one lost record; what follows a corrupt one cannot be framed.
            Err(_) => return Ok((records, bytes, 1)),
        }
    }
}

/// The last acknowledged sequence number. An empty or torn file (a power cut between the
/// write and its rename on a file system that reorders them) counts as nothing acknowledged:
/// every record still on disk is sent again, and the hub's idempotent inserts drop the copies.
/// A spool that refused to open would stop the agent from reporting at all.
fn read_acked(dir: &Path) -> Result<u64, SpoolError> {
    let path = dir.join(ACKED_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse().unwrap_or_else(|_| {
            tracing::warn!(path = %path.display(), content = %text.escape_debug(), "unreadable spool acknowledgement; everything on disk will be sent again");
            0
        })),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(0),
        Err(source) => Err(SpoolError::Io { path, source }),
    }
}

/// Replaces the acknowledgement file: fsynced (file and directory) unless the spool runs
/// with `fsync = never`.
fn write_acked(dir: &Path, seq: u64, durable: bool) -> Result<(), SpoolError> {
    let path = dir.join(ACKED_FILE);
    let io_err = |source| SpoolError::Io {
        path: path.clone(),
        source,
    };
    if durable {
        return crate::state_file::write_atomic(&path, seq.to_string().as_bytes(), false).map_err(io_err);
    }
    let tmp = dir.join(format!("{ACKED_FILE}.tmp"));
    fs::write(&tmp, seq.to_string()).map_err(io_err)?;
    fs::rename(&tmp, &path).map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            max_bytes,
            segment_bytes,
            fsync: Fsync::Never,
            when_full: WhenFull::DropOldest,
        }
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("record {i:06}").into_bytes()
    }

    fn seqs(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn records_come_back_in_order_and_acked_segments_are_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), config(1 << 20, 100)).expect("open");
        for i in 1..=20 {
            assert_eq!(spool.append(&payload(i)).expect("append"), Some(i));
        }
        assert!(spool.stats().segments > 3, "small segments rotate: {:?}", spool.stats());
        let first = spool.read_batch(5, usize::MAX).expect("read");
        assert_eq!(seqs(&first), [1, 2, 3, 4, 5]);
        assert_eq!(first[0].payload, payload(1));
        let second = spool.read_batch(100, usize::MAX).expect("read");
        assert_eq!(seqs(&second), (6..=20).collect::<Vec<_>>());
        spool.ack(20).expect("ack");
        assert!(spool.is_empty());
        let files: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == SUFFIX))
            .collect();
        assert!(files.is_empty(), "acknowledged segments are deleted: {files:?}");
        assert_eq!(spool.append(b"more").expect("append"), Some(21));
    }

    #[test]
    fn unacknowledged_records_survive_a_restart_and_a_rewind() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut spool = Spool::open(dir.path(), config(1 << 20, 64)).expect("open");
            for i in 1..=10 {
                spool.append(&payload(i)).expect("append");
            }
            let batch = spool.read_batch(4, usize::MAX).expect("read");
            spool.ack(batch[3].seq).expect("ack");
            // 5..=7 are in flight when the connection drops.
            assert_eq!(seqs(&spool.read_batch(3, usize::MAX).expect("read")), [5, 6, 7]);
            spool.rewind().expect("rewind");
            assert_eq!(seqs(&spool.read_batch(2, usize::MAX).expect("read")), [5, 6]);
            spool.sync().expect("sync");
        }
        let mut spool = Spool::open(dir.path(), config(1 << 20, 64)).expect("reopen");
        assert_eq!(spool.stats().pending_records, 6);
        let rest = spool.read_batch(100, usize::MAX).expect("read");
        assert_eq!(seqs(&rest), (5..=10).collect::<Vec<_>>());
        assert_eq!(rest[0].payload, payload(5));
        // New records continue the numbering.
        assert_eq!(spool.append(b"after").expect("append"), Some(11));
    }

    #[test]
    fn an_empty_or_torn_acknowledgement_file_resends_instead_of_refusing_to_open() {
        for broken in [&b""[..], b"12\x00\x00", b"garbage"] {
            let dir = tempfile::tempdir().expect("tempdir");
            {
                let mut spool = Spool::open(dir.path(), config(1 << 20, 1 << 20)).expect("open");
                for i in 1..=6 {
                    spool.append(&payload(i)).expect("append");
                }
                let batch = spool.read_batch(4, usize::MAX).expect("read");
                spool.ack(batch[3].seq).expect("ack");
                spool.sync().expect("sync");
            }
            // Power lost between the acknowledgement's write and its data reaching the disk.
            std::fs::write(dir.path().join(ACKED_FILE), broken).expect("truncate");
            let mut spool = Spool::open(dir.path(), config(1 << 20, 1 << 20)).expect("opens anyway");
            let again = spool.read_batch(100, usize::MAX).expect("read");
            // Nothing is lost: what was acknowledged comes again (the hub drops the copies).
            assert_eq!(seqs(&again), (1..=6).collect::<Vec<_>>(), "{broken:?}");
            assert_eq!(spool.append(b"after").expect("append"), Some(7));
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let mut spool = Spool::open(dir.path(), config(1 << 20, 1 << 20)).expect("open");
            for i in 1..=3 {
                spool.append(&payload(i)).expect("append");
            }
            spool.sync().expect("sync");
        }
        let segment = dir.path().join(format!("{:020}.{SUFFIX}", 1));
        let mut bytes = fs::read(&segment).expect("segment");
        bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2]);
        fs::write(&segment, &bytes).expect("tear");
        let mut spool = Spool::open(dir.path(), config(1 << 20, 1 << 20)).expect("reopen");
        assert_eq!(spool.stats().corrupt, 1);
        assert_eq!(spool.append(b"next").expect("append"), Some(4));
        let all = spool.read_batch(10, usize::MAX).expect("read");
        assert_eq!(seqs(&all), [1, 2, 3, 4]);
        assert_eq!(all[3].payload, b"next");
    }

    #[test]
    fn a_full_spool_follows_its_policy_and_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = (HEADER + payload(0).len()) as u64;
        let mut oldest = Spool::open(dir.path(), config(record * 8, record * 2)).expect("open");
        for i in 1..=20 {
            assert!(oldest.append(&payload(i)).expect("append").is_some());
        }
        let s = oldest.stats();
        assert!(s.disk_bytes <= record * 8, "{s:?}");
        assert_eq!(s.dropped_old + s.pending_records, 20, "{s:?}");
        let kept = oldest.read_batch(100, usize::MAX).expect("read");
        assert_eq!(kept.last().map(|r| r.seq), Some(20), "the newest are kept");

        let dir = tempfile::tempdir().expect("tempdir");
        let mut reject = Spool::open(
            dir.path(),
            SpoolConfig {
                when_full: WhenFull::RejectNew,
                ..config(record * 8, record * 2)
            },
        )
        .expect("open");
        let stored = (1..=20)
            .filter(|&i| reject.append(&payload(i)).expect("append").is_some())
            .count();
        assert_eq!(stored, 8);
        assert_eq!(reject.stats().dropped_new, 12);
        let kept = reject.read_batch(100, usize::MAX).expect("read");
        assert_eq!(seqs(&kept), (1..=8).collect::<Vec<_>>(), "the oldest are kept");
    }

    #[test]
    fn bad_settings_and_oversized_records_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Spool::open(dir.path(), config(10, 100)),
            Err(SpoolError::Config(_))
        ));
        let mut spool = Spool::open(dir.path(), config(64 << 20, 32 << 20)).expect("open");
        assert!(matches!(
            spool.append(&vec![0; MAX_RECORD + 1]),
            Err(SpoolError::TooLarge(_))
        ));
    }
}
