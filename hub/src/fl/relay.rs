//! What agents send and fetch over QUIC during a run: the committee's announcements and
//! sealed Shamir shares (relayed, never opened: the hub cannot), the public key shares (from
//! which the hub computes the collective key), encrypted updates (checked and added to the
//! round's aggregate as they arrive) and decryption shares. Protocol state only; the QUIC
//! endpoint calls in, the run loop ([`super::run`]) reads it.

use std::collections::{BTreeMap, BTreeSet};

use gatewatch_ckks::{
    collective_public_key, Aggregate, CommitteeConfig, ContributionReceipt, DecryptionShare, EncryptedUpdate,
    ParamSetId, PublicKeyShare, WireFormat,
};
use gatewatch_proto::bulk::Response;
use gatewatch_proto::fl::{self, ClientMetrics, MemberHello, SealedShare, Seat};
use sha2::Digest;
use uuid::Uuid;

/// The relay state of the run in progress.
#[derive(Debug)]
pub struct State {
    pub run_id: Uuid,
    pub config: CommitteeConfig,
    pub seats: Vec<Seat>,
    pub hellos: BTreeMap<u8, MemberHello>,
    pub public_shares: BTreeMap<u8, PublicKeyShare>,
    pub sealed: Vec<SealedShare>,
    /// The collective public key's wire bytes, once every member's share is in.
    pub key: Option<Vec<u8>>,
    /// Members that hold (and stored) their share of the key.
    pub ready: BTreeSet<u8>,
    pub round: Option<Round>,
    /// The update length (the model's parameter count).
    pub update_len: usize,
    /// The largest weight an update may claim.
    pub max_weight: u32,
}

/// One round's state.
#[derive(Debug)]
pub struct Round {
    pub number: u64,
    pub deadline_ms: i64,
    pub selected: BTreeSet<Uuid>,
    pub aggregate: Aggregate,
    pub receipts: Vec<ContributionReceipt>,
    /// Certificates (DER) of the agents whose receipts are in, for the committee's checks.
    pub certs: BTreeMap<Uuid, Vec<u8>>,
    pub metrics: BTreeMap<Uuid, ClientMetrics>,
    /// Clients that said they could not train, and why.
    pub declined: BTreeMap<Uuid, String>,
    /// Refused uploads: agent and reason.
    pub rejected: Vec<(Uuid, String)>,
    /// Uploads that came after the deadline.
    pub late: BTreeSet<Uuid>,
    pub bytes: u64,
    /// Evaluation-only answers (a round of zero epochs).
    pub evaluations: BTreeMap<Uuid, ClientMetrics>,
    pub decryption: Option<Decryption>,
}

/// The decryption request of a round and the shares it got.
#[derive(Debug)]
pub struct Decryption {
    pub participants: Vec<u8>,
    pub request: Vec<u8>,
    pub shares: BTreeMap<u8, DecryptionShare>,
}

impl Round {
    pub fn new(
        number: u64,
        deadline_ms: i64,
        selected: BTreeSet<Uuid>,
        params: ParamSetId,
        epoch: u64,
        len: usize,
    ) -> Result<Round, String> {
        Ok(Round {
            number,
            deadline_ms,
            selected,
            aggregate: Aggregate::new(params, epoch, number, len).map_err(|e| e.to_string())?,
            receipts: Vec::new(),
            certs: BTreeMap::new(),
            metrics: BTreeMap::new(),
            declined: BTreeMap::new(),
            rejected: Vec::new(),
            late: BTreeSet::new(),
            bytes: 0,
            evaluations: BTreeMap::new(),
            decryption: None,
        })
    }

    /// Every selected client has answered (uploaded, declined, or was refused).
    pub fn all_answered(&self) -> bool {
        self.selected.iter().all(|a| {
            self.metrics.contains_key(a)
                || self.declined.contains_key(a)
                || self.evaluations.contains_key(a)
                || self.rejected.iter().any(|(r, _)| r == a)
        })
    }
}

fn refuse(message: impl Into<String>) -> Response {
    Response::Error {
        message: message.into(),
    }
}

