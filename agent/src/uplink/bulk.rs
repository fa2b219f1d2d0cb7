//! The agent's end of the QUIC channel: downloads of the hub's model (checked file by file
//! against the SHA-256 the hub lists), uploads of flow records, and downloads of captures an
//! operator uploaded for replay (streamed to disk, checked against the command's SHA-256). One connection, opened on
//! first use and again after it drops; one stream per request.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gatewatch_proto::bulk::{self, FlowUpload, Request, Response};
use tokio::sync::Mutex;

use super::identity::Identity;

#[derive(Debug, thiserror::Error)]
pub enum BulkError {
    #[error("cannot resolve the hub {0}")]
    Resolve(String),
    #[error("QUIC: {0}")]
    Quic(String),
    #[error("the hub answered: {0}")]
    Hub(String),
    #[error("the hub's answer is not valid: {0}")]
    Protocol(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn quic(e: impl std::fmt::Display) -> BulkError {
    BulkError::Quic(e.to_string())
}

/// A QUIC client of the hub.
#[derive(Debug)]
pub struct BulkClient {
    endpoint: quinn::Endpoint,
    hub: String,
    addr: SocketAddr,
    connection: Mutex<Option<quinn::Connection>>,
}

impl BulkClient {
    /// `host` as in the broker URL; `port` the hub's QUIC port.
    pub fn new(identity: &Identity, host: &str, port: u16) -> Result<BulkClient, BulkError> {
        use std::net::ToSocketAddrs;
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| BulkError::Resolve(format!("{host}:{port}: {e}")))?
            .next()
            .ok_or_else(|| BulkError::Resolve(format!("{host}:{port}")))?;
        let mut tls = identity.tls_config().map_err(quic)?;
        tls.alpn_protocols = vec![bulk::ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(quic)?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(10)));
        config.transport_config(Arc::new(transport));
        let bind: SocketAddr = if addr.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }
            .parse()
            .map_err(quic)?;
        let mut endpoint = quinn::Endpoint::client(bind).map_err(quic)?;
        endpoint.set_default_client_config(config);
        Ok(BulkClient {
            endpoint,
            hub: format!("{host}:{port}"),
            addr,
            connection: Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<quinn::Connection, BulkError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.close_reason().is_none()) {
            return Ok(c.clone());
        }
        // The server name is not checked by name (see `Identity::tls_config`); any valid one will do.
        let connecting = self
            .endpoint
            .connect(self.addr, gatewatch_proto::enroll::HUB_SERVER_NAME)
            .map_err(quic)?;
        let c = tokio::time::timeout(Duration::from_secs(10), connecting)
            .await
            .map_err(|_| BulkError::Quic(format!("no answer from {} in 10 s", self.hub)))?
            .map_err(quic)?;
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn request(&self, request: &Request) -> Result<(Response, quinn::RecvStream), BulkError> {
        let conn = self.connection().await?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(quic)?;
        send.write_all(&bulk::encode(request)).await.map_err(quic)?;
        send.finish().map_err(quic)?;
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix).await.map_err(quic)?;
        let len = bulk::frame_len(prefix).map_err(|e| BulkError::Protocol(e.to_string()))?;
        let mut body = vec![0u8; len];
        recv.read_exact(&mut body).await.map_err(quic)?;
        let response: Response = bulk::decode(&body).map_err(|e| BulkError::Protocol(e.to_string()))?;
        if let Response::Error { message } = response {
            return Err(BulkError::Hub(message));
        }
        Ok((response, recv))
    }

    /// Downloads model `version` into `models_dir/<version>` (written beside, checked, then
    /// renamed into place) and returns that directory.
    pub async fn fetch_model(&self, version: &str, models_dir: &Path) -> Result<PathBuf, BulkError> {
        let (response, mut recv) = self
            .request(&Request::Model {
                version: version.into(),
            })
            .await?;
        let Response::Model { version: got, files } = response else {
            return Err(BulkError::Protocol("expected a model".into()));
        };
        let safe_version = !got.is_empty()
            && got.len() <= 100
            && !got.starts_with('.')
            && got
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if got != version || !safe_version {
            return Err(BulkError::Protocol(format!("asked for model {version}, got {got:?}")));
        }
        if let Some(bad) = files.iter().find(|f| !f.name_is_safe() || f.len > 256 << 20) {
            return Err(BulkError::Protocol(format!("file {:?} of {} bytes", bad.name, bad.len)));
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BulkError::Io { path, source }
        };
        let staging = models_dir.join(format!(".incoming-{version}"));
        let _ = tokio::fs::remove_dir_all(&staging).await;
        tokio::fs::create_dir_all(&staging).await.map_err(io(&staging))?;
        for file in &files {
            let mut bytes = vec![0u8; file.len as usize];
            recv.read_exact(&mut bytes).await.map_err(quic)?;
            let sum = gatewatch_proto::enroll::sha256_hex(&bytes);
            if sum != file.sha256 {
                let _ = tokio::fs::remove_dir_all(&staging).await;
                return Err(BulkError::Protocol(format!(
                    "{}: checksum {sum} is not {}",
                    file.name, file.sha256
                )));
            }
            let path = staging.join(&file.name);
            tokio::fs::write(&path, &bytes).await.map_err(io(&path))?;
        }
        let dir = models_dir.join(version);
        let _ = tokio::fs::remove_dir_all(&dir).await;
        tokio::fs::rename(&staging, &dir).await.map_err(io(&dir))?;
        Ok(dir)
    }

