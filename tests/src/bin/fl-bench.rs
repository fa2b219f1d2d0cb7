//! Federated-learning benchmark: one round with N in-process clients, on loopback.
//!
//! A key committee (3 members, threshold 2) makes the collective CKKS key with the library's
//! real keygen; each client encrypts an update the size of the shipped model and uploads it
//! over a real QUIC connection to an endpoint that runs the hub's own checks and aggregation
//! (`gatewatch_hub::fl::relay`): receipt signature, decoding, epoch, length, `Aggregate::add`;
//! two members make decryption shares and the hub combines them. Local training is measured
//! apart: the agent's own round code on 1,000 windows of simulated traffic, one epoch, one
//! core. Prints bytes per upload, hub time per added upload, committee decryption and combine
//! time, and the round's overhead without local training.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use gatewatch_ckks::{
    collective_public_key, encrypt_update, CommitteeConfig, CommitteeMember, MemberKeygen, ParamSetId, PublicKey,
    ShamirShare, WireFormat,
};
use gatewatch_hub::fl::relay::{Round, State};
use gatewatch_proto::bulk::Response;
use gatewatch_proto::fl::{ClientMetrics, Seat};
use rand::Rng;
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(about = "Federated-learning round benchmark: N clients, real CKKS, real QUIC, on loopback")]
struct Args {
    /// Client counts, one round each.
    #[arg(long, value_delimiter = ',', default_value = "3,10,100")]
    clients: Vec<usize>,
    /// CKKS parameter set.
    #[arg(long, default_value = "gw-8192")]
    params: String,
    /// Skip the local-training measurement.
    #[arg(long)]
    no_training: bool,
}

struct Client {
    id: Uuid,
    cert: Vec<u8>,
    key: ring::signature::EcdsaKeyPair,
}

fn client() -> Result<Client> {
    let id = Uuid::new_v4();
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, id.to_string());
    let cert = params.self_signed(&key)?.der().to_vec();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &key.serialize_der(),
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|e| anyhow::anyhow!("key: {e}"))?;
    Ok(Client { id, cert, key })
}

fn committee(params: ParamSetId) -> Result<(CommitteeConfig, PublicKey, Vec<CommitteeMember>, Duration)> {
    let started = Instant::now();
    let mut rng = rand::rngs::OsRng;
    let mut seed = [0u8; 32];
    rng.fill(&mut seed);
    let config = CommitteeConfig::new(params, 1, 3, 2, seed)?;
    let kg: Vec<MemberKeygen> = (1..=3)
        .map(|i| MemberKeygen::new(&config, i, &mut rng))
        .collect::<Result<_, _>>()?;
    let pk = collective_public_key(&config, &kg.iter().map(|m| m.public_share()).collect::<Vec<_>>())?;
    let shares: Vec<Vec<ShamirShare>> = (1..=3)
        .map(|j| kg.iter().map(|m| m.share_for(j)).collect::<Result<_, _>>())
        .collect::<Result<_, _>>()?;
    let members = kg
        .into_iter()
        .zip(shares)
        .map(|(m, s)| m.finish(&s, 2))
        .collect::<Result<_, _>>()?;
    Ok((config, pk, members, started.elapsed()))
}

/// A QUIC server with a throwaway certificate, and a client that trusts it.
fn quic_pair() -> Result<(quinn::Endpoint, quinn::Endpoint, std::net::SocketAddr)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).map_err(anyhow::Error::msg)?;
    let mut server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)?;
    server_tls.alpn_protocols = vec![gatewatch_proto::bulk::ALPN.to_vec()];
    let server_config =
        quinn::ServerConfig::with_crypto(Arc::new(quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)?));
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse()?)?;
    let addr = server.local_addr()?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der)?;
    let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_tls.alpn_protocols = vec![gatewatch_proto::bulk::ALPN.to_vec()];
    let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls)?,
    )));
    Ok((server, client, addr))
}

struct RoundFigures {
    upload_bytes: usize,
    encrypt_ms: f64,
    add_ms: f64,
    uploads_wall: Duration,
    decrypt_ms: f64,
    combine_ms: f64,
    max_error: f64,
}