fn not_ready(reason: &str) -> Response {
    Response::NotReady { reason: reason.into() }
}

impl State {
    fn seat_of(&self, agent: Uuid) -> Option<u8> {
        self.seats.iter().find(|s| s.agent_id == agent).map(|s| s.member)
    }

    fn check_run(&self, run_id: Uuid, epoch: u64) -> Result<(), Response> {
        if run_id != self.run_id || epoch != self.config.epoch {
            return Err(refuse(format!(
                "no run {run_id} with key epoch {epoch} is in progress (run {}, epoch {})",
                self.run_id, self.config.epoch
            )));
        }
        Ok(())
    }

    fn check_member(&self, agent: Uuid, member: u8) -> Result<(), Response> {
        match self.seat_of(agent) {
            Some(m) if m == member => Ok(()),
            _ => Err(refuse(format!("agent {agent} does not hold seat {member}"))),
        }
    }

    /// A member's announcement: its seat, and the certificate it connected with.
    pub fn hello(&mut self, agent: Uuid, cert: &[u8], hello: MemberHello) -> Response {
        if let Err(r) = self
            .check_run(hello.run_id, hello.epoch)
            .and_then(|()| self.check_member(agent, hello.member))
        {
            return r;
        }
        if hello.agent_id != agent || hello.cert != fl::to_hex(cert) {
            return refuse("the announcement must carry the certificate of the agent sending it");
        }
        let signature = match fl::from_hex(&hello.signature, "signature") {
            Ok(s) => s,
            Err(e) => return refuse(e.to_string()),
        };
        if let Err(e) = fl::verify_signed(cert, agent, &hello.signed_bytes(), &signature) {
            return refuse(format!("announcement: {e}"));
        }
        self.hellos.insert(hello.member, hello);
        Response::Ok
    }

    pub fn committee(&self, run_id: Uuid, epoch: u64) -> Response {
        if let Err(r) = self.check_run(run_id, epoch) {
            return r;
        }
        if self.hellos.len() < self.seats.len() {
            return not_ready("not every member has announced its key");
        }
        Response::FlCommittee {
            hellos: self.hellos.values().cloned().collect(),
        }
    }

    /// A member's public key share and its sealed Shamir shares; computes the collective key
    /// once every member's share is in.
    pub fn key_shares(
        &mut self,
        agent: Uuid,
        run_id: Uuid,
        epoch: u64,
        member: u8,
        sealed: Vec<SealedShare>,
        bytes: &[u8],
    ) -> Response {
        if let Err(r) = self
            .check_run(run_id, epoch)
            .and_then(|()| self.check_member(agent, member))
        {
            return r;
        }
        let share = match PublicKeyShare::from_bytes(bytes) {
            Ok(s) if s.member() == member => s,
            Ok(_) => return refuse("the key share names another member"),
            Err(e) => return refuse(format!("key share: {e}")),
        };
        let others: BTreeSet<u8> = self.seats.iter().map(|s| s.member).filter(|m| *m != member).collect();
        let to: BTreeSet<u8> = sealed.iter().map(|s| s.to).collect();
        if to != others || sealed.len() != others.len() || sealed.iter().any(|s| s.from != member || s.epoch != epoch) {
            return refuse("one sealed share for every other member is needed");
        }
        self.sealed.retain(|s| s.from != member);
        self.sealed.extend(sealed);
        self.public_shares.insert(member, share);
        if self.public_shares.len() == self.seats.len() {
            let shares: Vec<PublicKeyShare> = self.public_shares.values().cloned().collect();
            match collective_public_key(&self.config, &shares) {
                Ok(pk) => self.key = Some(pk.to_bytes()),
                Err(e) => return refuse(format!("the collective key: {e}")),
            }
        }
        Response::Ok
    }

    pub fn key_ready(&mut self, agent: Uuid, run_id: Uuid, epoch: u64, member: u8) -> Response {
        if let Err(r) = self
            .check_run(run_id, epoch)
            .and_then(|()| self.check_member(agent, member))
        {
            return r;
        }
        self.ready.insert(member);
        Response::Ok
    }

