//! Labelled flows, device sequences, windows, and the CIC-IDS2017 CSV loader.
//!
//! Training takes [`FlowSequence`]s: the completed flows of one device (or one capture) in
//! the order they completed, each with its family. Whatever builds the dataset (lab
//! captures, the simulator, published CSVs) only has to produce those. A window is 10
//! consecutive flows of a sequence; its family is the most frequent attack family among its
//! flows (ties go to the most recent), benign if it holds no attack flow — the agent raises
//! a prediction per new flow, and a window that contains attack traffic should alert.
//!
//! A sequence's first 1-9 flows also make partial windows, padded in front as the agent pads
//! a device that has fewer than 10 flows when it goes quiet or the capture ends: a single
//! exploit or a one-flow tunnel is scored, and the network learns what such windows are.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use gatewatch_proto::features::{FEATURES, LABEL_HEADER};

use crate::error::{Error, Result};
use crate::family::Family;
use crate::scaler::Scaler;
use crate::{Window, FAMILY_COUNT, FEATURE_COUNT, WINDOW};

/// One flow with its label.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledFlow {
    pub features: [f64; FEATURE_COUNT],
    pub family: Family,
}

/// The flows of one device or capture, in completion order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlowSequence {
    /// Where the flows come from (file and device); splits keep a sequence whole.
    pub name: String,
    pub flows: Vec<LabelledFlow>,
}

/// A scaled window with its label, ready for training or evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub window: Window,
    pub family: Family,
    /// Index of the sequence it came from.
    pub sequence: usize,
    /// Oldest rows that are padding (0 for a full window).
    pub padded: usize,
    /// Multiplies the window's class weight in the loss (1 unless training rebalances).
    pub weight: f32,
}

/// The capture a sequence comes from: its name up to the device (`file#device`).
pub fn capture_of(sequence: &FlowSequence) -> &str {
    sequence.name.split('#').next().unwrap_or_default()
}

/// The family of a window of flows (see the module comment).
pub fn window_family(flows: &[LabelledFlow]) -> Family {
    let mut counts = [0usize; FAMILY_COUNT];
    let mut last_seen = [0usize; FAMILY_COUNT];
    for (pos, f) in flows.iter().enumerate() {
        counts[f.family.index()] += 1;
        last_seen[f.family.index()] = pos;
    }
    crate::FAMILIES
        .iter()
        .filter(|f| f.is_attack() && counts[f.index()] > 0)
        .max_by_key(|f| (counts[f.index()], last_seen[f.index()]))
        .copied()
        .unwrap_or(Family::Benign)
}

/// Every window of `WINDOW` consecutive flows (stride 1) of every sequence, and the partial
/// windows of its first flows, scaled.
pub fn samples(sequences: &[FlowSequence], scaler: &Scaler) -> Vec<Sample> {
    samples_capped(sequences, scaler, usize::MAX)
}

/// Like [`samples`], but at most `cap` full windows per sequence, evenly spaced over it: a
/// minute of flood is a million near-identical windows that would swamp everything else
/// (and memory: each window is 3 KB). The partial windows (at most 9) come on top.
pub fn samples_capped(sequences: &[FlowSequence], scaler: &Scaler, cap: usize) -> Vec<Sample> {
    let mut out = Vec::new();
    for (si, seq) in sequences.iter().enumerate() {
        let count = seq.flows.len().saturating_sub(WINDOW - 1);
        let stride = count.div_ceil(cap.max(1)).max(1);
        let scaled: Vec<[f32; FEATURE_COUNT]> = seq.flows.iter().map(|f| scaler.scale_row(&f.features)).collect();
        for real in 1..WINDOW.min(seq.flows.len() + 1) {
            let padded = WINDOW - real;
            let mut window = [[crate::PAD_VALUE; FEATURE_COUNT]; WINDOW];
            window[padded..].copy_from_slice(&scaled[..real]);
            out.push(Sample {
                window,
                family: window_family(&seq.flows[..real]),
                sequence: si,
                padded,
                weight: 1.0,
            });
        }
        for start in (0..count).step_by(stride) {
            let mut window = [[0.0; FEATURE_COUNT]; WINDOW];
            window.copy_from_slice(&scaled[start..start + WINDOW]);
            out.push(Sample {
                window,
                family: window_family(&seq.flows[start..start + WINDOW]),
                sequence: si,
                padded: 0,
                weight: 1.0,
            });
        }
    }
    out
}