    /// Downloads capture `upload_id` into `dir/<upload_id>.pcap`, streaming it to disk, and
    /// checks it is the `len` bytes with SHA-256 `sha256` that the command announced.
    pub async fn fetch_capture(
        &self,
        upload_id: uuid::Uuid,
        len: u64,
        sha256: &str,
        dir: &Path,
    ) -> Result<PathBuf, BulkError> {
        use sha2::{Digest, Sha256};
        use tokio::io::AsyncWriteExt;
        let (response, mut recv) = self.request(&Request::Capture { upload_id }).await?;
        let Response::Capture { len: got, .. } = response else {
            return Err(BulkError::Protocol("expected a capture".into()));
        };
        if got != len {
            return Err(BulkError::Protocol(format!(
                "capture {upload_id} is {got} bytes, the command said {len}"
            )));
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BulkError::Io { path, source }
        };
        tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
        let path = dir.join(format!("{upload_id}.pcap"));
        let mut file = tokio::fs::File::create(&path).await.map_err(io(&path))?;
        let mut hasher = Sha256::new();
        let mut left = len;
        let mut chunk = vec![0u8; 64 << 10];
        while left > 0 {
            let want = chunk.len().min(left as usize);
            recv.read_exact(&mut chunk[..want]).await.map_err(quic)?;
            hasher.update(&chunk[..want]);
            file.write_all(&chunk[..want]).await.map_err(io(&path))?;
            left -= want as u64;
        }
        file.flush().await.map_err(io(&path))?;
        let sum: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if sum != sha256 {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(BulkError::Protocol(format!(
                "capture {upload_id}: checksum {sum} is not {sha256}"
            )));
        }
        Ok(path)
    }

    /// Sends `request` followed by `body` (raw bytes its frame announces, if any) and reads the
    /// answer, with the raw bytes that follow it when it announces some (federated learning).
    pub async fn exchange(&self, request: &Request, body: &[u8]) -> Result<(Response, Vec<u8>), BulkError> {
        let conn = self.connection().await?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(quic)?;
        send.write_all(&bulk::encode(request)).await.map_err(quic)?;
        send.write_all(body).await.map_err(quic)?;
        send.finish().map_err(quic)?;
        let mut prefix = [0u8; 4];
        recv.read_exact(&mut prefix).await.map_err(quic)?;
        let len = bulk::frame_len(prefix).map_err(|e| BulkError::Protocol(e.to_string()))?;
        let mut frame = vec![0u8; len];
        recv.read_exact(&mut frame).await.map_err(quic)?;
        let response: Response = bulk::decode(&frame).map_err(|e| BulkError::Protocol(e.to_string()))?;
        let trailing = match &response {
            Response::Error { message } => return Err(BulkError::Hub(message.clone())),
            Response::Blob { len, .. } | Response::FlDecryption { len, .. } => *len,
            _ => 0,
        };
        if trailing > bulk::MAX_FL_BYTES {
            return Err(BulkError::Protocol(format!("{trailing} bytes announced")));
        }
        let mut bytes = vec![0u8; trailing as usize];
        recv.read_exact(&mut bytes).await.map_err(quic)?;
        if let Response::Blob { sha256, .. } = &response {
            let sum = gatewatch_proto::enroll::sha256_hex(&bytes);
            if &sum != sha256 {
                return Err(BulkError::Protocol(format!("checksum {sum} is not {sha256}")));
            }
        }
        Ok((response, bytes))
    }

    /// Uploads flow records; the hub stores each once however often it is sent.
    pub async fn upload_flows(&self, records: Vec<FlowUpload>) -> Result<u64, BulkError> {
        match self.request(&Request::Flows { records }).await?.0 {
            Response::Stored { count } => Ok(count),
            other => Err(BulkError::Protocol(format!("unexpected answer {other:?}"))),
        }
    }
}
