//! The 78 CIC-IDS2017 flow features: names, order, and how each one is written.
//!
//! The order and the names are those of the published "MachineLearningCVE" CSV files
//! (`shared/reference/cic_ids2017_features.csv`). The published header puts a leading
//! space before most names and repeats `Fwd Header Length`; [`Feature::published`]
//! keeps that spelling so our CSVs load wherever the published ones do.

/// Number of features in a flow record.
pub const FEATURE_COUNT: usize = 78;

/// How a feature's value is written in the published CSVs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Written without a fraction (`3`, `-1`).
    Integer,
    /// Written as a Java double (`6.0`, `666666.6667`, `Infinity`, `NaN`).
    Real,
}

/// One column of the feature vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// The name without the published leading space.
    pub name: &'static str,
    /// The exact header cell of the published CSVs.
    pub published: &'static str,
    pub kind: Kind,
}

/// The 78 features in file order.
pub const FEATURES: [Feature; FEATURE_COUNT] = [
    Feature {
        name: "Destination Port",
        published: " Destination Port",
        kind: Kind::Integer,
    },
    Feature {
        name: "Flow Duration",
        published: " Flow Duration",
        kind: Kind::Integer,
    },
    Feature {
        name: "Total Fwd Packets",
        published: " Total Fwd Packets",
        kind: Kind::Integer,
    },
    Feature {
        name: "Total Backward Packets",
        published: " Total Backward Packets",
        kind: Kind::Integer,
    },
    Feature {
        name: "Total Length of Fwd Packets",
        published: "Total Length of Fwd Packets",
        kind: Kind::Integer,
    },
    Feature {
        name: "Total Length of Bwd Packets",
        published: " Total Length of Bwd Packets",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd Packet Length Max",
        published: " Fwd Packet Length Max",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd Packet Length Min",
        published: " Fwd Packet Length Min",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd Packet Length Mean",
        published: " Fwd Packet Length Mean",
        kind: Kind::Real,
    },
    Feature {
        name: "Fwd Packet Length Std",
        published: " Fwd Packet Length Std",
        kind: Kind::Real,
    },
    Feature {
        name: "Bwd Packet Length Max",
        published: "Bwd Packet Length Max",
        kind: Kind::Integer,
    },
    Feature {
        name: "Bwd Packet Length Min",
        published: " Bwd Packet Length Min",
        kind: Kind::Integer,
    },
    Feature {
        name: "Bwd Packet Length Mean",
        published: " Bwd Packet Length Mean",
        kind: Kind::Real,
    },
    Feature {
        name: "Bwd Packet Length Std",
        published: " Bwd Packet Length Std",
        kind: Kind::Real,
    },
    Feature {
        name: "Flow Bytes/s",
        published: "Flow Bytes/s",
        kind: Kind::Real,
    },
    Feature {
        name: "Flow Packets/s",
        published: " Flow Packets/s",
        kind: Kind::Real,
    },
    Feature {
        name: "Flow IAT Mean",
        published: " Flow IAT Mean",
        kind: Kind::Real,
    },
    Feature {
        name: "Flow IAT Std",
        published: " Flow IAT Std",
        kind: Kind::Real,
    },
    Feature {
        name: "Flow IAT Max",
        published: " Flow IAT Max",
        kind: Kind::Integer,
    },
    Feature {
        name: "Flow IAT Min",
        published: " Flow IAT Min",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd IAT Total",
        published: "Fwd IAT Total",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd IAT Mean",
        published: " Fwd IAT Mean",
        kind: Kind::Real,
    },
    Feature {
        name: "Fwd IAT Std",
        published: " Fwd IAT Std",
        kind: Kind::Real,
    },
    Feature {
        name: "Fwd IAT Max",
        published: " Fwd IAT Max",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd IAT Min",
        published: " Fwd IAT Min",
        kind: Kind::Integer,
    },
    Feature {
        name: "Bwd IAT Total",
        published: "Bwd IAT Total",
        kind: Kind::Integer,
    },
    Feature {
        name: "Bwd IAT Mean",
        published: " Bwd IAT Mean",
        kind: Kind::Real,
    },
    Feature {
        name: "Bwd IAT Std",
        published: " Bwd IAT Std",
        kind: Kind::Real,
    },
    Feature {
        name: "Bwd IAT Max",
        published: " Bwd IAT Max",
        kind: Kind::Integer,
    },
    Feature {
        name: "Bwd IAT Min",
        published: " Bwd IAT Min",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd PSH Flags",
        published: "Fwd PSH Flags",
        kind: Kind::Integer,
    },
    Feature {
        name: "Bwd PSH Flags",
        published: " Bwd PSH Flags",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd URG Flags",
        published: " Fwd URG Flags",
        kind: Kind::Integer,
    },
    Feature {
        name: "Bwd URG Flags",
        published: " Bwd URG Flags",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd Header Length",
        published: " Fwd Header Length",
        kind: Kind::Integer,
    },
    Feature {
        name: "Bwd Header Length",
        published: " Bwd Header Length",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd Packets/s",
        published: "Fwd Packets/s",
        kind: Kind::Real,
    },
    Feature {
        name: "Bwd Packets/s",
        published: " Bwd Packets/s",
        kind: Kind::Real,
    },
    Feature {
        name: "Min Packet Length",
        published: " Min Packet Length",
        kind: Kind::Integer,
    },
    Feature {
        name: "Max Packet Length",
        published: " Max Packet Length",
        kind: Kind::Integer,
    },
    Feature {
        name: "Packet Length Mean",
        published: " Packet Length Mean",
        kind: Kind::Real,
    },
    Feature {
        name: "Packet Length Std",
        published: " Packet Length Std",
        kind: Kind::Real,
    },
    Feature {
        name: "Packet Length Variance",
        published: " Packet Length Variance",
        kind: Kind::Real,
    },
    Feature {
        name: "FIN Flag Count",
        published: "FIN Flag Count",
        kind: Kind::Integer,
    },
    Feature {
        name: "SYN Flag Count",
        published: " SYN Flag Count",
        kind: Kind::Integer,
    },
    Feature {
        name: "RST Flag Count",
        published: " RST Flag Count",
        kind: Kind::Integer,
    },
    Feature {
        name: "PSH Flag Count",
        published: " PSH Flag Count",
        kind: Kind::Integer,
    },
    Feature {
        name: "ACK Flag Count",
        published: " ACK Flag Count",
        kind: Kind::Integer,
    },
    Feature {
        name: "URG Flag Count",
        published: " URG Flag Count",
        kind: Kind::Integer,
    },
    Feature {
        name: "CWE Flag Count",
        published: " CWE Flag Count",
        kind: Kind::Integer,
    },
    Feature {
        name: "ECE Flag Count",
        published: " ECE Flag Count",
        kind: Kind::Integer,
    },
    Feature {
        name: "Down/Up Ratio",
        published: " Down/Up Ratio",
        kind: Kind::Integer,
    },
    Feature {
        name: "Average Packet Size",
        published: " Average Packet Size",
        kind: Kind::Real,
    },
    Feature {
        name: "Avg Fwd Segment Size",
        published: " Avg Fwd Segment Size",
        kind: Kind::Real,
    },
    Feature {
        name: "Avg Bwd Segment Size",
        published: " Avg Bwd Segment Size",
        kind: Kind::Real,
    },
    Feature {
        name: "Fwd Header Length",
        published: " Fwd Header Length",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd Avg Bytes/Bulk",
        published: "Fwd Avg Bytes/Bulk",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd Avg Packets/Bulk",
        published: " Fwd Avg Packets/Bulk",
        kind: Kind::Integer,
    },
    Feature {
        name: "Fwd Avg Bulk Rate",
        published: " Fwd Avg Bulk Rate",
        kind: Kind::Integer,
    },
    Feature {
        name: "Bwd Avg Bytes/Bulk",
        published: " Bwd Avg Bytes/Bulk",
        kind: Kind::Integer,
    },
    Feature {
        name: "Bwd Avg Packets/Bulk",
        published: " Bwd Avg Packets/Bulk",
        kind: Kind::Integer,
    },
    Feature {
        name: "Bwd Avg Bulk Rate",
        published: "Bwd Avg Bulk Rate",
        kind: Kind::Integer,
    },
    Feature {
        name: "Subflow Fwd Packets",
        published: "Subflow Fwd Packets",
        kind: Kind::Integer,
    },
    Feature {
        name: "Subflow Fwd Bytes",
        published: " Subflow Fwd Bytes",
        kind: Kind::Integer,
    },
    Feature {
        name: "Subflow Bwd Packets",
        published: " Subflow Bwd Packets",
        kind: Kind::Integer,
    },
    Feature {
        name: "Subflow Bwd Bytes",
        published: " Subflow Bwd Bytes",
        kind: Kind::Integer,
    },
    Feature {
        name: "Init_Win_bytes_forward",
        published: "Init_Win_bytes_forward",
        kind: Kind::Integer,
    },
    Feature {
        name: "Init_Win_bytes_backward",
        published: " Init_Win_bytes_backward",
        kind: Kind::Integer,
    },
    Feature {
        name: "act_data_pkt_fwd",
        published: " act_data_pkt_fwd",
        kind: Kind::Integer,
    },
    Feature {
        name: "min_seg_size_forward",
        published: " min_seg_size_forward",
        kind: Kind::Integer,
    },
    Feature {
        name: "Active Mean",
        published: "Active Mean",
        kind: Kind::Real,
    },
    Feature {
        name: "Active Std",
        published: " Active Std",
        kind: Kind::Real,
    },
    Feature {
        name: "Active Max",
        published: " Active Max",
        kind: Kind::Integer,
    },
    Feature {
        name: "Active Min",
        published: " Active Min",
        kind: Kind::Integer,
    },
    Feature {
        name: "Idle Mean",
        published: "Idle Mean",
        kind: Kind::Real,
    },
    Feature {
        name: "Idle Std",
        published: " Idle Std",
        kind: Kind::Real,
    },
    Feature {
        name: "Idle Max",
        published: " Idle Max",
        kind: Kind::Integer,
    },
    Feature {
        name: "Idle Min",
        published: " Idle Min",
        kind: Kind::Integer,
    },
];

