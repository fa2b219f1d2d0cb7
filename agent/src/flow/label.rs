//! Ground-truth labels for flows of a capture whose attacker is known: a flow that has
//! an attacker address at either end, inside the attack's time window, gets the attack's
//! label; every other flow the default label. This is how lab and simulator captures
//! become training data.

use std::net::IpAddr;

use gatewatch_proto::FlowRecord;

#[derive(Debug, Clone, PartialEq)]
pub struct Labeler {
    pub default_label: String,
    pub attack_label: String,
    pub attackers: Vec<IpAddr>,
    /// Attack time window in ns since the epoch, inclusive; `None` means the whole capture.
    pub window_ns: Option<(i64, i64)>,
}

impl Labeler {
    /// Everything gets `label`.
    pub fn constant(label: &str) -> Self {
        Labeler {
            default_label: label.to_string(),
            attack_label: label.to_string(),
            attackers: Vec::new(),
            window_ns: None,
        }
    }

    pub fn is_attack(&self, flow: &FlowRecord) -> bool {
        let involved = self.attackers.iter().any(|a| *a == flow.key.src || *a == flow.key.dst);
        let in_window = self
            .window_ns
            .is_none_or(|(from, until)| flow.last_ts_ns >= from && flow.first_ts_ns <= until);
        involved && in_window
    }

    pub fn label(&self, flow: &FlowRecord) -> &str {
        if self.is_attack(flow) {
            &self.attack_label
        } else {
            &self.default_label
        }
    }
}

#[cfg(test)]
mod tests {
    use gatewatch_proto::{EndReason, FlowKey};

    use super::*;

    fn flow(src: &str, dst: &str, first: i64, last: i64) -> FlowRecord {
        FlowRecord {
            id: 1,
            key: FlowKey {
                src: src.parse().expect("ip"),
                dst: dst.parse().expect("ip"),
                src_port: 1,
                dst_port: 2,
                protocol: 6,
            },
            first_ts_ns: first,
            last_ts_ns: last,
            fwd_packets: 1,
            bwd_packets: 1,
            end: EndReason::Fin,
            features: [0.0; 78],
        }
    }

    #[test]
    fn attacker_at_either_end_inside_the_window_is_attack() {
        let labeler = Labeler {
            default_label: "BENIGN".into(),
            attack_label: "PortScan".into(),
            attackers: vec!["10.0.0.66".parse().expect("ip")],
            window_ns: Some((100, 200)),
        };
        assert_eq!(labeler.label(&flow("10.0.0.66", "10.0.0.5", 150, 160)), "PortScan");
        assert_eq!(
            labeler.label(&flow("10.0.0.5", "10.0.0.66", 90, 110)),
            "PortScan",
            "overlaps the window"
        );
        assert_eq!(
            labeler.label(&flow("10.0.0.66", "10.0.0.5", 201, 300)),
            "BENIGN",
            "after the window"
        );
        assert_eq!(
            labeler.label(&flow("10.0.0.7", "10.0.0.5", 150, 160)),
            "BENIGN",
            "not the attacker"
        );
        assert_eq!(Labeler::constant("x").label(&flow("10.0.0.66", "10.0.0.5", 1, 2)), "x");
    }
}
