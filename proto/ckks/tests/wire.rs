//! Wire format: round trips, sizes, and hostile input (random, truncated, mutated bytes) never panics.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::OnceLock;

use common::*;
use gatewatch_ckks::wire::{MAGIC, WIRE_VERSION};
use gatewatch_ckks::*;
use proptest::prelude::*;

struct Samples {
    pk: Vec<u8>,
    update: Vec<u8>,
    aggregate: Vec<u8>,
    pk_share: Vec<u8>,
    dec_share: Vec<u8>,
    request: Vec<u8>,
    member: Vec<u8>,
}

fn samples() -> &'static Samples {
    static S: OnceLock<Samples> = OnceLock::new();
    S.get_or_init(|| {
        let mut r = rng(300);
        let config = CommitteeConfig::new(ParamSetId::Gw4096, 2, 2, 2, [1; 32]).unwrap();
        let kg: Vec<MemberKeygen> = (1..=2)
            .map(|i| MemberKeygen::new(&config, i, &mut r).unwrap())
            .collect();
        let pk = collective_public_key(&config, &kg.iter().map(|m| m.public_share()).collect::<Vec<_>>()).unwrap();
        let received: Vec<Vec<ShamirShare>> = (1..=2)
            .map(|j| kg.iter().map(|m| m.share_for(j).unwrap()).collect())
            .collect();
        let pk_share = kg[0].public_share().to_bytes();
        let mut members: Vec<CommitteeMember> = kg
            .into_iter()
            .zip(received)
            .map(|(m, s)| m.finish(&s, 1).unwrap())
            .collect();
        let (agg, receipts, _) = aggregate_of(&pk, 3, &[(random_values(&mut r, 20, 8.0), 4)], &mut r);
        let update = encrypt_update_with_rng(&pk, &random_values(&mut r, 20, 8.0), 3, &mut r).unwrap();
        let req = agg.decryption_request(receipts, 1, &[1, 2]);
        let share = members[0].partial_decrypt(&req, &mut r).unwrap();
        Samples {
            pk: pk.to_bytes(),
            update: update.to_bytes(),
            aggregate: agg.to_bytes(),
            pk_share,
            dec_share: share.to_bytes(),
            request: req.to_bytes(),
            member: members[0].export_secret().to_vec(),
        }
    })
}

/// Tries every decoder on `bytes`; returns how many accepted them.
fn decode_all(bytes: &[u8]) -> usize {
    [
        PublicKey::from_bytes(bytes).is_ok(),
        EncryptedUpdate::from_bytes(bytes).is_ok(),
        Aggregate::from_bytes(bytes).is_ok(),
        PublicKeyShare::from_bytes(bytes).is_ok(),
        DecryptionShare::from_bytes(bytes).is_ok(),
        DecryptionRequest::from_bytes(bytes).is_ok(),
        ShamirShare::from_bytes(bytes).is_ok(),
        CommitteeMember::import_secret(bytes).is_ok(),
    ]
    .iter()
    .filter(|&&ok| ok)
    .count()
}

#[test]
fn round_trips_and_sizes() {
    let mut r = rng(301);
    let mut c = committee(ParamSetId::Gw8192, 1, 3, 2, 1, &mut r);
    let pk2 = PublicKey::from_bytes(&c.pk.to_bytes()).unwrap();
    assert_eq!(pk2.to_bytes(), c.pk.to_bytes());
    // The public key carries the seed, not the polynomial a: one packed polynomial plus a header.
    let ctx = ParamSetId::Gw8192.context();
    let poly = ctx.n * 120 / 8;
    assert_eq!(c.pk.to_bytes().len(), 7 + 8 + 32 + poly);

    let vals = random_values(&mut r, 50_000, 8.0);
    let u = encrypt_update_with_rng(&c.pk, &vals, 7, &mut r).unwrap();
    let bytes = u.to_bytes();
    assert_eq!(bytes.len(), 7 + 8 + 4 + 4 + 1 + 4 + 7 * 2 * poly);
    assert!(bytes.len() < 3_060_000, "must not exceed TenSEAL's 3.06 MB at N = 8192");
    let u2 = EncryptedUpdate::from_bytes(&bytes).unwrap();
    assert_eq!(u2, u);
    assert_eq!(u2.digest(), u.digest());

    // gw-4096: 13 ciphertexts, below TenSEAL's 1.64 MB at N = 4096 [60,49].
    let c4 = committee(ParamSetId::Gw4096, 1, 3, 2, 1, &mut r);
    let u4 = encrypt_update_with_rng(&c4.pk, &vals, 7, &mut r).unwrap();
    assert_eq!(u4.ciphertexts().len(), 13);
    assert!(u4.to_bytes().len() < 1_641_900);

    let (agg, receipts, sum) = aggregate_of(&c.pk, 4, &[(vals.clone(), 7)], &mut r);
    let agg2 = Aggregate::from_bytes(&agg.to_bytes()).unwrap();
    assert_eq!(agg2, agg);
    let req = DecryptionRequest::from_bytes(&agg.decryption_request(receipts, 1, &[1, 2]).to_bytes()).unwrap();
    assert_eq!(req.receipts.len(), 1);
    let shares: Vec<DecryptionShare> = (0..2)
        .map(|i| DecryptionShare::from_bytes(&c.members[i].partial_decrypt(&req, &mut r).unwrap().to_bytes()).unwrap())
        .collect();
    assert!(max_abs_err(&agg2.combine_sum_f64(&shares).unwrap(), &sum) <= 1e-6);

    let s = samples();
    for b in [
        &s.pk,
        &s.update,
        &s.aggregate,
        &s.pk_share,
        &s.dec_share,
        &s.request,
        &s.member,
    ] {
        assert_eq!(decode_all(b), 1, "exactly one decoder accepts each kind");
    }
}

