//! The contract between gatewatch agents and the hub: the CIC-IDS2017 flow feature
//! schema, the flow record the agent emits and its CSV form, the detections it makes, and
//! the fleet link's MQTT topics and messages, its QUIC framing, enrollment, and the federated-learning messages. No I/O.

pub mod bulk;
pub mod csv;
pub mod detection;
pub mod enroll;
pub mod features;
pub mod fl;
pub mod fleet;
pub mod flow;
pub mod metrics;

pub use detection::{Detection, WindowSpan};
pub use features::{Feature, Kind, FEATURES, FEATURE_COUNT};
pub use flow::{EndReason, FlowKey, FlowRecord};
