//! The agent's identity on the hub: a key made here, a certificate from the hub's CA (CN =
//! the agent id), and that CA, kept in `state_dir/identity` (key 0600). `enroll` gets them
//! with a one-time token; [`Identity::tls_config`] turns them into mutual TLS settings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gatewatch_proto::enroll::{self, EnrollRequest, EnrollResponse, HUB_SERVER_NAME};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}; enroll again (gatewatch-agent enroll)")]
    Corrupt { path: PathBuf, reason: String },
    #[error("--hub {0:?} is not an http:// or https:// URL")]
    HubUrl(String),
    #[error("cannot reach the hub at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the hub refused the enrollment ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the hub's CA has fingerprint {got}, not the {expected} given with --ca-sha256: this is not your hub, or the fingerprint is mistyped")]
    WrongCa { expected: String, got: String },
    #[error("the hub's answer is not valid: {0}")]
    BadAnswer(String),
    #[error("TLS settings: {0}")]
    Tls(String),
}

/// What enrollment leaves besides the PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Enrollment {
    agent_id: Uuid,
    hub_url: String,
    mqtt_url: String,
    quic_port: u16,
    ca_sha256: String,
    not_after: String,
}

/// An enrolled agent's credentials.
#[derive(Clone)]
pub struct Identity {
    pub agent_id: Uuid,
    /// Where the hub said its MQTT listener is.
    pub mqtt_url: String,
    /// The hub's QUIC port, on the broker's host.
    pub quic_port: u16,
    cert: CertificateDer<'static>,
    key: Arc<PrivateKeyDer<'static>>,
    ca: CertificateDer<'static>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("agent_id", &self.agent_id)
            .field("mqtt_url", &self.mqtt_url)
            .finish_non_exhaustive()
    }
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("identity")
}

impl Identity {
    /// The stored identity, `None` if the agent has not enrolled.
    pub fn load(state_dir: &Path) -> Result<Option<Identity>, IdentityError> {
        let dir = dir(state_dir);
        let meta_path = dir.join("enrollment.json");
        let meta = match std::fs::read(&meta_path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(IdentityError::Io {
                    path: meta_path,
                    source,
                })
            }
        };
        let corrupt = |path: &Path, reason: String| IdentityError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let meta: Enrollment = serde_json::from_slice(&meta).map_err(|e| corrupt(&meta_path, e.to_string()))?;
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|source| IdentityError::Io { path, source })
        };
        let cert_path = dir.join("agent.pem");
        let cert =
            CertificateDer::from_pem_slice(&read("agent.pem")?).map_err(|e| corrupt(&cert_path, e.to_string()))?;
        let key_path = dir.join("agent.key");
        let key = PrivateKeyDer::from_pem_slice(&read("agent.key")?).map_err(|e| corrupt(&key_path, e.to_string()))?;
        let ca_path = dir.join("ca.pem");
        let ca = CertificateDer::from_pem_slice(&read("ca.pem")?).map_err(|e| corrupt(&ca_path, e.to_string()))?;
        if enroll::sha256_hex(&ca) != meta.ca_sha256 {
            return Err(corrupt(
                &ca_path,
                "does not match the fingerprint recorded at enrollment".into(),
            ));
        }
        Ok(Some(Identity {
            agent_id: meta.agent_id,
            mqtt_url: meta.mqtt_url,
            quic_port: meta.quic_port,
            cert,
            key: Arc::new(key),
            ca,
        }))
    }

    /// Mutual TLS towards the hub: this agent's certificate, and only a server certificate
    /// from the hub's CA named [`HUB_SERVER_NAME`] is accepted, whatever address the hub has.
    pub fn tls_config(&self) -> Result<rustls::ClientConfig, IdentityError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca.clone())
            .map_err(|e| IdentityError::Tls(e.to_string()))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| IdentityError::Tls(e.to_string()))?;
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| IdentityError::Tls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(HubVerifier { inner }))
            .with_client_auth_cert(vec![self.cert.clone(), self.ca.clone()], self.key.clone_key())
            .map_err(|e| IdentityError::Tls(e.to_string()))
    }
}

impl Identity {
    /// Signs `message` with the enrollment key (ECDSA P-256 SHA-256, ASN.1): what federated
    /// learning uses so that the hub can relay this agent's messages but not forge them.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, IdentityError> {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, self.key.secret_der(), &rng)
            .map_err(|e| IdentityError::Tls(format!("the enrollment key cannot sign: {e}")))?;
        key.sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| IdentityError::Tls(format!("signing failed: {e}")))
    }

    /// This agent's certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert
    }

    /// Checks that another agent's certificate comes from this agent's CA and names `agent`.
    pub fn check_peer(&self, cert: &[u8], agent: Uuid) -> Result<(), IdentityError> {
        check_issued(&CertificateDer::from(cert.to_vec()), &self.ca, agent)
    }
}

/// WebPKI verification against the pinned CA, with the hub's fixed name in place of the
/// address dialled (the CA is the hub's own and issues agent certificates for client use only).
#[derive(Debug)]
struct HubVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for HubVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let hub = ServerName::try_from(HUB_SERVER_NAME).map_err(|e| rustls::Error::General(e.to_string()))?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &hub, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What `enroll` needs to know.
#[derive(Debug, Clone)]
pub struct EnrollParams {
    /// The hub's HTTP API, e.g. `http://hub.example:8000`.
    pub hub_url: String,
    pub token: String,
    /// The CA fingerprint printed with the token; `None` trusts whatever CA the hub sends.
    pub ca_sha256: Option<String>,
    pub agent_id: Uuid,
    pub name: String,
    pub hostname: String,
}

