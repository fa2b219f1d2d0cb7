//! The gatewatch edge agent: packets in (files, live capture, simulator), CIC-IDS2017
//! flow features, and detections from windows of each device's flows scored with tract.
//! Prevention rules from the hub are evaluated on every detection and enforced on the
//! gateway with nftables (dry run until the operator turns enforcement on). What goes to
//! the hub waits in a disk spool while the hub is unreachable. Later parts train locally.

pub mod attack;
pub mod capture;
pub mod config;
pub mod detect;
pub mod fl;
pub mod flow;
pub mod metrics;
pub mod pipeline;
pub mod prevent;
pub mod run;
pub mod state_file;
pub mod uplink;