async fn round(n: usize, params: ParamSetId, len: usize) -> Result<RoundFigures> {
    let (config, pk, mut members, _) = committee(params)?;
    let clients: Vec<Client> = (0..n).map(|_| client()).collect::<Result<_>>()?;
    let selected: BTreeSet<Uuid> = clients.iter().map(|c| c.id).collect();
    let state = Arc::new(tokio::sync::Mutex::new(State {
        run_id: Uuid::nil(),
        config: config.clone(),
        seats: (1..=3)
            .map(|m| Seat {
                member: m,
                agent_id: Uuid::new_v4(),
            })
            .collect(),
        hellos: BTreeMap::new(),
        public_shares: BTreeMap::new(),
        sealed: Vec::new(),
        key: Some(pk.to_bytes()),
        ready: (1..=3).collect(),
        round: Some(Round::new(1, i64::MAX, selected, params, config.epoch, len).map_err(anyhow::Error::msg)?),
        update_len: len,
        max_weight: 10_000,
    }));
    // The updates: small random values, weight 100 each; their exact average for the check.
    let mut rng = rand::thread_rng();
    let mut expected = vec![0f64; len];
    let mut uploads = Vec::with_capacity(n);
    let encrypt_started = Instant::now();
    for c in &clients {
        let values: Vec<f32> = (0..len).map(|_| rng.gen_range(-0.01..0.01)).collect();
        for (e, v) in expected.iter_mut().zip(&values) {
            *e += f64::from(*v) / n as f64;
        }
        let update = encrypt_update(&pk, &values, 100)?;
        let mut receipt = update.receipt(1, &c.id.to_string());
        receipt.signature = c
            .key
            .sign(&ring::rand::SystemRandom::new(), &receipt.signed_bytes())
            .map_err(|e| anyhow::anyhow!("sign: {e}"))?
            .as_ref()
            .to_vec();
        uploads.push((c.id, c.cert.clone(), receipt, update.to_bytes()));
    }
    let encrypt_ms = encrypt_started.elapsed().as_secs_f64() * 1e3 / n as f64;
    let upload_bytes = uploads.first().map_or(0, |u| u.3.len());

    let (server, client_ep, addr) = quic_pair()?;
    let hub_state = state.clone();
    let add_time = Arc::new(std::sync::Mutex::new(Duration::ZERO));
    let add_total = add_time.clone();
    // The hub side: each stream is [agent id, cert len, cert, receipt JSON len, receipt, update].
    let hub = tokio::spawn(async move {
        let Some(incoming) = server.accept().await else {
            return;
        };
        let Ok(conn) = incoming.await else {
            return;
        };
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let Ok(buf) = recv.read_to_end(64 << 20).await else {
                break;
            };
            let Some((agent, cert, receipt, update)) = parse(&buf) else {
                break;
            };
            let started = Instant::now();
            let answer = hub_state.lock().await.update(
                agent,
                &cert,
                Uuid::nil(),
                1,
                receipt,
                ClientMetrics::default(),
                &update,
                0,
            );
            if let Ok(mut t) = add_total.lock() {
                *t += started.elapsed();
            }
            let ok = answer == Response::Ok;
            let _ = send.write_all(&[u8::from(ok)]).await;
            let _ = send.finish();
        }
    });
    let conn = client_ep.connect(addr, "localhost")?.await?;
    let uploads_started = Instant::now();
    for (agent, cert, receipt, update) in &uploads {
        let (mut send, mut recv) = conn.open_bi().await?;
        let receipt = serde_json::to_vec(receipt)?;
        send.write_all(agent.as_bytes()).await?;
        send.write_all(&(cert.len() as u32).to_le_bytes()).await?;
        send.write_all(cert).await?;
        send.write_all(&(receipt.len() as u32).to_le_bytes()).await?;
        send.write_all(&receipt).await?;
        send.write_all(update).await?;
        send.finish()?;
        let ok = recv.read_to_end(1).await?;
        anyhow::ensure!(ok == [1], "the hub refused an upload");
    }
    let uploads_wall = uploads_started.elapsed();
    conn.close(0u32.into(), b"done");
    let _ = tokio::time::timeout(Duration::from_secs(5), hub).await;
    let add_ms = add_time.lock().map(|t| t.as_secs_f64()).unwrap_or_default() * 1e3 / n as f64;

    let guard = state.lock().await;
    let r = guard.round.as_ref().context("round")?;
    anyhow::ensure!(r.metrics.len() == n, "{} of {n} uploads added", r.metrics.len());
    let request = r.aggregate.decryption_request(r.receipts.clone(), 2, &[1, 2]);
    let started = Instant::now();
    let mut shares = Vec::new();
    for m in members.iter_mut().take(2) {
        shares.push(m.partial_decrypt(&request, &mut rand::rngs::OsRng)?);
    }
    let decrypt_ms = started.elapsed().as_secs_f64() * 1e3 / 2.0;
    let started = Instant::now();
    let average = r.aggregate.combine_f64(&shares)?;
    let combine_ms = started.elapsed().as_secs_f64() * 1e3;
    let max_error = average
        .iter()
        .zip(&expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0, f64::max);
    Ok(RoundFigures {
        upload_bytes,
        encrypt_ms,
        add_ms,
        uploads_wall,
        decrypt_ms,
        combine_ms,
        max_error,
    })
}

