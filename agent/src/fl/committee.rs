//! This agent as a member of a run's key committee: it makes its CKKS key share, exchanges
//! Shamir shares with the other members through the hub (HPKE-sealed to each recipient's
//! per-epoch key, signed with the enrollment key, so the hub relays what it can neither read
//! nor forge), and later answers decryption requests for aggregates that carry enough validly
//! signed receipts. Its secret share is kept in `state_dir/fl/member-<run>-<epoch>.bin`
//! (0600) with the record of the rounds it answered, so a restart never issues a second share
//! for a round.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gatewatch_ckks::{
    CommitteeConfig, CommitteeMember, DecryptionRequest, MemberKeygen, ParamSetId, ShamirShare, WireFormat,
};
use gatewatch_proto::bulk::{Request, Response};
use gatewatch_proto::fl::{self, from_hex, to_hex, KeygenOrder, MemberHello, SealedShare};
use hpke::{Deserializable, Kem as _, Serializable};
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::uplink::bulk::BulkClient;
use crate::uplink::identity::Identity;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// How long keygen waits for the other members.
const KEYGEN_WAIT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(300);

/// The parameter set named `name`.
pub fn params(name: &str) -> Result<ParamSetId, String> {
    ParamSetId::ALL
        .into_iter()
        .find(|p| p.name() == name)
        .ok_or_else(|| format!("unknown CKKS parameter set {name:?}"))
}

fn member_path(dir: &Path, run: Uuid, epoch: u64) -> PathBuf {
    dir.join(format!("member-{run}-{epoch}.bin"))
}

/// The committee memberships this agent holds, in memory and on disk.
#[derive(Debug)]
pub struct Memberships {
    dir: PathBuf,
    held: tokio::sync::Mutex<HashMap<(Uuid, u64), CommitteeMember>>,
}

