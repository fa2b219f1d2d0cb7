//! The hub's certificate authority. Generated on first start into `data_dir/pki`, it signs
//! one client certificate per enrolled agent (subject CN = the agent id) and the hub's own
//! server certificate. Agents pin it by its SHA-256 fingerprint at enrollment.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use uuid::Uuid;

/// The DNS name every hub server certificate carries; agents check the hub against it,
/// whatever address they reach it at.
pub const HUB_SERVER_NAME: &str = gatewatch_proto::enroll::HUB_SERVER_NAME;
/// How long an agent certificate is valid.
pub const AGENT_CERT_DAYS: i64 = 365;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}; move the pki directory away to generate a new CA (every agent must enroll again)")]
    Corrupt { path: PathBuf, reason: String },
    #[error("the certificate signing request is not valid: {0}")]
    BadCsr(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Tls(String),
}

/// A certificate issued to an agent.
#[derive(Debug, Clone)]
pub struct Issued {
    pub pem: String,
    /// SHA-256 of the DER certificate, lower-case hex: what the hub checks on every connection.
    pub fingerprint: String,
    pub not_after: chrono::DateTime<chrono::Utc>,
}

/// The CA key and certificate.
pub struct Ca {
    key: KeyPair,
    /// The CA as rcgen needs it to sign (same subject and key as the stored certificate).
    issuer: rcgen::Certificate,
    pem: String,
    der: CertificateDer<'static>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("fingerprint", &self.fingerprint()).finish()
    }
}

impl Ca {
    /// Loads the CA from `data_dir/pki`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Ca, PkiError> {
        let dir = data_dir.join("pki");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| PkiError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io(&dir))?;
        let (key_path, cert_path) = (dir.join("ca.key"), dir.join("ca.pem"));
        if !key_path.exists() && !cert_path.exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, "gatewatch hub CA");
            params.distinguished_name.push(DnType::OrganizationName, "gatewatch");
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(20 * 365);
            params.serial_number = Some(random_serial());
            let cert = params.self_signed(&key)?;
            write_private(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
            std::fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
            tracing::info!(path = %dir.display(), "created the hub's certificate authority");
        }
        let corrupt = |path: &Path, reason: String| PkiError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| corrupt(&key_path, e.to_string()))?;
        let pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let params = CertificateParams::from_ca_cert_pem(&pem).map_err(|e| corrupt(&cert_path, e.to_string()))?;
        let der = pem_to_der(&pem).ok_or_else(|| corrupt(&cert_path, "no certificate in the file".into()))?;
        if key.public_key_der() != public_key_of(&der).unwrap_or_default() {
            return Err(corrupt(&key_path, "does not belong to ca.pem".into()));
        }
        let issuer = params.self_signed(&key)?;
        Ok(Ca { key, issuer, pem, der })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// SHA-256 of the CA certificate (DER), lower-case hex.
    pub fn fingerprint(&self) -> String {
        gatewatch_proto::enroll::sha256_hex(&self.der)
    }

    /// Signs an agent's CSR. Only the CSR's key is used: the subject, validity and usage are
    /// the hub's, so a CSR cannot ask for more than a client certificate for `agent`.
    pub fn sign_agent(&self, csr_pem: &str, agent: Uuid) -> Result<Issued, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, agent.to_string());
        params
            .distinguished_name
            .push(DnType::OrganizationName, "gatewatch agent");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(10);
        params.not_after = now + time::Duration::days(AGENT_CERT_DAYS);
        params.serial_number = Some(random_serial());
        let not_after = chrono::DateTime::from_timestamp(params.not_after.unix_timestamp(), 0).unwrap_or_default();
        let cert = params.signed_by(&csr.public_key, &self.issuer, &self.key)?;
        Ok(Issued {
            pem: cert.pem(),
            fingerprint: gatewatch_proto::enroll::sha256_hex(cert.der()),
            not_after,
        })
    }

    /// A fresh server certificate for the hub's TLS listeners, named [`HUB_SERVER_NAME`] and
    /// `extra_names` (host names or IP addresses).
    pub fn server_identity(
        &self,
        extra_names: &[String],
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, HUB_SERVER_NAME);
        let mut sans = vec![SanType::DnsName(
            HUB_SERVER_NAME
                .try_into()
                .map_err(|e: rcgen::Error| PkiError::Tls(e.to_string()))?,
        )];
        for name in extra_names {
            match name.parse::<std::net::IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(
                    name.as_str()
                        .try_into()
                        .map_err(|e: rcgen::Error| PkiError::Tls(e.to_string()))?,
                )),
            }
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(825);
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![cert.der().clone(), self.der.clone()], key))
    }

    /// TLS server settings, with a fresh server certificate, that require a client certificate
    /// from this CA (callers set their ALPN). Whether that agent is still trusted (not revoked,
    /// current certificate) is checked after the handshake against the
    /// [`crate::broker::identity::Registry`].
    pub fn server_config(&self, extra_names: &[String]) -> Result<rustls::ServerConfig, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).map_err(|e| PkiError::Tls(e.to_string()))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        let (chain, key) = self.server_identity(extra_names)?;
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| PkiError::Tls(e.to_string()))
    }
}