#[allow(clippy::type_complexity)]
fn parse(buf: &[u8]) -> Option<(Uuid, Vec<u8>, gatewatch_ckks::ContributionReceipt, Vec<u8>)> {
    let agent = Uuid::from_slice(buf.get(..16)?).ok()?;
    let cert_len = u32::from_le_bytes(buf.get(16..20)?.try_into().ok()?) as usize;
    let cert = buf.get(20..20 + cert_len)?.to_vec();
    let at = 20 + cert_len;
    let receipt_len = u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?) as usize;
    let receipt = serde_json::from_slice(buf.get(at + 4..at + 4 + receipt_len)?).ok()?;
    Some((agent, cert, receipt, buf.get(at + 4 + receipt_len..)?.to_vec()))
}

/// Seconds of the agent's local training per 1,000 windows per epoch.
fn training_seconds_per_1000() -> Result<(f64, usize)> {
    use gatewatch_agent::capture::sim::{self, SimConfig};
    use gatewatch_agent::fl::{synth, train};
    use gatewatch_agent::flow::FlowConfig;
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default");
    let global = train::Global::load(&model).map_err(anyhow::Error::msg)?;
    let target = std::net::Ipv4Addr::new(192, 168, 9, 20);
    // Benign windows from the simulator's background traffic, attack windows synthesised.
    let benign_sim = sim::simulate(&SimConfig {
        duration: Duration::from_secs(120),
        ..SimConfig::new(target)
    })?;
    let mut extractor = gatewatch_agent::pipeline::Extractor::new(FlowConfig::default());
    let mut rows = Vec::new();
    extractor.run_frames(&benign_sim.frames, &mut |rec| rows.push(rec.features_f32()));
    extractor.flush(&mut |rec| rows.push(rec.features_f32()));
    let benign: Vec<gatewatch_models::Window> = rows
        .windows(gatewatch_models::WINDOW)
        .take(500)
        .map(|w| std::array::from_fn(|i| w[i]))
        .collect();
    let refs: Vec<&gatewatch_models::Window> = benign.iter().collect();
    let mut windows: Vec<train::Labelled> = benign
        .iter()
        .map(|w| train::Labelled {
            window: Box::new(*w),
            padded: 0,
            family: gatewatch_models::Family::Benign,
        })
        .collect();
    let mut rng = rand::thread_rng();
    for family in synth::families() {
        let attack = synth::attack_rows(target, synth::scenarios(family)[0], 1, FlowConfig::default())
            .map_err(anyhow::Error::msg)?;
        windows.extend(synth::windows(
            family,
            &attack,
            &refs,
            1000usize.saturating_sub(benign.len()) / 7 + 1,
            &mut rng,
        ));
    }
    windows.truncate(1000);
    let samples = train::samples(&windows, &global.scaler);
    let settings = train::Settings {
        epochs: 1,
        learning_rate: 1e-3,
        batch_size: 64,
        clip_norm: 10.0,
        max_seconds: Duration::from_secs(3600),
        seed: 1,
    };
    let started = Instant::now();
    train::train_round(&global, &samples, &[], settings).map_err(anyhow::Error::msg)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((seconds * 1000.0 / samples.len() as f64, samples.len()))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let params = ParamSetId::ALL
        .into_iter()
        .find(|p| p.name() == args.params)
        .with_context(|| format!("--params {:?}: use gw-4096, gw-8192 or gw-16384", args.params))?;
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default/params.bin");
    let len = gatewatch_models::params::load(&model)?.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (_, _, _, keygen) = committee(params)?;
    println!(
        "fl-bench: {} parameters, CKKS {} (N = {}), committee 3, threshold 2",
        len,
        params.name(),
        params.context().n
    );
    println!(
        "committee keygen (3 members, in-process): {:.1} ms",
        keygen.as_secs_f64() * 1e3
    );
    println!("clients | bytes/upload | encrypt ms/client | hub add ms/upload | QUIC uploads s | decrypt ms/member | combine ms | round overhead s | max |error|");
    for &n in &args.clients {
        let f = runtime.block_on(round(n, params, len))?;
        let overhead = f.uploads_wall.as_secs_f64() + (2.0 * f.decrypt_ms + f.combine_ms) / 1e3;
        println!(
            "{n:>7} | {:>12} | {:>17.1} | {:>17.2} | {:>14.2} | {:>17.1} | {:>10.1} | {:>16.2} | {:.1e}",
            f.upload_bytes,
            f.encrypt_ms,
            f.add_ms,
            f.uploads_wall.as_secs_f64(),
            f.decrypt_ms,
            f.combine_ms,
            overhead,
            f.max_error
        );
    }
    println!("(round overhead: every upload over one QUIC connection in turn, checked and added, plus two members' decryption shares made one after the other and combined; clients encrypt in parallel on their own gateways, so their encryption is listed apart)");
    if !args.no_training {
        let (per_1000, windows) = training_seconds_per_1000()?;
        println!("local training: {per_1000:.2} s per 1,000 windows per epoch ({windows} windows, one core, the agent's round code)");
    }
    Ok(())
}
