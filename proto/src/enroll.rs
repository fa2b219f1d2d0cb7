//! Enrollment: how an agent trades a one-time token for a client certificate.
//!
//! The agent makes its own key and sends a CSR with the token; the hub answers with a
//! certificate whose subject CN is the agent id, and its CA. The agent checks that CA against
//! the fingerprint the operator got with the token, so a hub impostor cannot hand it a CA.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The DNS name in every hub server certificate; agents verify the hub against this name,
/// whatever address they reach it at.
pub const HUB_SERVER_NAME: &str = "gatewatch-hub";

/// `POST /api/v1/agents/enroll`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    /// The agent's own, persistent id (it names the agent's topics).
    pub agent_id: Uuid,
    pub name: String,
    pub hostname: String,
    /// PKCS#10 request, PEM.
    pub csr_pem: String,
}

/// The hub's answer to a valid enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollResponse {
    pub agent_id: Uuid,
    pub certificate_pem: String,
    pub ca_pem: String,
    /// SHA-256 of the CA certificate, lower-case hex.
    pub ca_sha256: String,
    /// Where the hub's MQTT listener is, as `mqtts://HOST:PORT` (HOST as the agent called the hub).
    pub mqtt_url: String,
    /// The hub's QUIC port (bulk transfers), on the same host.
    pub quic_port: u16,
    /// RFC 3339.
    pub not_after: String,
}

/// SHA-256 of some bytes (a DER certificate, a token, a model file), lower-case hex: the form
/// fingerprints and checksums are shown and compared in.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Normalises a fingerprint an operator typed (`AB:CD…`, spaces, upper case) to [`sha256_hex`]'s form.
pub fn normalise_fingerprint(typed: &str) -> Option<String> {
    let hex: String = typed
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_compared_in_one_form() {
        let fp = sha256_hex(b"x");
        assert_eq!(fp.len(), 64);
        let typed: String = fp
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| String::from_utf8_lossy(c) + ":")
            .collect();
        assert_eq!(normalise_fingerprint(typed.trim_end_matches(':')), Some(fp));
        assert_eq!(normalise_fingerprint("abc"), None);
    }
}