/// Which flows of a CSV with flow identity columns go into whose sequence.
#[derive(Debug, Clone, Default)]
pub enum Grouping {
    /// The whole file is one sequence, in file order (the only choice for the 78-column
    /// layout, which has no addresses).
    #[default]
    File,
    /// One sequence per endpoint address within these networks (a flow between two such
    /// devices goes into both); needs the labelled layout.
    Devices(Vec<Network>),
}

/// An IP network in CIDR form, e.g. `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = Error;

    fn from_str(s: &str) -> Result<Network> {
        let bad = || Error::Data(format!("not a network: {s:?}"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().map_err(|_| bad())?, Some(p)),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Network { addr, prefix })
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The network's own address: host bits cleared, as `nft` and others want it.
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        write!(f, "{addr}/{}", self.prefix)
    }
}

impl Network {
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// Whether every address of `other` is in this network too.
    pub fn covers(&self, other: &Network) -> bool {
        self.prefix <= other.prefix && self.contains(other.addr)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (a, b, bits) = match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

/// Reads a CSV in either published CIC-IDS2017 layout (the one `gatewatch-agent features`
/// writes too): the 78 feature columns found by name (leading spaces ignored; the repeated
/// `Fwd Header Length` by position), `Label`, and for [`Grouping::Devices`] the `Source IP`
/// and `Destination IP` columns. `Infinity`/`NaN` are kept for the scaler; blank lines of
/// the published files are skipped; anything else unreadable is an error with its line.
pub fn read_csv(path: &Path, grouping: &Grouping) -> Result<Vec<FlowSequence>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .map_err(|e| Error::Data(format!("{}: {e}", path.display())))?;
    let err = |line: u64, m: String| Error::Data(format!("{}:{line}: {m}", path.display()));
    let headers = reader.byte_headers().map_err(|e| err(1, e.to_string()))?.clone();
    let names: Vec<String> = headers
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_string()
        })
        .collect();
    let mut columns = [0usize; FEATURE_COUNT];
    for (i, f) in FEATURES.iter().enumerate() {
        let occurrence = FEATURES[..i].iter().filter(|g| g.name == f.name).count();
        columns[i] = names
            .iter()
            .enumerate()
            .filter(|(_, n)| *n == f.name)
            .nth(occurrence)
            .map(|(c, _)| c)
            .ok_or_else(|| err(1, format!("no column {:?}", f.name)))?;
    }
    let find = |want: &str| names.iter().position(|n| n == want);
    let label_col = find(LABEL_HEADER.trim()).ok_or_else(|| err(1, "no Label column".into()))?;
    let endpoints = match grouping {
        Grouping::File => None,
        Grouping::Devices(nets) => {
            let src = find("Source IP").ok_or_else(|| err(1, "no Source IP column to group by device".into()))?;
            let dst = find("Destination IP").ok_or_else(|| err(1, "no Destination IP column".into()))?;
            Some((src, dst, nets))
        }
    };

    let file = path.display().to_string();
    let mut whole = FlowSequence {
        name: file.clone(),
        flows: Vec::new(),
    };
    let mut per_device: HashMap<IpAddr, FlowSequence> = HashMap::new();
    let mut device_order: Vec<IpAddr> = Vec::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(err(line, e.to_string())),
        }
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        let field = |c: usize| -> Result<&str> {
            let bytes = record
                .get(c)
                .ok_or_else(|| err(line, format!("missing column {}", c + 1)))?;
            std::str::from_utf8(bytes)
                .map(str::trim)
                .map_err(|_| err(line, format!("column {} is not text", c + 1)))
        };
        let mut features = [0f64; FEATURE_COUNT];
        for (i, &c) in columns.iter().enumerate() {
            let text = field(c)?;
            features[i] = parse_value(text).ok_or_else(|| err(line, format!("{:?}: {text:?}", FEATURES[i].name)))?;
        }
        let label_bytes = record.get(label_col).ok_or_else(|| err(line, "missing Label".into()))?;
        let label = String::from_utf8_lossy(label_bytes);
        let family =
            Family::from_label(label.trim()).ok_or_else(|| err(line, format!("unknown label {:?}", label.trim())))?;
        let flow = LabelledFlow { features, family };
        match &endpoints {
            None => whole.flows.push(flow),
            Some((src, dst, nets)) => {
                for c in [*src, *dst] {
                    let text = field(c)?;
                    let ip: IpAddr = text.parse().map_err(|_| err(line, format!("bad address {text:?}")))?;
                    if !nets.iter().any(|n| n.contains(ip)) {
                        continue;
                    }
                    per_device
                        .entry(ip)
                        .or_insert_with(|| {
                            device_order.push(ip);
                            FlowSequence {
                                name: format!("{file}#{ip}"),
                                flows: Vec::new(),
                            }
                        })
                        .flows
                        .push(flow.clone());
                }
            }
        }
    }
    Ok(match endpoints {
        None => vec![whole],
        Some(_) => device_order
            .into_iter()
            .filter_map(|ip| per_device.remove(&ip))
            .collect(),
    })
}

