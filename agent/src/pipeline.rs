//! Source → decode → flow table, for files and live interfaces, with progress.

use std::path::Path;
use std::time::{Duration, Instant};

use gatewatch_proto::FlowRecord;

use crate::capture::decode::DecodeStats;
use crate::capture::file::{FileError, ReadSummary};
use crate::capture::live::{LiveCapture, LiveError, LiveOptions, LiveStats};
use crate::capture::{CaptureFile, Decoder, Frame, OwnedFrame};
use crate::flow::{FlowConfig, FlowTable, TableStats};

/// How fast to feed a file.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Pace {
    /// As fast as the machine can.
    #[default]
    Fastest,
    /// Keep the capture's own timing, scaled by `speed` (2.0 = twice as fast).
    Original { speed: f64 },
}

/// What a run did, for summaries and progress lines.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RunSummary {
    pub read: ReadSummary,
    pub decode: DecodeStats,
    pub table: TableStats,
    pub elapsed: Duration,
}

impl RunSummary {
    pub fn packets_per_second(&self) -> f64 {
        self.read.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Decoder and flow table together: the part every source shares.
#[derive(Debug)]
pub struct Extractor {
    decoder: Decoder,
    table: FlowTable,
}

impl Extractor {
    pub fn new(config: FlowConfig) -> Self {
        Extractor {
            decoder: Decoder::new(),
            table: FlowTable::new(config),
        }
    }

    #[inline]
    pub fn push(&mut self, frame: &Frame<'_>, emit: &mut impl FnMut(FlowRecord)) {
        if let Ok(pkt) = self.decoder.decode(frame) {
            self.table.process(&pkt, emit);
        }
    }

    pub fn advance(&mut self, now_ns: i64, emit: &mut impl FnMut(FlowRecord)) {
        self.table.advance(now_ns, emit);
    }

    pub fn flush(&mut self, emit: &mut impl FnMut(FlowRecord)) {
        self.table.flush(emit);
    }

    pub fn decode_stats(&self) -> DecodeStats {
        self.decoder.stats()
    }

    pub fn table_stats(&self) -> TableStats {
        self.table.stats()
    }

    /// Runs owned frames (the simulator's) through and flushes at the end.
    pub fn run_frames(&mut self, frames: &[OwnedFrame], emit: &mut impl FnMut(FlowRecord)) {
        for frame in frames {
            self.push(&frame.as_frame(), emit);
        }
        self.flush(emit);
    }
}

/// Reads a whole file into flows. `progress` is called about once a second.
/// On a read error the flows completed so far have still been emitted (nothing is
/// lost) and the summary covers them.
pub fn run_file(
    path: &Path,
    config: FlowConfig,
    pace: Pace,
    emit: &mut impl FnMut(FlowRecord),
    mut progress: impl FnMut(&RunSummary),
) -> (RunSummary, Result<(), FileError>) {
    let started = Instant::now();
    let mut extractor = Extractor::new(config);
    let mut file = match CaptureFile::open(path) {
        Ok(file) => file,
        Err(e) => return (RunSummary::default(), Err(e)),
    };
    let mut next_report = Instant::now() + Duration::from_secs(1);
    let mut seen: u64 = 0;
    let mut replay_origin: Option<(i64, Instant)> = None;
    let result = file.for_each(|frame| {
        if let Pace::Original { speed } = pace {
            let (first_ts, wall) = *replay_origin.get_or_insert((frame.ts_ns, Instant::now()));
            let offset_ns = ((frame.ts_ns - first_ts).max(0) as f64 / speed.max(1e-6)) as u64;
            let due = wall + Duration::from_nanos(offset_ns);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        extractor.push(frame, emit);
        seen += 1;
        if seen % 65_536 == 0 && Instant::now() >= next_report {
            next_report = Instant::now() + Duration::from_secs(1);
            progress(&RunSummary {
                read: ReadSummary { frames: seen, bytes: 0 },
                decode: extractor.decode_stats(),
                table: extractor.table_stats(),
                elapsed: started.elapsed(),
            });
        }
        true
    });
    extractor.flush(emit);
    let summary = |read: ReadSummary| RunSummary {
        read,
        decode: extractor.decode_stats(),
        table: extractor.table_stats(),
        elapsed: started.elapsed(),
    };
    match result {
        Ok(read) => (summary(read), Ok(())),
        Err(e) => (summary(ReadSummary { frames: seen, bytes: 0 }), Err(e)),
    }
}

/// Captures from an interface until `stop` says so, emitting flows as they complete.
/// Flow expiry follows the wall clock, so quiet links still finish their flows.
pub fn run_live(
    options: &LiveOptions,
    config: FlowConfig,
    emit: &mut impl FnMut(FlowRecord),
    mut stop: impl FnMut(&RunSummary) -> bool,
) -> Result<(RunSummary, LiveStats), LiveError> {
    let started = Instant::now();
    let mut capture = LiveCapture::open(options)?;
    let mut extractor = Extractor::new(config);
    let mut read = ReadSummary::default();
    loop {
        let summary = RunSummary {
            read,
            decode: extractor.decode_stats(),
            table: extractor.table_stats(),
            elapsed: started.elapsed(),
        };
        if stop(&summary) {
            break;
        }
        match capture.next_frame()? {
            Some(frame) => {
                read.frames += 1;
                read.bytes += u64::from(frame.wire_len);
                extractor.push(&frame, emit);
            }
            None => extractor.advance(wall_clock_ns(), emit),
        }
    }
    extractor.flush(emit);
    let stats = capture.stats();
    Ok((
        RunSummary {
            read,
            decode: extractor.decode_stats(),
            table: extractor.table_stats(),
            elapsed: started.elapsed(),
        },
        stats,
    ))
}

/// Now, in nanoseconds since the Unix epoch (the time base of live flows).
pub fn wall_clock_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}
