//! Compact, versioned binary wire format.
//!
//! Every message starts with the magic `GWCK`, a version byte ([`WIRE_VERSION`]), a kind byte and the
//! parameter-set code. Integers are little-endian. Polynomials are bit-packed prime by prime, each residue
//! in exactly the bit width of its prime (e.g. 60 bits), so a ciphertext of the default set takes
//! `2 · N · (60 + 60) / 8` bytes; the common random polynomial never travels, only its 32-byte seed.
//!
//! Decoding never panics on hostile input: every length is checked against the remaining bytes before
//! anything is allocated, every residue is checked to be below its prime, counts are bounded, and trailing
//! bytes are rejected. The `serde` implementations of the message types carry these bytes.

use crate::aggregate::{Aggregate, EncryptedUpdate};
use crate::ckks::{Ciphertext, PublicKey, SecretPoly};
use crate::error::Error;
use crate::multiparty::{
    CommitteeConfig, CommitteeMember, ContributionReceipt, DecryptionRequest, DecryptionShare, Issued, PublicKeyShare,
    ShamirShare, MAX_CHUNKS, MAX_COMMITTEE,
};
use crate::params::{Context, ParamSetId};

/// Magic prefix of every message.
pub const MAGIC: [u8; 4] = *b"GWCK";
/// Current wire version.
pub const WIRE_VERSION: u8 = 1;
/// Largest number of receipts in one decryption request.
pub const MAX_RECEIPTS: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    PublicKey = 1,
    EncryptedUpdate = 2,
    Aggregate = 3,
    PublicKeyShare = 4,
    DecryptionShare = 5,
    DecryptionRequest = 6,
    ShamirShare = 7,
    MemberSecret = 8,
}

/// Binary encoding of a protocol message.
pub trait WireFormat: Sized {
    /// Encodes to bytes.
    fn to_bytes(&self) -> Vec<u8>;
    /// Decodes bytes, rejecting anything malformed.
    fn from_bytes(bytes: &[u8]) -> Result<Self, Error>;
}

