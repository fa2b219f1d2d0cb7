//! The local training set: labelled windows of this gateway's own traffic, kept in
//! `state_dir/fl/local.bin` under a size cap (oldest out) and never sent anywhere.
//!
//! Windows come from three places (see [`Source`]): benign pseudo-labels (windows the active
//! model scored benign with high confidence on a device that had no flagged window nearby in
//! time), windows of attack-simulation sessions run on this gateway (labelled by the
//! simulator's ground truth), and operator verdicts relayed by the hub. Attack windows the
//! agent synthesises for a round are made fresh each time from the stored benign windows (see
//! `synth`) and not stored. Each window is assigned to training or validation once, when it
//! arrives, so a round's before/after figures are measured on the same windows.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use gatewatch_models::{Family, Window, FAMILIES, FAMILY_COUNT, FEATURE_COUNT, WINDOW};

/// Where a window's label comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Scored benign with high confidence, no flagged window on the device nearby.
    Pseudo = 0,
    /// An attack-simulation session's window, labelled by the simulator.
    Simulated = 1,
    /// An operator's verdict on an alert.
    Operator = 2,
}

impl Source {
    fn from_code(c: u8) -> Option<Source> {
        [Source::Pseudo, Source::Simulated, Source::Operator]
            .into_iter()
            .find(|s| *s as u8 == c)
    }
}

/// One labelled window.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Raw features, oldest flow first; the first `padded` rows are padding.
    pub window: Box<Window>,
    pub padded: u8,
    pub family: Family,
    pub source: Source,
    pub device: IpAddr,
    /// Held out for validation.
    pub validation: bool,
    pub ts_ms: i64,
}

const MAGIC: &[u8; 8] = b"GWFLSET1";
const RECORD: usize = 1 + 1 + 1 + 1 + 8 + 16 + WINDOW * FEATURE_COUNT * 4;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a local training set ({reason}); delete it to start a new one")]
    Corrupt { path: PathBuf, reason: String },
}

/// The local set, in arrival order.
#[derive(Debug)]
pub struct LocalSet {
    path: PathBuf,
    cap: usize,
    validation_fraction: f64,
    entries: VecDeque<Entry>,
    /// Windows added since the last save.
    dirty: usize,
    /// Counter feeding the train/validation assignment.
    seen: u64,
}