/// Index (0-based) of each feature, so flow code reads `values[F::FLOW_DURATION]`.
#[allow(missing_docs)]
pub mod idx {
    pub const DESTINATION_PORT: usize = 0;
    pub const FLOW_DURATION: usize = 1;
    pub const TOTAL_FWD_PACKETS: usize = 2;
    pub const TOTAL_BACKWARD_PACKETS: usize = 3;
    pub const TOTAL_LENGTH_OF_FWD_PACKETS: usize = 4;
    pub const TOTAL_LENGTH_OF_BWD_PACKETS: usize = 5;
    pub const FWD_PACKET_LENGTH_MAX: usize = 6;
    pub const FWD_PACKET_LENGTH_MIN: usize = 7;
    pub const FWD_PACKET_LENGTH_MEAN: usize = 8;
    pub const FWD_PACKET_LENGTH_STD: usize = 9;
    pub const BWD_PACKET_LENGTH_MAX: usize = 10;
    pub const BWD_PACKET_LENGTH_MIN: usize = 11;
    pub const BWD_PACKET_LENGTH_MEAN: usize = 12;
    pub const BWD_PACKET_LENGTH_STD: usize = 13;
    pub const FLOW_BYTES_S: usize = 14;
    pub const FLOW_PACKETS_S: usize = 15;
    pub const FLOW_IAT_MEAN: usize = 16;
    pub const FLOW_IAT_STD: usize = 17;
    pub const FLOW_IAT_MAX: usize = 18;
    pub const FLOW_IAT_MIN: usize = 19;
    pub const FWD_IAT_TOTAL: usize = 20;
    pub const FWD_IAT_MEAN: usize = 21;
    pub const FWD_IAT_STD: usize = 22;
    pub const FWD_IAT_MAX: usize = 23;
    pub const FWD_IAT_MIN: usize = 24;
    pub const BWD_IAT_TOTAL: usize = 25;
    pub const BWD_IAT_MEAN: usize = 26;
    pub const BWD_IAT_STD: usize = 27;
    pub const BWD_IAT_MAX: usize = 28;
    pub const BWD_IAT_MIN: usize = 29;
    pub const FWD_PSH_FLAGS: usize = 30;
    pub const BWD_PSH_FLAGS: usize = 31;
    pub const FWD_URG_FLAGS: usize = 32;
    pub const BWD_URG_FLAGS: usize = 33;
    pub const FWD_HEADER_LENGTH: usize = 34;
    pub const BWD_HEADER_LENGTH: usize = 35;
    pub const FWD_PACKETS_S: usize = 36;
    pub const BWD_PACKETS_S: usize = 37;
    pub const MIN_PACKET_LENGTH: usize = 38;
    pub const MAX_PACKET_LENGTH: usize = 39;
    pub const PACKET_LENGTH_MEAN: usize = 40;
    pub const PACKET_LENGTH_STD: usize = 41;
    pub const PACKET_LENGTH_VARIANCE: usize = 42;
    pub const FIN_FLAG_COUNT: usize = 43;
    pub const SYN_FLAG_COUNT: usize = 44;
    pub const RST_FLAG_COUNT: usize = 45;
    pub const PSH_FLAG_COUNT: usize = 46;
    pub const ACK_FLAG_COUNT: usize = 47;
    pub const URG_FLAG_COUNT: usize = 48;
    pub const CWE_FLAG_COUNT: usize = 49;
    pub const ECE_FLAG_COUNT: usize = 50;
    pub const DOWN_UP_RATIO: usize = 51;
    pub const AVERAGE_PACKET_SIZE: usize = 52;
    pub const AVG_FWD_SEGMENT_SIZE: usize = 53;
    pub const AVG_BWD_SEGMENT_SIZE: usize = 54;
    pub const FWD_HEADER_LENGTH_2: usize = 55;
    pub const FWD_AVG_BYTES_BULK: usize = 56;
    pub const FWD_AVG_PACKETS_BULK: usize = 57;
    pub const FWD_AVG_BULK_RATE: usize = 58;
    pub const BWD_AVG_BYTES_BULK: usize = 59;
    pub const BWD_AVG_PACKETS_BULK: usize = 60;
    pub const BWD_AVG_BULK_RATE: usize = 61;
    pub const SUBFLOW_FWD_PACKETS: usize = 62;
    pub const SUBFLOW_FWD_BYTES: usize = 63;
    pub const SUBFLOW_BWD_PACKETS: usize = 64;
    pub const SUBFLOW_BWD_BYTES: usize = 65;
    pub const INIT_WIN_BYTES_FORWARD: usize = 66;
    pub const INIT_WIN_BYTES_BACKWARD: usize = 67;
    pub const ACT_DATA_PKT_FWD: usize = 68;
    pub const MIN_SEG_SIZE_FORWARD: usize = 69;
    pub const ACTIVE_MEAN: usize = 70;
    pub const ACTIVE_STD: usize = 71;
    pub const ACTIVE_MAX: usize = 72;
    pub const ACTIVE_MIN: usize = 73;
    pub const IDLE_MEAN: usize = 74;
    pub const IDLE_STD: usize = 75;
    pub const IDLE_MAX: usize = 76;
    pub const IDLE_MIN: usize = 77;
}

