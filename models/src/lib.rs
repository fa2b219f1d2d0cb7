//! The gatewatch detector: a CNN-LSTM over windows of 10 consecutive flows of one device.
//!
//! Training runs in candle (CPU, one thread) and also serves federated learning through
//! one flat parameter vector; the trained network is exported to ONNX by our own code and
//! scored at the edge and in the hub with tract. Around the network live the feature
//! scaler, the labelled-data loaders, Shapley-value explanations and FGSM perturbations.

pub mod calibrate;
pub mod data;
pub mod error;
pub mod explain;
pub mod family;
pub mod fgsm;
pub mod metrics;
pub mod net;
pub mod onnx;
pub mod params;
pub mod rewrite;
pub mod scaler;
pub mod score;
pub mod store;
pub mod train;

pub use error::{Error, Result};
pub use family::{Family, FAMILIES, FAMILY_COUNT};
pub use gatewatch_proto::features::FEATURE_COUNT;
pub use net::Net;
pub use scaler::Scaler;
pub use score::{Model, Prediction};

/// Flows per window: the agent scores each device's last 10 completed flows.
pub const WINDOW: usize = 10;

/// One window of raw (unscaled) flow features, oldest flow first.
pub type Window = [[f32; FEATURE_COUNT]; WINDOW];

/// The scaled value of every feature of a padding row: a device with fewer than [`WINDOW`]
/// flows is scored on a partial window whose oldest rows are padding. No flow scales to −4
/// on all 78 features at once (a flow has at least one packet and a duration), so the
/// network can tell padding from traffic; it is trained on such windows.
pub const PAD_VALUE: f32 = -4.0;
