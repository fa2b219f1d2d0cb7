//! The contract between gatewatch agents and the hub: the CIC-IDS2017 flow feature
//! schema, the flow record the agent emits and its CSV form, the detections it makes, and
//! the fleet link's MQTT topics and messages. No I/O.

pub mod csv;
pub mod detection;
pub mod features;
pub mod fleet;
pub mod flow;

pub use detection::{Detection, WindowSpan};
pub use features::{Feature, Kind, FEATURES, FEATURE_COUNT};
pub use flow::{EndReason, FlowKey, FlowRecord};