/// The published header cell for the label column that follows the features.
pub const LABEL_HEADER: &str = " Label";

/// Finds a feature by name, ignoring surrounding spaces (published headers have them).
pub fn position(name: &str) -> Option<usize> {
    let name = name.trim();
    FEATURES.iter().position(|f| f.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_reference_file() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/reference/cic_ids2017_features.csv"
        );
        let text = std::fs::read_to_string(path).expect("shared/reference beside the repository");
        let names: Vec<String> = text
            .lines()
            .skip(1)
            .map(|line| line.split(',').nth(1).expect("name column").to_string())
            .collect();
        assert_eq!(names.len(), FEATURE_COUNT);
        for (i, (feature, name)) in FEATURES.iter().zip(&names).enumerate() {
            assert_eq!(feature.name, name, "feature {}", i + 1);
            assert_eq!(feature.published.trim(), feature.name);
        }
    }

    #[test]
    fn index_constants_follow_file_order() {
        assert_eq!(FEATURES[idx::DESTINATION_PORT].name, "Destination Port");
        assert_eq!(FEATURES[idx::FWD_HEADER_LENGTH].name, "Fwd Header Length");
        assert_eq!(FEATURES[idx::FWD_HEADER_LENGTH_2].name, "Fwd Header Length");
        assert_eq!(idx::FWD_HEADER_LENGTH_2, 55);
        assert_eq!(FEATURES[idx::IDLE_MIN].name, "Idle Min");
        assert_eq!(position(" Flow Duration"), Some(idx::FLOW_DURATION));
        assert_eq!(position("no such thing"), None);
    }
}
