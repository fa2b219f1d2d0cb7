//! The gatewatch edge agent: packets in (files, live capture, simulator), CIC-IDS2017
//! flow features out. Later parts score windows of flows, enforce rules and train locally.

pub mod capture;
pub mod flow;
pub mod pipeline;