impl Memberships {
    pub fn new(dir: &Path) -> Memberships {
        Memberships {
            dir: dir.to_path_buf(),
            held: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Runs keygen for `order`: returns once this member holds its share of the key.
    pub async fn keygen(&self, order: &KeygenOrder, identity: &Identity, bulk: &BulkClient) -> Result<(), String> {
        let me = order
            .seats
            .iter()
            .find(|s| s.agent_id == identity.agent_id)
            .ok_or("this agent has no seat on the committee")?
            .member;
        let params = params(&order.params)?;
        let seed: [u8; 32] = from_hex(&order.crp_seed, "crp_seed")
            .map_err(|e| e.to_string())?
            .try_into()
            .map_err(|_| "crp_seed is not 32 bytes")?;
        let members = u8::try_from(order.seats.len()).map_err(|_| "too many seats")?;
        let config =
            CommitteeConfig::new(params, order.epoch, members, order.threshold, seed).map_err(|e| e.to_string())?;

        // 1. Announce this epoch's HPKE key, signed with the enrollment key.
        let mut rng = rand::rngs::OsRng;
        let (hpke_secret, hpke_public) = Kem::gen_keypair(&mut rng);
        let mut hello = MemberHello {
            run_id: order.run_id,
            epoch: order.epoch,
            member: me,
            agent_id: identity.agent_id,
            hpke_public: to_hex(&hpke_public.to_bytes()),
            cert: to_hex(identity.cert_der()),
            signature: String::new(),
        };
        hello.signature = to_hex(&identity.sign(&hello.signed_bytes()).map_err(|e| e.to_string())?);
        expect_ok(bulk.exchange(&Request::FlHello { hello }, &[]).await)?;

        // 2. Every member's key, checked against its certificate from our CA.
        let hellos = poll(|| async {
            match bulk
                .exchange(
                    &Request::FlCommittee {
                        run_id: order.run_id,
                        epoch: order.epoch,
                    },
                    &[],
                )
                .await
            {
                Ok((Response::FlCommittee { hellos }, _)) => Ok(Some(hellos)),
                Ok((Response::NotReady { .. }, _)) => Ok(None),
                Ok((other, _)) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;
        let mut keys: BTreeMap<u8, (<Kem as hpke::Kem>::PublicKey, Vec<u8>, Uuid)> = BTreeMap::new();
        for seat in &order.seats {
            let h = hellos
                .iter()
                .find(|h| h.member == seat.member && h.agent_id == seat.agent_id && h.epoch == order.epoch)
                .ok_or_else(|| format!("no announcement from member {}", seat.member))?;
            let cert = from_hex(&h.cert, "cert").map_err(|e| e.to_string())?;
            identity
                .check_peer(&cert, h.agent_id)
                .map_err(|e| format!("member {}: {e}", h.member))?;
            let signature = from_hex(&h.signature, "signature").map_err(|e| e.to_string())?;
            fl::verify_signed(&cert, h.agent_id, &h.signed_bytes(), &signature)
                .map_err(|e| format!("member {}'s announcement: {e}", h.member))?;
            let public = <Kem as hpke::Kem>::PublicKey::from_bytes(
                &from_hex(&h.hpke_public, "hpke_public").map_err(|e| e.to_string())?,
            )
            .map_err(|e| format!("member {}'s HPKE key: {e}", h.member))?;
            keys.insert(seat.member, (public, cert, h.agent_id));
        }

        // 3. This member's key share; a Shamir share sealed to each other member.
        let keygen = MemberKeygen::new(&config, me, &mut rng).map_err(|e| e.to_string())?;
        let mut sealed = Vec::new();
        for (&to, (public, _, _)) in keys.iter().filter(|(m, _)| **m != me) {
            let share = Zeroizing::new(keygen.share_for(to).map_err(|e| e.to_string())?.to_bytes());
            let info = SealedShare::info(order.epoch, me, to);
            let (enc, ciphertext) =
                hpke::single_shot_seal::<Aead, Kdf, Kem, _>(&hpke::OpModeS::Base, public, &info, &share, b"", &mut rng)
                    .map_err(|e| format!("sealing for member {to}: {e}"))?;
            let mut s = SealedShare {
                epoch: order.epoch,
                from: me,
                to,
                enc: to_hex(&enc.to_bytes()),
                ciphertext: to_hex(&ciphertext),
                signature: String::new(),
            };
            s.signature = to_hex(&identity.sign(&s.signed_bytes()).map_err(|e| e.to_string())?);
            sealed.push(s);
        }
        let own = keygen.share_for(me).map_err(|e| e.to_string())?;
        let public_share = keygen.public_share().to_bytes();
        expect_ok(
            bulk.exchange(
                &Request::FlKeyShares {
                    run_id: order.run_id,
                    epoch: order.epoch,
                    member: me,
                    sealed,
                    len: public_share.len() as u64,
                },
                &public_share,
            )
            .await,
        )?;

        // 4. The shares sealed to this member, each checked against its sender's key.
        let shares = poll(|| async {
            match bulk
                .exchange(
                    &Request::FlSealed {
                        run_id: order.run_id,
                        epoch: order.epoch,
                        member: me,
                    },
                    &[],
                )
                .await
            {
                Ok((Response::FlSealed { shares }, _)) => Ok(Some(shares)),
                Ok((Response::NotReady { .. }, _)) => Ok(None),
                Ok((other, _)) => Err(format!("unexpected answer {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;
        let mut received = vec![own];
        for s in &shares {
            let (_, cert, agent) = keys
                .get(&s.from)
                .ok_or_else(|| format!("a share from unknown member {}", s.from))?;
            if s.to != me || s.epoch != order.epoch {
                return Err(format!(
                    "a share from member {} is not for this member and epoch",
                    s.from
                ));
            }
            let signature = from_hex(&s.signature, "signature").map_err(|e| e.to_string())?;
            fl::verify_signed(cert, *agent, &s.signed_bytes(), &signature)
                .map_err(|e| format!("the share from member {}: {e}", s.from))?;
            let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&from_hex(&s.enc, "enc").map_err(|e| e.to_string())?)
                .map_err(|e| format!("the share from member {}: {e}", s.from))?;
            let plain = Zeroizing::new(
                hpke::single_shot_open::<Aead, Kdf, Kem>(
                    &hpke::OpModeR::Base,
                    &hpke_secret,
                    &enc,
                    &SealedShare::info(order.epoch, s.from, me),
                    &from_hex(&s.ciphertext, "ciphertext").map_err(|e| e.to_string())?,
                    b"",
                )
                .map_err(|e| format!("the share from member {} does not open: {e}", s.from))?,
            );
            let share = ShamirShare::from_bytes(&plain).map_err(|e| e.to_string())?;
            if share.sender() != s.from || share.recipient() != me {
                return Err(format!("the share from member {} names other seats", s.from));
            }
            received.push(share);
        }
        let member = keygen
            .finish(&received, order.min_contributions)
            .map_err(|e| e.to_string())?;
        self.keep(order.run_id, member).await?;
        expect_ok(
            bulk.exchange(
                &Request::FlKeyReady {
                    run_id: order.run_id,
                    epoch: order.epoch,
                    member: me,
                },
                &[],
            )
            .await,
        )?;
        tracing::info!(run = %order.run_id, epoch = order.epoch, member = me, "committee key share made");
        Ok(())
    }

    async fn keep(&self, run: Uuid, member: CommitteeMember) -> Result<(), String> {
        let path = member_path(&self.dir, run, member.config().epoch);
        let secret = member.export_secret();
        crate::state_file::write_atomic(&path, &secret, true).map_err(|e| format!("{}: {e}", path.display()))?;
        self.held.lock().await.insert((run, member.config().epoch), member);
        Ok(())
    }

    /// Answers the round's decryption request, if every receipt in it is signed by the agent
    /// it names (with a certificate from our CA).
    pub async fn decrypt(
        &self,
        order: &fl::DecryptOrder,
        identity: &Identity,
        bulk: &BulkClient,
    ) -> Result<(), String> {
        let (response, bytes) = bulk
            .exchange(
                &Request::FlDecryption {
                    run_id: order.run_id,
                    epoch: order.epoch,
                    round: order.round,
                },
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        let Response::FlDecryption { certs, .. } = response else {
            return Err(format!("unexpected answer {response:?}"));
        };
        let request = DecryptionRequest::from_bytes(&bytes).map_err(|e| e.to_string())?;
        check_receipts(&request, &certs, identity)?;
        let mut held = self.held.lock().await;
        let key = (order.run_id, order.epoch);
        let member = match held.entry(key) {
            std::collections::hash_map::Entry::Occupied(held) => held.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                let path = member_path(&self.dir, order.run_id, order.epoch);
                let secret = Zeroizing::new(std::fs::read(&path).map_err(|e| {
                    format!(
                        "this agent holds no key share for epoch {} ({}: {e})",
                        order.epoch,
                        path.display()
                    )
                })?);
                slot.insert(CommitteeMember::import_secret(&secret).map_err(|e| e.to_string())?)
            }
        };
        let share = member
            .partial_decrypt(&request, &mut rand::rngs::OsRng)
            .map_err(|e| format!("decryption refused: {e}"))?;
        // The record of answered rounds must survive a restart before the share leaves.
        let path = member_path(&self.dir, order.run_id, order.epoch);
        crate::state_file::write_atomic(&path, &member.export_secret(), true)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let me = member.id();
        drop(held);
        let bytes = share.to_bytes();
        expect_ok(
            bulk.exchange(
                &Request::FlDecryptionShare {
                    run_id: order.run_id,
                    epoch: order.epoch,
                    round: order.round,
                    member: me,
                    len: bytes.len() as u64,
                },
                &bytes,
            )
            .await,
        )?;
        tracing::info!(run = %order.run_id, round = order.round, receipts = request.receipts.len(), "decryption share sent");
        Ok(())
    }

    /// Forgets the shares of runs other than `keep` (a new run has a new committee).
    pub async fn retain(&self, keep: Uuid) {
        self.held.lock().await.retain(|(run, _), _| *run == keep);
        if let Ok(dir) = std::fs::read_dir(&self.dir) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("member-") && !name.contains(&keep.to_string()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Every receipt must be signed by the agent it names, with a certificate from our CA.
fn check_receipts(
    request: &DecryptionRequest,
    certs: &BTreeMap<Uuid, String>,
    identity: &Identity,
) -> Result<(), String> {
    for r in &request.receipts {
        let agent = Uuid::parse_str(&r.agent_id).map_err(|_| format!("receipt names {:?}", r.agent_id))?;
        let cert = certs
            .get(&agent)
            .ok_or_else(|| format!("no certificate for the receipt of {agent}"))
            .and_then(|c| from_hex(c, "cert").map_err(|e| e.to_string()))?;
        identity
            .check_peer(&cert, agent)
            .map_err(|e| format!("receipt of {agent}: {e}"))?;
        fl::verify_signed(&cert, agent, &r.signed_bytes(), &r.signature)
            .map_err(|e| format!("receipt of {agent}: {e}"))?;
    }
    Ok(())
}

fn expect_ok(answer: Result<(Response, Vec<u8>), crate::uplink::bulk::BulkError>) -> Result<(), String> {
    match answer {
        Ok((Response::Ok, _)) => Ok(()),
        Ok((other, _)) => Err(format!("unexpected answer {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Asks until `ask` has an answer (or fails, or [`KEYGEN_WAIT`] passes).
async fn poll<T, F, Fut>(mut ask: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let end = Instant::now() + KEYGEN_WAIT;
    loop {
        if let Some(v) = ask().await? {
            return Ok(v);
        }
        if Instant::now() >= end {
            return Err(format!(
                "the other committee members did not answer within {} s",
                KEYGEN_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