impl LocalSet {
    /// Opens the set in `dir` (created if missing); a set larger than `cap` loses its oldest.
    pub fn open(dir: &Path, cap: usize, validation_fraction: f64) -> Result<LocalSet, DatasetError> {
        let path = dir.join("local.bin");
        let io = |source| DatasetError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| DatasetError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let entries = match std::fs::read(&path) {
            Ok(bytes) => decode(&bytes).map_err(|reason| DatasetError::Corrupt {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => VecDeque::new(),
            Err(e) => return Err(io(e)),
        };
        let mut set = LocalSet {
            seen: entries.len() as u64,
            path,
            cap: cap.max(1),
            validation_fraction: validation_fraction.clamp(0.0, 0.9),
            entries,
            dirty: 0,
        };
        set.trim();
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Windows added since the last save.
    pub fn unsaved(&self) -> usize {
        self.dirty
    }

    /// Adds a window; the validation flag is drawn here (every k-th window, k from the
    /// fraction, so the split is even over time and devices).
    pub fn add(&mut self, window: Box<Window>, padded: u8, family: Family, source: Source, device: IpAddr, ts_ms: i64) {
        self.seen += 1;
        let every = if self.validation_fraction > 0.0 {
            (1.0 / self.validation_fraction).round().max(2.0) as u64
        } else {
            u64::MAX
        };
        self.entries.push_back(Entry {
            window,
            padded: padded.min(WINDOW as u8 - 1),
            family,
            source,
            device,
            validation: self.seen % every == 0,
            ts_ms,
        });
        self.dirty += 1;
        self.trim();
    }

    /// Over the cap, the family with the most windows gives one up, so that a flood of one
    /// kind (an attack-simulation session scores thousands of windows) replaces its own windows
    /// and never the others. Within benign, the oldest pseudo-label of the device with the most
    /// goes first (one chatty device must not crowd out the others); operators' labels go last.
    fn trim(&mut self) {
        while self.entries.len() > self.cap {
            let mut per_family = [0usize; FAMILY_COUNT];
            for e in &self.entries {
                per_family[e.family.index()] += 1;
            }
            let Some(largest) = FAMILIES
                .iter()
                .copied()
                .max_by_key(|f| (per_family[f.index()], f.index()))
            else {
                return;
            };
            let chattiest = (largest == Family::Benign)
                .then(|| {
                    let mut per_device: HashMap<IpAddr, usize> = HashMap::new();
                    for e in self.entries.iter().filter(|e| e.source == Source::Pseudo) {
                        *per_device.entry(e.device).or_default() += 1;
                    }
                    per_device.into_iter().max_by_key(|(ip, n)| (*n, *ip)).map(|(ip, _)| ip)
                })
                .flatten();
            let of_family = |e: &Entry| e.family == largest;
            let victim = chattiest
                .and_then(|ip| {
                    self.entries
                        .iter()
                        .position(|e| of_family(e) && e.source == Source::Pseudo && e.device == ip)
                })
                .or_else(|| {
                    self.entries
                        .iter()
                        .position(|e| of_family(e) && e.source != Source::Operator)
                })
                .or_else(|| self.entries.iter().position(of_family))
                .unwrap_or(0);
            self.entries.remove(victim);
        }
    }

    /// Windows per family (train and validation together), for status and metrics.
    pub fn composition(&self) -> std::collections::BTreeMap<String, u32> {
        let mut out = std::collections::BTreeMap::new();
        for e in &self.entries {
            *out.entry(e.family.name().to_string()).or_insert(0) += 1;
        }
        out
    }

    /// Writes the set atomically (file and directory fsynced).
    pub fn save(&mut self) -> Result<(), DatasetError> {
        let bytes = encode(&self.entries);
        crate::state_file::write_atomic(&self.path, &bytes, true).map_err(|source| DatasetError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.dirty = 0;
        Ok(())
    }

    /// Deletes the set from disk and memory (`gatewatch-agent purge`).
    pub fn purge(dir: &Path) -> std::io::Result<()> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

fn encode(entries: &VecDeque<Entry>) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 8 + entries.len() * RECORD);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        out.push(e.family.index() as u8);
        out.push(e.source as u8);
        out.push(e.padded);
        out.push(u8::from(e.validation));
        out.extend_from_slice(&e.ts_ms.to_le_bytes());
        let ip = match e.device {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        out.extend_from_slice(&ip.octets());
        for row in e.window.iter() {
            for v in row {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

fn decode(bytes: &[u8]) -> Result<VecDeque<Entry>, String> {
    let body = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| "wrong magic".to_string())?;
    let (count, records) = body.split_at_checked(8).ok_or("truncated header")?;
    let count = u64::from_le_bytes(count.try_into().map_err(|_| "truncated header")?) as usize;
    if records.len() != count.saturating_mul(RECORD) {
        return Err(format!(
            "{} bytes of records for {count} windows of {RECORD} bytes",
            records.len()
        ));
    }
    let mut out = VecDeque::with_capacity(count);
    for r in records.chunks_exact(RECORD) {
        let family = *FAMILIES.get(r[0] as usize).ok_or("unknown family")?;
        let source = Source::from_code(r[1]).ok_or("unknown source")?;
        let padded = r[2];
        if padded as usize >= WINDOW {
            return Err("padding out of range".into());
        }
        let ts_ms = i64::from_le_bytes(r[4..12].try_into().map_err(|_| "short record")?);
        let octets: [u8; 16] = r[12..28].try_into().map_err(|_| "short record")?;
        let v6 = std::net::Ipv6Addr::from(octets);
        let device = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
        let mut window = Box::new([[0f32; FEATURE_COUNT]; WINDOW]);
        for (i, v) in r[28..].chunks_exact(4).enumerate() {
            let value = f32::from_le_bytes(v.try_into().map_err(|_| "short record")?);
            if !value.is_finite() {
                return Err("a feature is not finite".into());
            }
            window[i / FEATURE_COUNT][i % FEATURE_COUNT] = value;
        }
        out.push_back(Entry {
            window,
            padded,
            family,
            source,
            device,
            validation: r[3] != 0,
            ts_ms,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(v: f32) -> Box<Window> {
        Box::new([[v; FEATURE_COUNT]; WINDOW])
    }

    #[test]
    fn survives_a_restart_and_refuses_a_torn_file() {
        let dir = tempfile::tempdir().expect("dir");
        let mut set = LocalSet::open(dir.path(), 100, 0.2).expect("open");
        for i in 0..10 {
            let device: IpAddr = format!("10.0.0.{}", i % 3).parse().expect("ip");
            set.add(window(i as f32), 0, Family::Benign, Source::Pseudo, device, i);
        }
        set.add(
            window(7.5),
            3,
            Family::Scan,
            Source::Simulated,
            "::1".parse().expect("ip"),
            99,
        );
        set.save().expect("save");
        let again = LocalSet::open(dir.path(), 100, 0.2).expect("reopen");
        assert_eq!(again.len(), 11);
        assert_eq!(
            again.entries().cloned().collect::<Vec<_>>(),
            set.entries().cloned().collect::<Vec<_>>()
        );
        assert_eq!(again.entries().filter(|e| e.validation).count(), 2);
        let path = dir.path().join("local.bin");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 5]).expect("truncate");
        let err = LocalSet::open(dir.path(), 100, 0.2).expect_err("torn");
        assert!(err.to_string().contains("delete it"), "{err}");
    }

    #[test]
    fn the_cap_evicts_the_chattiest_devices_pseudo_labels_first() {
        let dir = tempfile::tempdir().expect("dir");
        let mut set = LocalSet::open(dir.path(), 10, 0.0).expect("open");
        let quiet: IpAddr = "10.0.0.1".parse().expect("ip");
        let chatty: IpAddr = "10.0.0.2".parse().expect("ip");
        set.add(window(0.0), 0, Family::Benign, Source::Pseudo, quiet, 0);
        set.add(window(0.0), 0, Family::DosDdos, Source::Simulated, chatty, 0);
        for i in 0..50 {
            set.add(window(1.0), 0, Family::Benign, Source::Pseudo, chatty, i);
        }
        assert_eq!(set.len(), 10);
        assert!(set.entries().any(|e| e.device == quiet));
        assert!(set.entries().any(|e| e.family == Family::DosDdos));
        let c = set.composition();
        assert_eq!(c.get("dos_ddos"), Some(&1));
    }

    #[test]
    fn a_simulated_flood_replaces_its_own_windows_not_the_benign_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let mut set = LocalSet::open(dir.path(), 100, 0.0).expect("open");
        let device: IpAddr = "10.0.0.1".parse().expect("ip");
        for i in 0..40 {
            set.add(window(0.0), 0, Family::Benign, Source::Pseudo, device, i);
        }
        set.add(window(0.5), 0, Family::BruteForce, Source::Operator, device, 40);
        // An attack-simulation session scores thousands of windows of one family.
        for i in 0..5000 {
            set.add(window(1.0), 0, Family::Scan, Source::Simulated, device, 100 + i);
        }
        let c = set.composition();
        assert_eq!(set.len(), 100);
        assert_eq!(c.get("benign"), Some(&40), "{c:?}");
        assert_eq!(c.get("brute_force"), Some(&1), "{c:?}");
        assert_eq!(c.get("scan"), Some(&59), "{c:?}");
        // The newest of the flood are kept.
        assert!(set
            .entries()
            .filter(|e| e.family == Family::Scan)
            .all(|e| e.ts_ms >= 100 + 5000 - 59));
    }
}