/// Bytes one packed polynomial takes.
pub(crate) fn poly_bytes(ctx: &Context) -> usize {
    ctx.bits.iter().map(|&b| (ctx.n * b as usize).div_ceil(8)).sum()
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn new(kind: Kind, params: ParamSetId, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 7);
        buf.extend_from_slice(&MAGIC);
        buf.push(WIRE_VERSION);
        buf.push(kind as u8);
        buf.push(params.code());
        Self { buf }
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// Variable-length byte string with a u16 length (callers keep it short).
    fn short_bytes(&mut self, v: &[u8]) {
        let len = v.len().min(u16::MAX as usize);
        self.u16(len as u16);
        self.bytes(&v[..len]);
    }
    fn poly(&mut self, ctx: &Context, p: &[u64]) {
        let n = ctx.n;
        for (l, &bits) in ctx.bits.iter().enumerate() {
            let mut acc: u128 = 0;
            let mut nbits: u32 = 0;
            for &x in &p[l * n..(l + 1) * n] {
                acc |= (x as u128) << nbits;
                nbits += bits;
                if nbits >= 64 {
                    self.buf.extend_from_slice(&(acc as u64).to_le_bytes());
                    acc >>= 64;
                    nbits -= 64;
                }
            }
            let tail = nbits.div_ceil(8) as usize;
            self.buf.extend_from_slice(&(acc as u64).to_le_bytes()[..tail]);
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], kind: Kind) -> Result<(Self, ParamSetId), Error> {
        if bytes.len() < 7 || bytes[..4] != MAGIC {
            return Err(Error::Decode("bad magic"));
        }
        if bytes[4] != WIRE_VERSION {
            return Err(Error::UnsupportedVersion(bytes[4]));
        }
        if bytes[5] != kind as u8 {
            return Err(Error::Decode("unexpected message kind"));
        }
        let params = ParamSetId::from_code(bytes[6]).ok_or(Error::Decode("unknown parameter set"))?;
        Ok((Self { buf: bytes, pos: 7 }, params))
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.remaining() < n {
            return Err(Error::Decode("truncated"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Error> {
        let mut b = [0u8; 2];
        b.copy_from_slice(self.take(2)?);
        Ok(u16::from_le_bytes(b))
    }
    fn u32(&mut self) -> Result<u32, Error> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }
    fn array32(&mut self) -> Result<[u8; 32], Error> {
        let mut b = [0u8; 32];
        b.copy_from_slice(self.take(32)?);
        Ok(b)
    }
    fn short_bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = self.u16()? as usize;
        self.take(len)
    }
    /// Checks that `count` polynomials fit in what is left before allocating them.
    fn expect_polys(&self, ctx: &Context, count: usize) -> Result<(), Error> {
        let need = count
            .checked_mul(poly_bytes(ctx))
            .ok_or(Error::Decode("length overflow"))?;
        if self.remaining() < need {
            return Err(Error::Decode("truncated"));
        }
        Ok(())
    }
    fn poly(&mut self, ctx: &Context) -> Result<Vec<u64>, Error> {
        let n = ctx.n;
        let mut out = Vec::with_capacity(2 * n);
        for (l, &bits) in ctx.bits.iter().enumerate() {
            let q = ctx.moduli[l];
            let src = self.take((n * bits as usize).div_ceil(8))?;
            let mask = (1u128 << bits) - 1;
            let mut acc: u128 = 0;
            let mut nbits: u32 = 0;
            let mut pos = 0;
            for _ in 0..n {
                while nbits < bits {
                    if pos + 8 <= src.len() {
                        let mut w = [0u8; 8];
                        w.copy_from_slice(&src[pos..pos + 8]);
                        acc |= (u64::from_le_bytes(w) as u128) << nbits;
                        nbits += 64;
                        pos += 8;
                    } else if pos < src.len() {
                        acc |= (src[pos] as u128) << nbits;
                        nbits += 8;
                        pos += 1;
                    } else {
                        return Err(Error::Decode("truncated polynomial"));
                    }
                }
                let x = (acc & mask) as u64;
                acc >>= bits;
                nbits -= bits;
                if x >= q {
                    return Err(Error::Decode("coefficient not below its modulus"));
                }
                out.push(x);
            }
            if acc != 0 {
                return Err(Error::Decode("non-zero padding bits"));
            }
        }
        Ok(out)
    }
    fn finish(self) -> Result<(), Error> {
        if self.remaining() != 0 {
            return Err(Error::Decode("trailing bytes"));
        }
        Ok(())
    }
}

fn check_log_scale(ctx: &Context, log_scale: u8) -> Result<u32, Error> {
    let ls = log_scale as u32;
    if ls == 0 || ls as f64 + 2.0 >= ctx.log2_q() {
        return Err(Error::Decode("scale out of range"));
    }
    Ok(ls)
}

fn read_chunk_count(r: &mut Reader<'_>, ctx: &Context, len: u32) -> Result<usize, Error> {
    let chunks = r.u32()? as usize;
    if len == 0 || chunks != crate::aggregate::chunks_for(ctx.n, len as usize) || chunks > MAX_CHUNKS {
        return Err(Error::Decode("ciphertext count does not match the length"));
    }
    Ok(chunks)
}

impl WireFormat for PublicKey {
    fn to_bytes(&self) -> Vec<u8> {
        let ctx = self.params.context();
        let mut w = Writer::new(Kind::PublicKey, self.params, 40 + poly_bytes(ctx));
        w.u64(self.epoch);
        w.bytes(&self.crp_seed);
        w.poly(ctx, &self.p0);
        w.buf
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (mut r, params) = Reader::new(bytes, Kind::PublicKey)?;
        let ctx = params.context();
        let epoch = r.u64()?;
        let seed = r.array32()?;
        r.expect_polys(ctx, 1)?;
        let p0 = r.poly(ctx)?;
        r.finish()?;
        PublicKey::from_parts(params, epoch, seed, p0)
    }
}

fn write_cts(w: &mut Writer, ctx: &Context, cts: &[Ciphertext]) {
    w.u32(cts.len() as u32);
    for ct in cts {
        w.poly(ctx, &ct.c0);
        w.poly(ctx, &ct.c1);
    }
}

fn read_cts(r: &mut Reader<'_>, params: ParamSetId, chunks: usize, log_scale: u32) -> Result<Vec<Ciphertext>, Error> {
    let ctx = params.context();
    r.expect_polys(ctx, 2 * chunks)?;
    (0..chunks)
        .map(|_| {
            Ok(Ciphertext {
                params,
                log_scale,
                c0: r.poly(ctx)?,
                c1: r.poly(ctx)?,
            })
        })
        .collect()
}

impl WireFormat for EncryptedUpdate {
    fn to_bytes(&self) -> Vec<u8> {
        let ctx = self.params.context();
        let mut w = Writer::new(
            Kind::EncryptedUpdate,
            self.params,
            24 + 2 * self.cts.len() * poly_bytes(ctx),
        );
        w.u64(self.epoch);
        w.u32(self.weight);
        w.u32(self.len);
        w.u8(self.cts.first().map_or(ctx.log_scale, |c| c.log_scale) as u8);
        write_cts(&mut w, ctx, &self.cts);
        w.buf
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (mut r, params) = Reader::new(bytes, Kind::EncryptedUpdate)?;
        let ctx = params.context();
        let epoch = r.u64()?;
        let weight = r.u32()?;
        if weight == 0 {
            return Err(Error::Decode("zero weight"));
        }
        let len = r.u32()?;
        let log_scale = check_log_scale(ctx, r.u8()?)?;
        let chunks = read_chunk_count(&mut r, ctx, len)?;
        let cts = read_cts(&mut r, params, chunks, log_scale)?;
        r.finish()?;
        Ok(EncryptedUpdate {
            params,
            epoch,
            weight,
            len,
            cts,
        })
    }
}

impl WireFormat for Aggregate {
    fn to_bytes(&self) -> Vec<u8> {
        let ctx = self.params.context();
        let mut w = Writer::new(Kind::Aggregate, self.params, 40 + 2 * self.cts.len() * poly_bytes(ctx));
        w.u64(self.epoch);
        w.u64(self.round);
        w.u64(self.total_weight);
        w.u32(self.count);
        w.u32(self.len);
        w.u8(self.log_scale as u8);
        write_cts(&mut w, ctx, &self.cts);
        w.buf
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (mut r, params) = Reader::new(bytes, Kind::Aggregate)?;
        let ctx = params.context();
        let epoch = r.u64()?;
        let round = r.u64()?;
        let total_weight = r.u64()?;
        let count = r.u32()?;
        let len = r.u32()?;
        let log_scale = check_log_scale(ctx, r.u8()?)?;
        let chunks = read_chunk_count(&mut r, ctx, len)?;
        let cts = read_cts(&mut r, params, chunks, log_scale)?;
        r.finish()?;
        Ok(Aggregate {
            params,
            epoch,
            round,
            len,
            log_scale,
            total_weight,
            count,
            cts,
        })
    }
}

impl WireFormat for PublicKeyShare {
    fn to_bytes(&self) -> Vec<u8> {
        let ctx = self.params.context();
        let mut w = Writer::new(Kind::PublicKeyShare, self.params, 9 + poly_bytes(ctx));
        w.u64(self.epoch);
        w.u8(self.member);
        w.poly(ctx, &self.p);
        w.buf
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (mut r, params) = Reader::new(bytes, Kind::PublicKeyShare)?;
        let ctx = params.context();
        let epoch = r.u64()?;
        let member = r.u8()?;
        if member == 0 || member > MAX_COMMITTEE {
            return Err(Error::Decode("member id out of range"));
        }
        r.expect_polys(ctx, 1)?;
        let p = r.poly(ctx)?;
        r.finish()?;
        Ok(PublicKeyShare {
            params,
            epoch,
            member,
            p,
        })
    }
}

impl WireFormat for ShamirShare {
    fn to_bytes(&self) -> Vec<u8> {
        let ctx = self.params.context();
        let mut w = Writer::new(Kind::ShamirShare, self.params, 10 + poly_bytes(ctx));
        w.u64(self.epoch);
        w.u8(self.from);
        w.u8(self.to);
        w.poly(ctx, &self.value.0);
        w.buf
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (mut r, params) = Reader::new(bytes, Kind::ShamirShare)?;
        let ctx = params.context();
        let epoch = r.u64()?;
        let from = r.u8()?;
        let to = r.u8()?;
        if from == 0 || to == 0 || from > MAX_COMMITTEE || to > MAX_COMMITTEE {
            return Err(Error::Decode("member id out of range"));
        }
        r.expect_polys(ctx, 1)?;
        let value = SecretPoly(r.poly(ctx)?);
        r.finish()?;
        Ok(ShamirShare {
            params,
            epoch,
            from,
            to,
            value,
        })
    }
}

fn write_participants(w: &mut Writer, p: &[u8]) {
    w.u8(p.len().min(MAX_COMMITTEE as usize) as u8);
    w.bytes(&p[..p.len().min(MAX_COMMITTEE as usize)]);
}

fn read_participants(r: &mut Reader<'_>) -> Result<Vec<u8>, Error> {
    let n = r.u8()?;
    if n == 0 || n > MAX_COMMITTEE {
        return Err(Error::Decode("participant count out of range"));
    }
    Ok(r.take(n as usize)?.to_vec())
}

fn read_chunks(r: &mut Reader<'_>, ctx: &Context) -> Result<Vec<Vec<u64>>, Error> {
    let chunks = r.u32()? as usize;
    if chunks == 0 || chunks > MAX_CHUNKS {
        return Err(Error::Decode("chunk count out of range"));
    }
    r.expect_polys(ctx, chunks)?;
    (0..chunks).map(|_| r.poly(ctx)).collect()
}

impl WireFormat for DecryptionShare {
    fn to_bytes(&self) -> Vec<u8> {
        let ctx = self.params.context();
        let mut w = Writer::new(Kind::DecryptionShare, self.params, 90 + self.h.len() * poly_bytes(ctx));
        w.u64(self.epoch);
        w.u64(self.round);
        w.u8(self.member);
        w.bytes(&self.digest);
        write_participants(&mut w, &self.participants);
        w.u32(self.h.len() as u32);
        for h in &self.h {
            w.poly(ctx, h);
        }
        w.buf
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (mut r, params) = Reader::new(bytes, Kind::DecryptionShare)?;
        let ctx = params.context();
        let epoch = r.u64()?;
        let round = r.u64()?;
        let member = r.u8()?;
        let digest = r.array32()?;
        let participants = read_participants(&mut r)?;
        let h = read_chunks(&mut r, ctx)?;
        r.finish()?;
        Ok(DecryptionShare {
            params,
            epoch,
            round,
            member,
            digest,
            participants,
            h,
        })
    }
}

impl WireFormat for DecryptionRequest {
    fn to_bytes(&self) -> Vec<u8> {
        let ctx = self.params.context();
        let mut w = Writer::new(
            Kind::DecryptionRequest,
            self.params,
            64 + self.c1.len() * poly_bytes(ctx),
        );
        w.u64(self.epoch);
        w.u64(self.round);
        w.u64(self.total_weight);
        w.u32(self.min_contributions);
        write_participants(&mut w, &self.participants);
        let receipts = &self.receipts[..self.receipts.len().min(MAX_RECEIPTS)];
        w.u32(receipts.len() as u32);
        for rc in receipts {
            w.u64(rc.epoch);
            w.u64(rc.round);
            w.short_bytes(rc.agent_id.as_bytes());
            w.bytes(&rc.update_digest);
            w.u32(rc.weight);
            w.short_bytes(&rc.signature);
        }
        w.u32(self.c1.len() as u32);
        for c in &self.c1 {
            w.poly(ctx, c);
        }
        w.buf
    }
    fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (mut r, params) = Reader::new(bytes, Kind::DecryptionRequest)?;
        let ctx = params.context();
        let epoch = r.u64()?;
        let round = r.u64()?;
        let total_weight = r.u64()?;
        let min_contributions = r.u32()?;
        let participants = read_participants(&mut r)?;
        let count = r.u32()? as usize;
        // Each receipt takes at least 56 bytes: bound the count by what is left before allocating.
        if count > MAX_RECEIPTS || count.saturating_mul(56) > r.remaining() {
            return Err(Error::Decode("receipt count out of range"));
        }
        let mut receipts = Vec::with_capacity(count);
        for _ in 0..count {
            let epoch = r.u64()?;
            let round = r.u64()?;
            let agent_id = std::str::from_utf8(r.short_bytes()?).map_err(|_| Error::Decode("agent id not UTF-8"))?;
            let update_digest = r.array32()?;
            let weight = r.u32()?;
            let signature = r.short_bytes()?.to_vec();
            receipts.push(ContributionReceipt {
                epoch,
                round,
                agent_id: agent_id.to_owned(),
                update_digest,
                weight,
                signature,
            });
        }
        let c1 = read_chunks(&mut r, ctx)?;
        r.finish()?;
        Ok(DecryptionRequest {
            params,
            epoch,
            round,
            total_weight,
            participants,
            min_contributions,
            receipts,
            c1,
        })
    }
}

impl CommitteeMember {
    /// The member's secret state (committee config, its share of `s`, its policy floor and the record of
    /// issued rounds) for persistence across restarts. **Secret**: store it encrypted at rest; the buffer is
    /// zeroized when dropped. Issued shares themselves are not kept: after a restore, a repeated request for
    /// an already-answered round is refused rather than answered again.
    pub fn export_secret(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let ctx = self.config.params.context();
        let per_record = 8 + 32 + 32 + 1 + MAX_COMMITTEE as usize;
        let cap = 64 + poly_bytes(ctx) + self.issued.len() * per_record;
        let mut w = Writer::new(Kind::MemberSecret, self.config.params, cap);
        w.u64(self.config.epoch);
        w.u8(self.config.members);
        w.u8(self.config.threshold);
        w.bytes(&self.config.crp_seed);
        w.u8(self.id);
        w.u32(self.min_contributions);
        w.poly(ctx, &self.share_ntt.0);
        let mut rounds: Vec<(&u64, &Issued)> = self.issued.iter().collect();
        rounds.sort_unstable_by_key(|(r, _)| **r);
        w.u32(rounds.len() as u32);
        for (round, i) in rounds {
            w.u64(*round);
            w.bytes(&i.digest);
            w.bytes(&i.fingerprint);
            write_participants(&mut w, &i.participants);
        }
        zeroize::Zeroizing::new(w.buf)
    }

    /// Restores a member from [`CommitteeMember::export_secret`] bytes.
    pub fn import_secret(bytes: &[u8]) -> Result<Self, Error> {
        let (mut r, params) = Reader::new(bytes, Kind::MemberSecret)?;
        let ctx = params.context();
        let epoch = r.u64()?;
        let members = r.u8()?;
        let threshold = r.u8()?;
        let crp_seed = r.array32()?;
        let config = CommitteeConfig::new(params, epoch, members, threshold, crp_seed)?;
        let id = r.u8()?;
        if id == 0 || id > members {
            return Err(Error::Decode("member id out of range"));
        }
        let min_contributions = r.u32()?;
        r.expect_polys(ctx, 1)?;
        let share_ntt = SecretPoly(r.poly(ctx)?);
        let count = r.u32()? as usize;
        if count.saturating_mul(8 + 32 + 32 + 2) > r.remaining() {
            return Err(Error::Decode("record count out of range"));
        }
        let mut issued = std::collections::HashMap::with_capacity(count);
        for _ in 0..count {
            let round = r.u64()?;
            let digest = r.array32()?;
            let fingerprint = r.array32()?;
            let participants = read_participants(&mut r)?;
            if issued
                .insert(
                    round,
                    Issued {
                        digest,
                        participants,
                        fingerprint,
                        share: None,
                    },
                )
                .is_some()
            {
                return Err(Error::Decode("duplicate round in the record"));
            }
        }
        r.finish()?;
        Ok(CommitteeMember {
            config,
            id,
            share_ntt,
            min_contributions,
            issued,
        })
    }
}

/// `serde` support: each message (de)serialises as its wire bytes.
macro_rules! serde_via_wire {
    ($($t:ty),*) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.to_bytes())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("gatewatch-ckks wire bytes")
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<$t, E> {
                        <$t>::from_bytes(v).map_err(E::custom)
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<$t, A::Error> {
                        let mut buf = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                        while let Some(b) = seq.next_element::<u8>()? {
                            buf.push(b);
                        }
                        <$t>::from_bytes(&buf).map_err(serde::de::Error::custom)
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    )*};
}

serde_via_wire!(
    PublicKey,
    EncryptedUpdate,
    Aggregate,
    PublicKeyShare,
    DecryptionShare,
    DecryptionRequest
);