#[test]
fn rejects_unreduced_coefficients_bad_headers_and_trailing_bytes() {
    let s = samples();
    let ctx = ParamSetId::Gw4096.context();
    // Public key: header (7) + epoch (8) + seed (32), then the first 55-bit residue: set it to 2^55 - 1 ≥ q0.
    let mut b = s.pk.clone();
    for byte in &mut b[47..47 + 6] {
        *byte = 0xff;
    }
    b[53] |= 0x7f;
    assert!(ctx.moduli[0] >> 54 == 1, "q0 is a 55-bit prime");
    assert_eq!(
        PublicKey::from_bytes(&b).unwrap_err(),
        Error::Decode("coefficient not below its modulus")
    );

    let mut b = s.update.clone();
    b[4] = WIRE_VERSION + 1;
    assert_eq!(
        EncryptedUpdate::from_bytes(&b).unwrap_err(),
        Error::UnsupportedVersion(WIRE_VERSION + 1)
    );
    let mut b = s.update.clone();
    b[6] = 77;
    assert!(EncryptedUpdate::from_bytes(&b).is_err());
    let mut b = s.update.clone();
    b.push(0);
    assert_eq!(
        EncryptedUpdate::from_bytes(&b).unwrap_err(),
        Error::Decode("trailing bytes")
    );
    assert_eq!(&s.update[..4], &MAGIC);
    // A length that claims more ciphertexts than are present.
    let mut b = s.update.clone();
    b[19..23].copy_from_slice(&(u32::MAX).to_le_bytes());
    assert!(EncryptedUpdate::from_bytes(&b).is_err());
}

#[test]
fn serde_carries_the_wire_bytes() {
    let s = samples();
    let update = EncryptedUpdate::from_bytes(&s.update).unwrap();
    let json = serde_json::to_string(&update).unwrap();
    let back: EncryptedUpdate = serde_json::from_str(&json).unwrap();
    assert_eq!(back, update);
    let pk = PublicKey::from_bytes(&s.pk).unwrap();
    let back: PublicKey = serde_json::from_str(&serde_json::to_string(&pk).unwrap()).unwrap();
    assert_eq!(back.to_bytes(), s.pk);
    // Metadata types are plain serde structs.
    let receipt = update.receipt(3, "agent-x");
    let back: ContributionReceipt = serde_json::from_str(&serde_json::to_string(&receipt).unwrap()).unwrap();
    assert_eq!(back, receipt);
    // Hostile JSON is rejected by the same checks.
    let mut bad: Vec<u8> = s.update.clone();
    bad.truncate(100);
    assert!(serde_json::from_str::<EncryptedUpdate>(&serde_json::to_string(&bad).unwrap()).is_err());
}

#[test]
fn every_truncation_is_rejected() {
    let s = samples();
    for b in [
        &s.pk,
        &s.update,
        &s.aggregate,
        &s.pk_share,
        &s.dec_share,
        &s.request,
        &s.member,
    ] {
        // Every prefix in the header region, then a stride through the body.
        let cuts = (0..200.min(b.len())).chain((200..b.len()).step_by(97));
        for cut in cuts {
            assert_eq!(decode_all(&b[..cut]), 0, "prefix of {cut} bytes accepted");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
    }

    #[test]
    fn random_bytes_with_valid_header_never_panic(kind in 1u8..=8, params in 0u8..=4, body in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut b = MAGIC.to_vec();
        b.extend([WIRE_VERSION, kind, params]);
        b.extend(body);
        decode_all(&b);
    }

    #[test]
    fn mutated_valid_encodings_never_panic(which in 0usize..7, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let s = samples();
        let mut b = [&s.pk, &s.update, &s.aggregate, &s.pk_share, &s.dec_share, &s.request, &s.member][which].clone();
        for (pos, val) in flips {
            let i = pos % b.len();
            b[i] ^= val | 1;
        }
        decode_all(&b);
    }
}
