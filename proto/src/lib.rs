//! The contract between gatewatch agents and the hub: the CIC-IDS2017 flow feature
//! schema, the flow record the agent emits, and its CSV form. No I/O.

pub mod csv;
pub mod features;
pub mod flow;

pub use features::{Feature, Kind, FEATURES, FEATURE_COUNT};
pub use flow::{EndReason, FlowKey, FlowRecord};
