//! Uplink: what the agent sends to the hub. Detections are batched into the disk spool
//! ([`sender`]), which keeps them while the hub is away, and go out over MQTT ([`mqtt`]) until
//! the hub acknowledges that it stored them, over mutual TLS with the identity from
//! enrollment ([`identity`]) when the hub runs its own broker. Models the hub rolls out come
//! down over QUIC ([`bulk`], [`rollout`]), and flow records go up the same way ([`flows`]).
//! Operators' commands (start/stop monitoring, capture replay) are run by [`commands`].

pub mod backoff;
pub mod bulk;
pub mod commands;
pub mod flows;
pub mod identity;
pub mod mqtt;
pub mod rollout;
pub mod sender;
pub mod spool;

pub use sender::{Sender, SenderConfig, SenderStats};
pub use spool::{Fsync, Spool, SpoolConfig, SpoolError, SpoolStats, WhenFull};