/// Enrolls with the hub and stores the identity (replacing an earlier one).
pub fn enroll(state_dir: &Path, params: &EnrollParams) -> Result<Identity, IdentityError> {
    let base = params.hub_url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(IdentityError::HubUrl(params.hub_url.clone()));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| IdentityError::Tls(e.to_string()))?;
    let mut csr_params = rcgen::CertificateParams::default();
    csr_params.distinguished_name = rcgen::DistinguishedName::new();
    csr_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, params.agent_id.to_string());
    let csr = csr_params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
    let request = EnrollRequest {
        token: params.token.trim().to_string(),
        agent_id: params.agent_id,
        name: params.name.clone(),
        hostname: params.hostname.clone(),
        csr_pem: csr,
    };
    let url = format!("{base}/api/v1/agents/enroll");
    let http: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let unreachable = |e: ureq::Error| IdentityError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    };
    let mut response = http.post(&url).send_json(&request).map_err(unreachable)?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(body);
        return Err(IdentityError::Refused { status, message });
    }
    let answer: EnrollResponse = response
        .body_mut()
        .read_json()
        .map_err(|e| IdentityError::BadAnswer(e.to_string()))?;
    let ca = CertificateDer::from_pem_slice(answer.ca_pem.as_bytes())
        .map_err(|e| IdentityError::BadAnswer(format!("CA: {e}")))?;
    let got = enroll::sha256_hex(&ca);
    if let Some(expected) = &params.ca_sha256 {
        if &got != expected {
            return Err(IdentityError::WrongCa {
                expected: expected.clone(),
                got,
            });
        }
    }
    let cert = CertificateDer::from_pem_slice(answer.certificate_pem.as_bytes())
        .map_err(|e| IdentityError::BadAnswer(format!("certificate: {e}")))?;
    check_issued(&cert, &ca, params.agent_id)?;

    let dir = dir(state_dir);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IdentityError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let meta = Enrollment {
        agent_id: params.agent_id,
        hub_url: base.to_string(),
        mqtt_url: answer.mqtt_url.clone(),
        quic_port: answer.quic_port,
        ca_sha256: got,
        not_after: answer.not_after.clone(),
    };
    let meta = serde_json::to_vec_pretty(&meta).map_err(|e| IdentityError::BadAnswer(e.to_string()))?;
    // The metadata last: an interrupted enrollment leaves no half identity that `load` accepts.
    for (name, bytes, private) in [
        ("agent.key", key.serialize_pem().into_bytes(), true),
        ("agent.pem", answer.certificate_pem.clone().into_bytes(), false),
        ("ca.pem", answer.ca_pem.clone().into_bytes(), false),
        ("enrollment.json", meta, false),
    ] {
        let path = dir.join(name);
        crate::state_file::write_atomic(&path, &bytes, private).map_err(io(&path))?;
    }
    Identity::load(state_dir)?.ok_or_else(|| IdentityError::BadAnswer("identity not readable after writing".into()))
}

/// The certificate must chain to `ca` as a client certificate and name this agent.
fn check_issued(cert: &CertificateDer<'_>, ca: &CertificateDer<'static>, agent: Uuid) -> Result<(), IdentityError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.clone())
        .map_err(|e| IdentityError::BadAnswer(format!("CA: {e}")))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| IdentityError::Tls(e.to_string()))?;
    verifier
        .verify_client_cert(cert, &[], UnixTime::now())
        .map_err(|e| IdentityError::BadAnswer(format!("certificate does not chain to the CA: {e}")))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).map_err(|e| IdentityError::BadAnswer(e.to_string()))?;
    let cn = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("");
    if cn != agent.to_string() {
        return Err(IdentityError::BadAnswer(format!(
            "certificate names {cn:?}, not this agent {agent}"
        )));
    }
    Ok(())
}

/// `sudo gatewatch-agent enroll` on a packaged gateway runs as root but fills a state directory
/// that the service user owns: hand what root wrote there (the agent id, the identity) to that
/// owner, or the service could not read its own key. Does nothing when not run as root.
pub fn give_to_state_dir_owner(state_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{chown, MetadataExt};
    let owner = std::fs::metadata(state_dir)?;
    if owner.uid() == 0 {
        return Ok(());
    }
    let identity = dir(state_dir);
    let mut paths = vec![state_dir.join("agent_id"), identity.clone()];
    for entry in std::fs::read_dir(&identity)? {
        paths.push(entry?.path());
    }
    for path in paths {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.uid() == 0 => chown(&path, Some(owner.uid()), Some(owner.gid()))?,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{chown, MetadataExt};

    use super::*;

    #[test]
    fn root_written_identity_goes_to_the_state_dir_owner() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = tmp.path().join("state");
        std::fs::create_dir_all(dir(&state)).expect("mkdir");
        std::fs::write(state.join("agent_id"), "x").expect("write");
        std::fs::write(dir(&state).join("agent.key"), "k").expect("write");
        let me = std::fs::metadata(&state).expect("stat").uid();
        if me != 0 {
            // Only root can give files away; as another user everything is already the owner's.
            give_to_state_dir_owner(&state).expect("no-op");
            return;
        }
        chown(&state, Some(65534), Some(65534)).expect("chown state dir");
        give_to_state_dir_owner(&state).expect("hand over");
        for path in [state.join("agent_id"), dir(&state), dir(&state).join("agent.key")] {
            let meta = std::fs::metadata(&path).expect("stat");
            assert_eq!((meta.uid(), meta.gid()), (65534, 65534), "{}", path.display());
        }
    }
}
