//! The traffic families the `family` head predicts, and how dataset labels map onto them.

use serde::{Deserialize, Serialize};

/// Number of families, benign included.
pub const FAMILY_COUNT: usize = 9;

/// Output order of the `family` head. Index 0 is benign; the ONNX file, the metadata JSON
/// and the flat parameters (rows of `family.weight`) all follow this order, so it may only
/// grow at the end together with [`crate::params::ARCH_VERSION`].
pub const FAMILIES: [Family; FAMILY_COUNT] = [
    Family::Benign,
    Family::Scan,
    Family::DosDdos,
    Family::BruteForce,
    Family::SlowRate,
    Family::BotnetC2,
    Family::Exfiltration,
    Family::WebAttack,
    Family::IotFlood,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Benign,
    /// Port and host scans (nmap SYN/UDP/connect, CIC `PortScan`).
    Scan,
    /// Volumetric denial of service (SYN/UDP floods, CIC `DDoS`, `DoS Hulk`, `DoS GoldenEye`).
    DosDdos,
    /// Password guessing against SSH, FTP and similar (CIC `FTP-Patator`, `SSH-Patator`).
    BruteForce,
    /// Low-and-slow exhaustion (slowloris, slowhttptest).
    SlowRate,
    /// Bots and command-and-control beacons (CIC `Bot`).
    BotnetC2,
    /// Data leaving the network (large outbound transfers, CIC `Infiltration`, `Heartbleed`).
    Exfiltration,
    /// Attacks carried in web requests (CIC `Web Attack – *`).
    WebAttack,
    /// Floods of IoT protocols (MQTT connect/publish, CoAP).
    IotFlood,
}

impl Family {
    /// Index in [`FAMILIES`].
    pub fn index(self) -> usize {
        FAMILIES.iter().position(|f| *f == self).unwrap_or(0)
    }

    pub fn is_attack(self) -> bool {
        self != Family::Benign
    }

    /// The family with the highest probability in `probs` (in [`FAMILIES`] order).
    pub fn most_likely(probs: &[f32]) -> Family {
        let best = probs
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        FAMILIES[best]
    }

    /// The family reported for a window, consistent with the score head's verdict: the most
    /// probable attack family when the window is an attack, benign otherwise. The two heads
    /// are trained apart, so the family head alone may say "benign" for a flagged window.
    pub fn for_verdict(attack: bool, probs: &[f32]) -> Family {
        if !attack {
            return Family::Benign;
        }
        let best = probs
            .iter()
            .enumerate()
            .skip(1)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(1, |(i, _)| i);
        FAMILIES.get(best).copied().unwrap_or(Family::Scan)
    }

    /// The snake_case name used in JSON and CSV labels.
    pub fn name(self) -> &'static str {
        match self {
            Family::Benign => "benign",
            Family::Scan => "scan",
            Family::DosDdos => "dos_ddos",
            Family::BruteForce => "brute_force",
            Family::SlowRate => "slow_rate",
            Family::BotnetC2 => "botnet_c2",
            Family::Exfiltration => "exfiltration",
            Family::WebAttack => "web_attack",
            Family::IotFlood => "iot_flood",
        }
    }

    /// Maps a dataset label to a family: our own names, the CIC-IDS2017 labels, and the
    /// labels the lab and simulator use. Case, spaces, dashes and the mangled en dash of the
    /// published web-attack labels are ignored. Unknown labels give `None`, never benign.
    pub fn from_label(label: &str) -> Option<Family> {
        let key: String = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        let family = match key.as_str() {
            "benign" | "normal" | "background" => Family::Benign,
            "scan" | "portscan" | "nmap" | "synscan" | "udpscan" | "connectscan" => Family::Scan,
            "dosddos" | "dos" | "ddos" | "doshulk" | "dosgoldeneye" | "synflood" | "udpflood" | "icmpflood"
            | "ddosflood" | "ddosfloodsyn" | "ddosfloodudp" | "ddosfloodhttp" => Family::DosDdos,
            "bruteforce" | "ftppatator" | "sshpatator" | "sshbruteforce" | "ftpbruteforce" | "bruteforcessh"
            | "bruteforceftp" => Family::BruteForce,
            "slowrate" | "dosslowloris" | "dosslowhttptest" | "slowloris" | "slowhttptest" => Family::SlowRate,
            "botnetc2" | "bot" | "botnet" | "c2" | "beacon" | "botnetbeacon" => Family::BotnetC2,
            "exfiltration" | "dataexfiltration" | "infiltration" | "heartbleed" => Family::Exfiltration,
            "webattack" | "xss" | "sqlinjection" | "webxss" | "websqli" => Family::WebAttack,
            "iotflood" | "mqttflood" | "coapflood" => Family::IotFlood,
            // "Web Attack – Brute Force" etc.: the dash is a mangled byte in the published files.
            k if k.starts_with("webattack") => Family::WebAttack,
            _ => return None,
        };
        Some(family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_map_to_families() {
        assert_eq!(Family::from_label("BENIGN"), Some(Family::Benign));
        assert_eq!(Family::from_label("PortScan"), Some(Family::Scan));
        assert_eq!(Family::from_label("DoS slowloris"), Some(Family::SlowRate));
        assert_eq!(Family::from_label("DoS Hulk"), Some(Family::DosDdos));
        assert_eq!(
            Family::from_label("Web Attack \u{fffd} Brute Force"),
            Some(Family::WebAttack)
        );
        assert_eq!(Family::from_label("SSH-Patator"), Some(Family::BruteForce));
        assert_eq!(Family::from_label("iot_flood"), Some(Family::IotFlood));
        // The simulator's scenario names (`gatewatch-agent simulate`).
        assert_eq!(Family::from_label("ddos_flood:udp"), Some(Family::DosDdos));
        assert_eq!(Family::from_label("brute_force_ftp"), Some(Family::BruteForce));
        assert_eq!(Family::from_label("botnet_beacon"), Some(Family::BotnetC2));
        assert_eq!(Family::from_label("data_exfiltration"), Some(Family::Exfiltration));
        assert_eq!(Family::from_label("web_sqli"), Some(Family::WebAttack));
        assert_eq!(Family::from_label("something new"), None);
        for (i, f) in FAMILIES.iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(Family::from_label(f.name()), Some(*f));
        }
    }
}
