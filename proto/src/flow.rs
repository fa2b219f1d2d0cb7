//! A finished flow as the agent reports it: identity, timing and the 78 features.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::features::FEATURE_COUNT;

/// IP protocol numbers the flow code names.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ICMPV6: u8 = 58;
}

/// A flow's identity, oriented forward: `src` sent the flow's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
}

impl FlowKey {
    /// The same flow seen from the other side.
    pub fn reversed(&self) -> Self {
        FlowKey {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            protocol: self.protocol,
        }
    }

    /// CICFlowMeter's `Flow ID` column: `src-dst-srcport-dstport-protocol`, forward.
    pub fn flow_id(&self) -> String {
        format!(
            "{}-{}-{}-{}-{}",
            self.src, self.dst, self.src_port, self.dst_port, self.protocol
        )
    }
}

/// Why a flow was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// TCP close: FIN (both directions in `correct` mode, the first one in `cic2017`).
    Fin,
    /// TCP reset (`correct` mode only).
    Rst,
    /// 120 s after the flow's first packet.
    FlowTimeout,
    /// A flow without a TCP close went quiet for the idle timeout (`correct` mode only).
    IdleTimeout,
    /// Pushed out early because the flow table was full.
    Evicted,
    /// The capture ended (end of file, or capture stopped).
    EndOfInput,
}

/// One completed flow with its 78 CIC-IDS2017 feature values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Sequence number given by the extractor, unique within one run.
    pub id: u64,
    pub key: FlowKey,
    /// First and last packet times, nanoseconds since the Unix epoch.
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
    pub fwd_packets: u32,
    pub bwd_packets: u32,
    pub end: EndReason,
    /// Values in [`crate::features::FEATURES`] order. `Flow Bytes/s` and `Flow
    /// Packets/s` may be infinite or NaN in `cic2017` mode, as in the published data.
    #[serde(with = "feature_array")]
    pub features: [f64; FEATURE_COUNT],
}

impl FlowRecord {
    pub fn packets(&self) -> u64 {
        u64::from(self.fwd_packets) + u64::from(self.bwd_packets)
    }

    /// The features as the model consumes them.
    pub fn features_f32(&self) -> [f32; FEATURE_COUNT] {
        self.features.map(|v| v as f32)
    }
}

/// serde for `[f64; 78]` (serde derives arrays only up to 32); JSON has no NaN or
/// infinity, so those travel as strings the way the published CSVs spell them.
mod feature_array {
    use serde::de::{self, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serializer};

    use super::FEATURE_COUNT;

    #[derive(serde::Serialize, serde::Deserialize)]
    #[serde(untagged)]
    enum Value<'a> {
        Number(f64),
        Text(&'a str),
    }

    pub fn serialize<S: Serializer>(values: &[f64; FEATURE_COUNT], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(FEATURE_COUNT))?;
        for v in values {
            if v.is_finite() {
                seq.serialize_element(&Value::Number(*v))?;
            } else if v.is_nan() {
                seq.serialize_element(&Value::Text("NaN"))?;
            } else if *v > 0.0 {
                seq.serialize_element(&Value::Text("Infinity"))?;
            } else {
                seq.serialize_element(&Value::Text("-Infinity"))?;
            }
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[f64; FEATURE_COUNT], D::Error> {
        struct ArrayVisitor;
        impl<'de> Visitor<'de> for ArrayVisitor {
            type Value = [f64; FEATURE_COUNT];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an array of {FEATURE_COUNT} numbers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = [0.0; FEATURE_COUNT];
                for (i, slot) in out.iter_mut().enumerate() {
                    let value: Value<'de> = seq.next_element()?.ok_or_else(|| de::Error::invalid_length(i, &self))?;
                    *slot = match value {
                        Value::Number(v) => v,
                        Value::Text("NaN") => f64::NAN,
                        Value::Text("Infinity") => f64::INFINITY,
                        Value::Text("-Infinity") => f64::NEG_INFINITY,
                        Value::Text(other) => return Err(de::Error::invalid_value(de::Unexpected::Str(other), &self)),
                    };
                }
                if seq.next_element::<de::IgnoredAny>()?.is_some() {
                    return Err(de::Error::invalid_length(FEATURE_COUNT + 1, &self));
                }
                Ok(out)
            }
        }
        d.deserialize_seq(ArrayVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> FlowRecord {
        let mut features = [1.5; FEATURE_COUNT];
        features[14] = f64::INFINITY;
        features[15] = f64::NAN;
        FlowRecord {
            id: 7,
            key: FlowKey {
                src: "10.0.0.1".parse().expect("ip"),
                dst: "10.0.0.2".parse().expect("ip"),
                src_port: 40000,
                dst_port: 80,
                protocol: protocol::TCP,
            },
            first_ts_ns: 1,
            last_ts_ns: 2,
            fwd_packets: 1,
            bwd_packets: 1,
            end: EndReason::Fin,
            features,
        }
    }

    #[test]
    fn json_round_trip_keeps_nan_and_infinity() {
        let rec = record();
        let text = serde_json::to_string(&rec).expect("serialise");
        assert!(text.contains("\"Infinity\"") && text.contains("\"NaN\""));
        let back: FlowRecord = serde_json::from_str(&text).expect("deserialise");
        assert_eq!(back.features[14], f64::INFINITY);
        assert!(back.features[15].is_nan());
        assert_eq!(back.key, rec.key);
        assert_eq!(back.features[0], 1.5);
    }

    #[test]
    fn json_with_wrong_feature_count_is_refused() {
        let text = serde_json::to_string(&record()).expect("serialise");
        let short = text.replacen("[1.5,", "[", 1);
        assert!(serde_json::from_str::<FlowRecord>(&short).is_err());
    }

    #[test]
    fn reversed_key_swaps_ends() {
        let key = record().key;
        let r = key.reversed();
        assert_eq!((r.src, r.dst, r.src_port, r.dst_port), (key.dst, key.src, 80, 40000));
        assert_eq!(r.reversed(), key);
        assert_eq!(key.flow_id(), "10.0.0.1-10.0.0.2-40000-80-6");
    }
}