/// Who a verified client certificate belongs to: the agent id in its CN and its fingerprint.
pub fn agent_of(cert: &CertificateDer<'_>) -> Option<(Uuid, String)> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let cn = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    let agent = Uuid::parse_str(cn).ok()?;
    Some((agent, gatewatch_proto::enroll::sha256_hex(cert)))
}

fn public_key_of(der: &[u8]) -> Option<Vec<u8>> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(parsed.public_key().raw.to_vec())
}

fn pem_to_der(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(key: &KeyPair) -> String {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "asks for anything");
        params.serialize_request(key).expect("csr").pem().expect("pem")
    }

    #[test]
    fn the_ca_survives_a_restart_and_signs_client_certificates_for_agents() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("created");
        let again = Ca::load_or_create(dir.path()).expect("loaded");
        assert_eq!(ca.fingerprint(), again.fingerprint());
        let mode = std::fs::metadata(dir.path().join("pki/ca.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let agent = Uuid::now_v7();
        let issued = again
            .sign_agent(&csr(&KeyPair::generate().expect("key")), agent)
            .expect("signed");
        let der = pem_to_der(&issued.pem).expect("pem");
        let (who, fingerprint) = agent_of(&der).expect("identity");
        assert_eq!((who, fingerprint), (agent, issued.fingerprint.clone()));

        // The certificate chains to the CA as a client certificate (what the TLS listeners check).
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der.clone()).expect("root");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .expect("verifier");
        let now = rustls::pki_types::UnixTime::now();
        verifier
            .verify_client_cert(&der, &[], now)
            .expect("a client cert of this CA");
    }

    #[test]
    fn a_forged_csr_or_a_mismatched_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Ca::load_or_create(dir.path()).expect("created");
        let good = csr(&KeyPair::generate().expect("key"));
        // One base64 digit changed inside the signed part: the signature no longer matches.
        let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
        let mut body: Vec<char> = lines[1].chars().collect();
        body[30] = if body[30] == 'A' { 'B' } else { 'A' };
        lines[1] = body.into_iter().collect();
        let tampered = lines.join("\n");
        assert!(matches!(
            ca.sign_agent(&tampered, Uuid::nil()),
            Err(PkiError::BadCsr(_))
        ));
        assert!(matches!(
            ca.sign_agent("not a csr", Uuid::nil()),
            Err(PkiError::BadCsr(_))
        ));

        std::fs::remove_file(dir.path().join("pki/ca.key")).expect("rm");
        write_private(
            &dir.path().join("pki/ca.key"),
            KeyPair::generate().expect("key").serialize_pem().as_bytes(),
        )
        .expect("write");
        assert!(matches!(Ca::load_or_create(dir.path()), Err(PkiError::Corrupt { .. })));
    }
}
