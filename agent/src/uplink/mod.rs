//! Uplink: what the agent sends to the hub. Detections are batched into the disk spool
//! ([`sender`]), which keeps them while the hub is away, and go out over MQTT ([`mqtt`]) until
//! the hub acknowledges that it stored them.

pub mod mqtt;
pub mod sender;
pub mod spool;

pub use sender::{Sender, SenderConfig, SenderStats};
pub use spool::{Fsync, Spool, SpoolConfig, SpoolError, SpoolStats, WhenFull};