    pub fn sealed_for(&self, agent: Uuid, run_id: Uuid, epoch: u64, member: u8) -> Response {
        if let Err(r) = self
            .check_run(run_id, epoch)
            .and_then(|()| self.check_member(agent, member))
        {
            return r;
        }
        let shares: Vec<SealedShare> = self.sealed.iter().filter(|s| s.to == member).cloned().collect();
        if shares.len() + 1 < self.seats.len() {
            return not_ready("not every member has sent its shares");
        }
        Response::FlSealed { shares }
    }

    pub fn public_key(&self, run_id: Uuid, epoch: u64) -> Result<Vec<u8>, Response> {
        self.check_run(run_id, epoch)?;
        self.key
            .clone()
            .ok_or_else(|| not_ready("the committee has not made the key yet"))
    }

    /// An encrypted update: checked, then added to the round's aggregate.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        agent: Uuid,
        cert: &[u8],
        run_id: Uuid,
        round: u64,
        receipt: ContributionReceipt,
        metrics: ClientMetrics,
        bytes: &[u8],
        now_ms: i64,
    ) -> Response {
        let (epoch, len, max_weight) = (self.config.epoch, self.update_len, self.max_weight);
        if run_id != self.run_id {
            return refuse(format!("run {run_id} is not in progress"));
        }
        let Some(r) = self.round.as_mut() else {
            return refuse("no round is open");
        };
        let reject = |r: &mut Round, why: String| {
            r.rejected.push((agent, why.clone()));
            refuse(why)
        };
        if round != r.number || receipt.round != round {
            return reject(r, format!("round {round} is not the open round {}", r.number));
        }
        if !r.selected.contains(&agent) {
            return reject(r, "this agent was not selected for the round".into());
        }
        if r.metrics.contains_key(&agent) {
            return reject(r, "this agent's update for the round is in already".into());
        }
        if now_ms > r.deadline_ms || r.decryption.is_some() {
            r.late.insert(agent);
            return refuse(format!("the round's deadline passed {} ms ago", now_ms - r.deadline_ms));
        }
        if receipt.agent_id != agent.to_string() || receipt.epoch != epoch {
            return reject(r, "the receipt names another agent or key epoch".into());
        }
        if let Err(e) = fl::verify_signed(cert, agent, &receipt.signed_bytes(), &receipt.signature) {
            return reject(r, format!("receipt: {e}"));
        }
        let update = match EncryptedUpdate::from_bytes(bytes) {
            Ok(u) => u,
            Err(e) => return reject(r, format!("update: {e}")),
        };
        if update.epoch() != epoch || update.len() != len {
            return reject(
                r,
                format!(
                    "the update has {} values for epoch {}; the round needs {len} for epoch {epoch}",
                    update.len(),
                    update.epoch()
                ),
            );
        }
        // The wire encoding is canonical (the decoder refuses anything else), so the digest of
        // the bytes received is the update's digest, without encoding it again.
        let digest: [u8; 32] = sha2::Sha256::digest(bytes).into();
        if digest != receipt.update_digest || update.weight() != receipt.weight {
            return reject(r, "the receipt is not for this update".into());
        }
        if update.weight() > max_weight {
            return reject(r, format!("weight {} is above the cap {max_weight}", update.weight()));
        }
        if let Err(e) = r.aggregate.add(&update) {
            return reject(r, format!("update: {e}"));
        }
        r.bytes += bytes.len() as u64;
        r.receipts.push(receipt);
        r.certs.insert(agent, cert.to_vec());
        r.metrics.insert(agent, metrics);
        Response::Ok
    }

    pub fn evaluated(&mut self, agent: Uuid, run_id: Uuid, round: u64, metrics: ClientMetrics) -> Response {
        match self.round.as_mut() {
            Some(r) if run_id == self.run_id && r.number == round && r.selected.contains(&agent) => {
                r.evaluations.insert(agent, metrics);
                Response::Ok
            }
            _ => refuse("no such round for this agent"),
        }
    }

    pub fn declined(&mut self, agent: Uuid, run_id: Uuid, round: u64, reason: String) -> Response {
        match self.round.as_mut() {
            Some(r) if run_id == self.run_id && r.number == round && r.selected.contains(&agent) => {
                r.declined.insert(agent, reason.chars().take(500).collect());
                Response::Ok
            }
            _ => refuse("no such round for this agent"),
        }
    }

    /// The round's decryption request, for a member asked to answer it.
    pub fn decryption(
        &self,
        agent: Uuid,
        run_id: Uuid,
        epoch: u64,
        round: u64,
    ) -> Result<(Vec<u8>, BTreeMap<Uuid, String>), Response> {
        self.check_run(run_id, epoch)?;
        let member = self
            .seat_of(agent)
            .ok_or_else(|| refuse("this agent is not on the committee"))?;
        let r = self
            .round
            .as_ref()
            .filter(|r| r.number == round)
            .ok_or_else(|| refuse(format!("round {round} is not open")))?;
        let d = r
            .decryption
            .as_ref()
            .filter(|d| d.participants.contains(&member))
            .ok_or_else(|| refuse("this member is not asked to decrypt the round"))?;
        let certs = r.certs.iter().map(|(a, c)| (*a, fl::to_hex(c))).collect();
        Ok((d.request.clone(), certs))
    }

    pub fn decryption_share(
        &mut self,
        agent: Uuid,
        run_id: Uuid,
        epoch: u64,
        round: u64,
        member: u8,
        bytes: &[u8],
    ) -> Response {
        if let Err(r) = self
            .check_run(run_id, epoch)
            .and_then(|()| self.check_member(agent, member))
        {
            return r;
        }
        let Some(d) = self
            .round
            .as_mut()
            .filter(|r| r.number == round)
            .and_then(|r| r.decryption.as_mut())
        else {
            return refuse(format!("round {round} is not being decrypted"));
        };
        if !d.participants.contains(&member) {
            return refuse("this member was not asked");
        }
        match DecryptionShare::from_bytes(bytes) {
            Ok(s) if s.member() == member => {
                d.shares.insert(member, s);
                Response::Ok
            }
            Ok(_) => refuse("the share names another member"),
            Err(e) => refuse(format!("decryption share: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatewatch_ckks::{encrypt_update, CommitteeMember, MemberKeygen, PublicKey, ShamirShare};

    const LEN: usize = 300;

    /// An agent's certificate (CN = its id) and a signer with its key.
    struct Agent {
        id: Uuid,
        cert: Vec<u8>,
        key: ring::signature::EcdsaKeyPair,
    }

    fn agent() -> Agent {
        let id = Uuid::new_v4();
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, id.to_string());
        let cert = params.self_signed(&key).expect("cert").der().to_vec();
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &key.serialize_der(),
            &rng,
        )
        .expect("pkcs8");
        Agent { id, cert, key }
    }

    impl Agent {
        fn sign(&self, msg: &[u8]) -> Vec<u8> {
            self.key
                .sign(&ring::rand::SystemRandom::new(), msg)
                .expect("sign")
                .as_ref()
                .to_vec()
        }

        /// A signed upload of `values` with `weight` for `round`.
        fn upload(&self, pk: &PublicKey, round: u64, values: &[f32], weight: u32) -> (ContributionReceipt, Vec<u8>) {
            let update = encrypt_update(pk, values, weight).expect("encrypt");
            let mut receipt = update.receipt(round, &self.id.to_string());
            receipt.signature = self.sign(&receipt.signed_bytes());
            (receipt, update.to_bytes())
        }
    }

    fn committee(epoch: u64) -> (CommitteeConfig, PublicKey, Vec<CommitteeMember>) {
        let mut rng = rand::rngs::OsRng;
        let config = CommitteeConfig::new(ParamSetId::Gw4096, epoch, 3, 2, [7; 32]).expect("config");
        let kg: Vec<MemberKeygen> = (1..=3)
            .map(|i| MemberKeygen::new(&config, i, &mut rng).expect("keygen"))
            .collect();
        let pk = collective_public_key(&config, &kg.iter().map(|m| m.public_share()).collect::<Vec<_>>()).expect("pk");
        let shares: Vec<Vec<ShamirShare>> = (1..=3)
            .map(|j| kg.iter().map(|m| m.share_for(j).expect("share")).collect())
            .collect();
        let members = kg
            .into_iter()
            .zip(shares)
            .map(|(m, s)| m.finish(&s, 2).expect("finish"))
            .collect();
        (config, pk, members)
    }

    fn state(config: CommitteeConfig, agents: &[&Agent]) -> State {
        let selected = agents.iter().map(|a| a.id).collect();
        State {
            run_id: Uuid::nil(),
            seats: agents
                .iter()
                .enumerate()
                .map(|(i, a)| Seat {
                    member: i as u8 + 1,
                    agent_id: a.id,
                })
                .collect(),
            hellos: BTreeMap::new(),
            public_shares: BTreeMap::new(),
            sealed: Vec::new(),
            key: None,
            ready: BTreeSet::new(),
            round: Some(Round::new(1, i64::MAX, selected, config.params, config.epoch, LEN).expect("round")),
            update_len: LEN,
            max_weight: 1000,
            config,
        }
    }

    fn refused(r: &Response, why: &str) {
        match r {
            Response::Error { message } => assert!(message.contains(why), "{message:?} should say {why:?}"),
            other => panic!("{other:?} should be refused for {why:?}"),
        }
    }

    #[test]
    fn bad_updates_are_refused_and_counted_and_good_ones_decrypt_as_the_average() {
        let (config, pk, mut members) = committee(5);
        let (a, b, c, outsider) = (agent(), agent(), agent(), agent());
        let mut s = state(config.clone(), &[&a, &b, &c]);
        let values = |v: f32| vec![v; LEN];
        let metrics = ClientMetrics::default();
        let now = 0;

        // Not selected / unknown agent.
        let (receipt, bytes) = outsider.upload(&pk, 1, &values(1.0), 10);
        refused(
            &s.update(
                outsider.id,
                &outsider.cert,
                Uuid::nil(),
                1,
                receipt,
                metrics.clone(),
                &bytes,
                now,
            ),
            "not selected",
        );
        // Unsigned.
        let (mut receipt, bytes) = a.upload(&pk, 1, &values(1.0), 10);
        receipt.signature.clear();
        refused(
            &s.update(a.id, &a.cert, Uuid::nil(), 1, receipt, metrics.clone(), &bytes, now),
            "signature",
        );
        // Signed by another agent's key (a forged receipt).
        let (mut receipt, bytes) = a.upload(&pk, 1, &values(1.0), 10);
        receipt.signature = b.sign(&receipt.signed_bytes());
        refused(
            &s.update(a.id, &a.cert, Uuid::nil(), 1, receipt, metrics.clone(), &bytes, now),
            "signature",
        );
        // Replayed from an earlier round.
        let (receipt, bytes) = a.upload(&pk, 0, &values(1.0), 10);
        refused(
            &s.update(a.id, &a.cert, Uuid::nil(), 0, receipt, metrics.clone(), &bytes, now),
            "not the open round",
        );
        // Wrong key epoch.
        let (_, old_pk, _) = committee(4);
        let (receipt, bytes) = a.upload(&old_pk, 1, &values(1.0), 10);
        refused(
            &s.update(a.id, &a.cert, Uuid::nil(), 1, receipt, metrics.clone(), &bytes, now),
            "epoch",
        );
        // Wrong length.
        let (receipt, bytes) = a.upload(&pk, 1, &vec![1.0; LEN - 1], 10);
        refused(
            &s.update(a.id, &a.cert, Uuid::nil(), 1, receipt, metrics.clone(), &bytes, now),
            "values",
        );
        // Oversized weight, and bytes that are not an update.
        let (receipt, bytes) = a.upload(&pk, 1, &values(1.0), 5000);
        refused(
            &s.update(a.id, &a.cert, Uuid::nil(), 1, receipt, metrics.clone(), &bytes, now),
            "cap",
        );
        let (receipt, mut bytes) = a.upload(&pk, 1, &values(1.0), 10);
        bytes.truncate(bytes.len() / 2);
        refused(
            &s.update(a.id, &a.cert, Uuid::nil(), 1, receipt, metrics.clone(), &bytes, now),
            "update",
        );
        assert_eq!(s.round.as_ref().map(|r| r.rejected.len()), Some(8));

        // Two good updates; a second one from the same agent is refused; one after the deadline too.
        let (receipt, bytes) = a.upload(&pk, 1, &values(1.0), 10);
        assert_eq!(
            s.update(a.id, &a.cert, Uuid::nil(), 1, receipt, metrics.clone(), &bytes, now),
            Response::Ok
        );
        let (receipt, bytes) = a.upload(&pk, 1, &values(9.0), 10);
        refused(
            &s.update(a.id, &a.cert, Uuid::nil(), 1, receipt, metrics.clone(), &bytes, now),
            "in already",
        );
        let (receipt, bytes) = b.upload(&pk, 1, &values(4.0), 30);
        assert_eq!(
            s.update(b.id, &b.cert, Uuid::nil(), 1, receipt, metrics.clone(), &bytes, now),
            Response::Ok
        );
        if let Some(r) = s.round.as_mut() {
            r.deadline_ms = -1;
        }
        let (receipt, bytes) = c.upload(&pk, 1, &values(100.0), 10);
        refused(
            &s.update(c.id, &c.cert, Uuid::nil(), 1, receipt, metrics.clone(), &bytes, now),
            "deadline",
        );

        // Two members decrypt the sum: the weighted average (1·10 + 4·30) / 40 = 3.25.
        let round = s.round.as_ref().expect("round");
        assert!(round.late.contains(&c.id));
        let request = round.aggregate.decryption_request(round.receipts.clone(), 2, &[1, 3]);
        let shares: Vec<_> = [0usize, 2]
            .iter()
            .map(|&i| {
                members[i]
                    .partial_decrypt(&request, &mut rand::rngs::OsRng)
                    .expect("share")
            })
            .collect();
        let average = round.aggregate.combine(&shares).expect("combine");
        assert!(average.iter().all(|v| (v - 3.25).abs() < 1e-3), "{:?}", &average[..3]);
        // One share is not enough.
        assert!(round.aggregate.combine(&shares[..1]).is_err());
    }

    #[test]
    fn a_member_refuses_to_decrypt_a_single_update() {
        let (config, pk, mut members) = committee(9);
        let a = agent();
        let mut s = state(config, &[&a]);
        let (receipt, bytes) = a.upload(&pk, 1, &[0.5; LEN], 10);
        assert_eq!(
            s.update(
                a.id,
                &a.cert,
                Uuid::nil(),
                1,
                receipt,
                ClientMetrics::default(),
                &bytes,
                0
            ),
            Response::Ok
        );
        let round = s.round.as_ref().expect("round");
        let request = round.aggregate.decryption_request(round.receipts.clone(), 1, &[1, 2]);
        let refused = members[0].partial_decrypt(&request, &mut rand::rngs::OsRng);
        assert!(refused.is_err(), "one update must never be decrypted alone");
    }

    #[test]
    fn the_committee_exchange_is_checked_by_seat_and_run() {
        let (config, _, _) = committee(2);
        let (a, b) = (agent(), agent());
        let mut s = state(config, &[&a, &b]);
        assert!(matches!(s.committee(Uuid::nil(), 2), Response::NotReady { .. }));
        refused(&s.committee(Uuid::new_v4(), 2), "no run");
        let mut hello = MemberHello {
            run_id: Uuid::nil(),
            epoch: 2,
            member: 1,
            agent_id: a.id,
            hpke_public: "00".repeat(32),
            cert: fl::to_hex(&a.cert),
            signature: String::new(),
        };
        hello.signature = fl::to_hex(&a.sign(&hello.signed_bytes()));
        // b may not announce a's seat, nor a with a forged signature.
        refused(&s.hello(b.id, &b.cert, hello.clone()), "does not hold seat");
        let mut forged = hello.clone();
        forged.hpke_public = "11".repeat(32);
        refused(&s.hello(a.id, &a.cert, forged), "signature");
        assert_eq!(s.hello(a.id, &a.cert, hello), Response::Ok);
        refused(&s.sealed_for(a.id, Uuid::nil(), 2, 2), "does not hold seat");
    }
}