/// Parses a feature value as the published files and our CSVs spell it.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "Infinity" | "inf" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => text.parse::<f64>().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scaler::Transform;

    #[test]
    fn networks_print_as_their_network_address() {
        let show = |s: &str| s.parse::<Network>().expect("network").to_string();
        assert_eq!(show("10.1.2.3/16"), "10.1.0.0/16");
        assert_eq!(show("10.1.2.3"), "10.1.2.3/32");
        assert_eq!(show("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(show("2001:db8::1/32"), "2001:db8::/32");
        assert!("10.1.2.3/16".parse::<Network>().expect("network").is_ipv4());
    }

    #[test]
    fn capped_samples_are_evenly_spaced_and_bounded() {
        let flows: Vec<LabelledFlow> = (0..1009)
            .map(|i| LabelledFlow {
                features: [f64::from(i); FEATURE_COUNT],
                family: if i >= 500 { Family::Scan } else { Family::Benign },
            })
            .collect();
        let seqs = [FlowSequence {
            name: "s".into(),
            flows,
        }];
        let scaler = Scaler::fit(seqs[0].flows.iter().map(|f| &f.features), Transform::Linear).expect("fits");
        // 1000 full windows and the 9 partial ones of the first flows.
        assert_eq!(samples(&seqs, &scaler).len(), 1009);
        let capped = samples_capped(&seqs, &scaler, 100);
        assert_eq!(capped.iter().filter(|s| s.padded == 0).count(), 100);
        assert_eq!(capped.iter().filter(|s| s.padded > 0).count(), 9);
        assert!(capped.iter().any(|s| s.family == Family::Benign) && capped.iter().any(|s| s.family == Family::Scan));
        assert_eq!(samples_capped(&seqs, &scaler, 5000).len(), 1009);
        let first = &capped[0];
        assert_eq!(first.padded, WINDOW - 1);
        assert!(first.window[..WINDOW - 1]
            .iter()
            .all(|r| r.iter().all(|v| *v == crate::PAD_VALUE)));
        assert_eq!(first.window[WINDOW - 1], scaler.scale_row(&seqs[0].flows[0].features));
        let short = [FlowSequence {
            name: "t".into(),
            flows: seqs[0].flows[..3].to_vec(),
        }];
        let partial = samples(&short, &scaler);
        assert_eq!(partial.iter().map(|s| s.padded).collect::<Vec<_>>(), [9, 8, 7]);
    }
    use std::io::Write;

    fn flow(family: Family) -> LabelledFlow {
        LabelledFlow {
            features: [1.0; FEATURE_COUNT],
            family,
        }
    }

    #[test]
    fn window_family_rule() {
        let mut flows = vec![flow(Family::Benign); WINDOW];
        assert_eq!(window_family(&flows), Family::Benign);
        flows[2] = flow(Family::Scan);
        assert_eq!(window_family(&flows), Family::Scan);
        flows[5] = flow(Family::BruteForce);
        assert_eq!(window_family(&flows), Family::BruteForce, "ties go to the most recent");
        flows[7] = flow(Family::Scan);
        assert_eq!(window_family(&flows), Family::Scan, "then the most frequent");
    }

    #[test]
    fn networks() {
        let n: Network = "10.0.0.0/8".parse().expect("net");
        assert!(n.contains("10.2.3.4".parse().expect("ip")));
        assert!(!n.contains("11.0.0.1".parse().expect("ip")));
        assert!(!n.contains("::1".parse().expect("ip")));
        let all: Network = "0.0.0.0/0".parse().expect("net");
        assert!(all.contains("192.0.2.1".parse().expect("ip")));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
    }

    fn header(labelled: bool) -> String {
        let mut cells: Vec<String> = Vec::new();
        if labelled {
            for c in ["Flow ID", " Source IP", " Source Port", " Destination IP"] {
                cells.push(c.into());
            }
        }
        cells.extend(FEATURES.iter().map(|f| f.published.to_string()));
        cells.push(LABEL_HEADER.to_string());
        cells.join(",")
    }

    fn row(first: &str, label: &str, prefix: &str) -> String {
        let mut cells: Vec<String> = vec![prefix.to_string()];
        cells.push(first.to_string());
        cells.extend((1..FEATURE_COUNT).map(|i| i.to_string()));
        cells.push(label.to_string());
        cells.join(",").trim_start_matches(',').to_string()
    }

    #[test]
    fn reads_the_published_layout() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("a.csv");
        let mut f = std::fs::File::create(&path).expect("create");
        writeln!(f, "{}", header(false)).expect("w");
        writeln!(f, "{}", row("80", "BENIGN", "")).expect("w");
        writeln!(f, "{}", row("Infinity", "PortScan", "")).expect("w");
        writeln!(f, "{}", row("NaN", "DoS Hulk", "")).expect("w");
        writeln!(f, "{}", ",".repeat(FEATURE_COUNT)).expect("w");
        drop(f);
        let seqs = read_csv(&path, &Grouping::File).expect("read");
        assert_eq!(seqs.len(), 1);
        let flows = &seqs[0].flows;
        assert_eq!(flows.len(), 3);
        assert_eq!(flows[0].features[0], 80.0);
        assert_eq!(flows[0].features[77], 77.0);
        assert_eq!(flows[1].features[0], f64::INFINITY);
        assert!(flows[2].features[0].is_nan());
        assert_eq!(flows[1].family, Family::Scan);

        let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        writeln!(f, "{}", row("1", "Martian", "")).expect("w");
        drop(f);
        let e = read_csv(&path, &Grouping::File).expect_err("unknown label");
        assert!(
            e.to_string().contains(":6:") && e.to_string().contains("Martian"),
            "{e}"
        );
    }

    #[test]
    fn groups_labelled_rows_by_device() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("b.csv");
        let mut f = std::fs::File::create(&path).expect("create");
        writeln!(f, "{}", header(true)).expect("w");
        writeln!(f, "{}", row("1", "BENIGN", "x,10.0.0.1,1000,8.8.8.8")).expect("w");
        writeln!(f, "{}", row("2", "BENIGN", "x,10.0.0.2,1000,10.0.0.1")).expect("w");
        writeln!(f, "{}", row("3", "BENIGN", "x,8.8.4.4,53,10.0.0.2")).expect("w");
        drop(f);
        let nets = vec!["10.0.0.0/24".parse().expect("net")];
        let seqs = read_csv(&path, &Grouping::Devices(nets)).expect("read");
        let firsts: Vec<(String, Vec<f64>)> = seqs
            .iter()
            .map(|s| (s.name.clone(), s.flows.iter().map(|f| f.features[0]).collect()))
            .collect();
        assert_eq!(firsts.len(), 2);
        assert!(firsts[0].0.ends_with("#10.0.0.1") && firsts[0].1 == vec![1.0, 2.0]);
        assert!(firsts[1].0.ends_with("#10.0.0.2") && firsts[1].1 == vec![2.0, 3.0]);
        assert!(read_csv(&path, &Grouping::Devices(vec![])).expect("read").is_empty());
    }
}
