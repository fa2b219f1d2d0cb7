//! CSV in the layouts of the published CIC-IDS2017 files.
//!
//! `MachineLearning` is the "MachineLearningCVE" layout: the 78 features and `Label`.
//! `Labelled` is the "TrafficLabelling" layout: flow identity columns first (`Flow ID`,
//! addresses, ports, protocol, timestamp), then the other 77 features and `Label`.

use std::io::{self, Write};

use crate::features::{idx, Kind, FEATURES, LABEL_HEADER};
use crate::flow::FlowRecord;

/// Which published file layout to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    #[default]
    MachineLearning,
    Labelled,
}

const IDENTITY_HEADER: &str = "Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp";

/// Writes the header line.
pub fn write_header<W: Write>(mut w: W, layout: Layout) -> io::Result<()> {
    let mut first = true;
    if layout == Layout::Labelled {
        w.write_all(IDENTITY_HEADER.as_bytes())?;
        first = false;
    }
    for (i, feature) in FEATURES.iter().enumerate() {
        if layout == Layout::Labelled && i == idx::DESTINATION_PORT {
            continue;
        }
        if !first {
            w.write_all(b",")?;
        }
        first = false;
        w.write_all(feature.published.as_bytes())?;
    }
    writeln!(w, ",{LABEL_HEADER}")
}

/// Writes one flow as a CSV line with the given label.
pub fn write_record<W: Write>(mut w: W, layout: Layout, rec: &FlowRecord, label: &str) -> io::Result<()> {
    let mut buf = String::with_capacity(1024);
    if layout == Layout::Labelled {
        let k = &rec.key;
        buf.push_str(&format!(
            "{},{},{},{},{},{},{}",
            k.flow_id(),
            k.src,
            k.src_port,
            k.dst,
            k.dst_port,
            k.protocol,
            format_timestamp(rec.first_ts_ns)
        ));
    }
    for (i, (feature, value)) in FEATURES.iter().zip(rec.features.iter()).enumerate() {
        if layout == Layout::Labelled && i == idx::DESTINATION_PORT {
            continue;
        }
        if !buf.is_empty() {
            buf.push(',');
        }
        push_value(&mut buf, feature.kind, *value);
    }
    buf.push(',');
    buf.push_str(&escape(label));
    buf.push('\n');
    w.write_all(buf.as_bytes())
}

/// Formats a value the way the published CSVs (Java) spell it.
pub fn format_value(kind: Kind, value: f64) -> String {
    let mut s = String::new();
    push_value(&mut s, kind, value);
    s
}

fn push_value(buf: &mut String, kind: Kind, value: f64) {
    use std::fmt::Write as _;
    if value.is_nan() {
        buf.push_str("NaN");
    } else if value.is_infinite() {
        buf.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    } else if kind == Kind::Integer {
        let _ = write!(buf, "{}", value.round() as i64);
    } else {
        let start = buf.len();
        let _ = write!(buf, "{value}");
        if !buf[start..].contains(['.', 'e', 'E']) {
            buf.push_str(".0");
        }
    }
}

fn escape(label: &str) -> String {
    if label.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", label.replace('"', "\"\""))
    } else {
        label.to_string()
    }
}

/// UTC timestamp with microseconds, e.g. `2017-07-06 13:15:02.123456`.
pub fn format_timestamp(ts_ns: i64) -> String {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let micros = ts_ns.rem_euclid(1_000_000_000) / 1_000;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FEATURE_COUNT;
    use crate::flow::{EndReason, FlowKey};

    fn record() -> FlowRecord {
        let mut features = [0.0; FEATURE_COUNT];
        features[idx::DESTINATION_PORT] = 80.0;
        features[idx::FLOW_BYTES_S] = f64::INFINITY;
        features[idx::FLOW_PACKETS_S] = f64::NAN;
        features[idx::FWD_PACKET_LENGTH_MEAN] = 6.0;
        features[idx::INIT_WIN_BYTES_BACKWARD] = -1.0;
        FlowRecord {
            id: 1,
            key: FlowKey {
                src: "192.168.10.5".parse().expect("ip"),
                dst: "192.168.10.50".parse().expect("ip"),
                src_port: 5555,
                dst_port: 80,
                protocol: 6,
            },
            first_ts_ns: 1_499_346_902_123_456_789,
            last_ts_ns: 1_499_346_902_123_456_789,
            fwd_packets: 2,
            bwd_packets: 0,
            end: EndReason::Fin,
            features,
        }
    }

    #[test]
    fn machine_learning_header_has_78_features_and_label() {
        let mut out = Vec::new();
        write_header(&mut out, Layout::MachineLearning).expect("write");
        let line = String::from_utf8(out).expect("utf8");
        let cells: Vec<&str> = line.trim_end().split(',').collect();
        assert_eq!(cells.len(), FEATURE_COUNT + 1);
        assert_eq!(cells[0], " Destination Port");
        assert_eq!(cells[77], " Idle Min");
        assert_eq!(cells[78], " Label");
        assert_eq!(cells[34], cells[55]);
    }

    #[test]
    fn values_are_spelled_like_java() {
        let mut out = Vec::new();
        write_record(&mut out, Layout::MachineLearning, &record(), "BENIGN").expect("write");
        let line = String::from_utf8(out).expect("utf8");
        let cells: Vec<&str> = line.trim_end().split(',').collect();
        assert_eq!(cells.len(), FEATURE_COUNT + 1);
        assert_eq!(cells[idx::DESTINATION_PORT], "80");
        assert_eq!(cells[idx::FLOW_BYTES_S], "Infinity");
        assert_eq!(cells[idx::FLOW_PACKETS_S], "NaN");
        assert_eq!(cells[idx::FWD_PACKET_LENGTH_MEAN], "6.0");
        assert_eq!(cells[idx::INIT_WIN_BYTES_BACKWARD], "-1");
        assert_eq!(cells[78], "BENIGN");
        assert_eq!(format_value(Kind::Real, 666_666.666_666_666_6), "666666.6666666666");
    }

    #[test]
    fn labelled_layout_puts_identity_first() {
        let mut header = Vec::new();
        write_header(&mut header, Layout::Labelled).expect("write");
        let mut row = Vec::new();
        write_record(&mut row, Layout::Labelled, &record(), "a,b").expect("write");
        let header = String::from_utf8(header).expect("utf8");
        let row = String::from_utf8(row).expect("utf8");
        let h: Vec<&str> = header.trim_end().split(',').collect();
        assert_eq!(h.len(), 7 + 77 + 1);
        assert_eq!(h[4], " Destination Port");
        assert_eq!(h[7], " Flow Duration");
        assert!(row.starts_with(
            "192.168.10.5-192.168.10.50-5555-80-6,192.168.10.5,5555,192.168.10.50,80,6,2017-07-06 13:15:02.123456,"
        ));
        assert!(row.trim_end().ends_with(",\"a,b\""));
    }

    #[test]
    fn timestamps_cover_leap_years_and_before_epoch() {
        assert_eq!(format_timestamp(0), "1970-01-01 00:00:00.000000");
        assert_eq!(format_timestamp(951_782_400_000_000_000), "2000-02-29 00:00:00.000000");
        assert_eq!(format_timestamp(-1_000), "1969-12-31 23:59:59.999999");
    }
}
