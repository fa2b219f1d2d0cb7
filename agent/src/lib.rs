//! The gatewatch edge agent: packets in (files, live capture, simulator), CIC-IDS2017
//! flow features, and detections from windows of each device's flows scored with tract.
//! What goes to the hub waits in a disk spool while the hub is unreachable. Later parts
//! enforce rules and train locally.

pub mod capture;
pub mod config;
pub mod detect;
pub mod flow;
pub mod metrics;
pub mod pipeline;
pub mod run;
pub mod uplink;
