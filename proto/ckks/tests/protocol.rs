//! End-to-end protocol tests: homomorphic correctness against plaintext, threshold decryption, policy.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use gatewatch_ckks::*;
use proptest::prelude::*;

/// The default set's headline requirement: the sum of 1,000 updates with |w| ≤ 8, decrypted by a 2-of-3
/// committee with smudging, is within 1e-6 of the plaintext sum. Also run for every other parameter set.
#[test]
fn thousand_updates_every_set_within_1e_6() {
    let mut r = rng(100);
    for params in ParamSetId::ALL {
        let mut c = committee(params, 1, 3, 2, 1000, &mut r);
        let len = 257; // one ciphertext, odd length
        let updates: Vec<(Vec<f32>, u32)> = (0..1000).map(|_| (random_values(&mut r, len, 8.0), 1)).collect();
        let (agg, receipts, sum) = aggregate_of(&c.pk, 9, &updates, &mut r);
        assert_eq!(agg.count(), 1000);
        let req = agg.decryption_request(receipts, 1000, &[1, 3]);
        let shares = vec![
            c.members[0].partial_decrypt(&req, &mut r).unwrap(),
            c.members[2].partial_decrypt(&req, &mut r).unwrap(),
        ];
        let got = agg.combine_sum_f64(&shares).unwrap();
        let err = max_abs_err(&got, &sum);
        assert!(err <= 1e-6, "{}: error {err:e}", params.name());
        let avg = agg.combine_f64(&shares).unwrap();
        assert!(max_abs_err(&avg, &sum.iter().map(|s| s / 1000.0).collect::<Vec<_>>()) <= 2e-9);
    }
}

#[test]
fn two_of_three_every_pair_and_three_of_three() {
    let mut r = rng(101);
    let mut c = committee(ParamSetId::Gw4096, 3, 3, 2, 2, &mut r);
    let len = 5000; // two ciphertexts
    let updates: Vec<(Vec<f32>, u32)> = (0..3)
        .map(|i| (random_values(&mut r, len, 8.0), 10 * (i + 1)))
        .collect();
    for (round, pair) in [[1u8, 2], [1, 3], [2, 3]].iter().enumerate() {
        let (agg, receipts, sum) = aggregate_of(&c.pk, round as u64, &updates, &mut r);
        let req = agg.decryption_request(receipts, 2, pair);
        let shares: Vec<DecryptionShare> = pair
            .iter()
            .map(|&m| c.members[m as usize - 1].partial_decrypt(&req, &mut r).unwrap())
            .collect();
        let got = agg.combine_sum_f64(&shares).unwrap();
        assert!(max_abs_err(&got, &sum) <= 1e-6, "pair {pair:?}");
        // f32 average, the FL output.
        let avg = agg.combine(&shares).unwrap();
        for (a, s) in avg.iter().zip(&sum) {
            assert!((*a as f64 - s / 60.0).abs() <= 1e-5);
        }
        // t-1 shares: the combiner refuses, and a single member refuses a one-member participant set.
        assert!(matches!(agg.combine_sum_f64(&shares[..1]), Err(Error::Combine(_))));
    }
    // All three members.
    let (agg, receipts, sum) = aggregate_of(&c.pk, 10, &updates, &mut r);
    let req = agg.decryption_request(receipts, 2, &[1, 2, 3]);
    let shares: Vec<DecryptionShare> = c
        .members
        .iter_mut()
        .map(|m| m.partial_decrypt(&req, &mut r).unwrap())
        .collect();
    assert!(max_abs_err(&agg.combine_sum_f64(&shares).unwrap(), &sum) <= 1e-6);

    // 3-of-3 committee: all three decrypt, two are refused.
    let mut c3 = committee(ParamSetId::Gw4096, 4, 3, 3, 1, &mut r);
    let (agg, receipts, sum) = aggregate_of(&c3.pk, 0, &updates, &mut r);
    let req = agg.decryption_request(receipts.clone(), 1, &[1, 2, 3]);
    let shares: Vec<DecryptionShare> = c3
        .members
        .iter_mut()
        .map(|m| m.partial_decrypt(&req, &mut r).unwrap())
        .collect();
    assert!(max_abs_err(&agg.combine_sum_f64(&shares).unwrap(), &sum) <= 1e-6);
    assert!(matches!(agg.combine_sum_f64(&shares[..2]), Err(Error::Combine(_))));
    let (agg2, receipts2, _) = aggregate_of(&c3.pk, 1, &updates, &mut r);
    let req2 = agg2.decryption_request(receipts2, 1, &[1, 2]);
    assert!(matches!(
        c3.members[0].partial_decrypt(&req2, &mut r),
        Err(Error::Refused(_))
    ));
}

#[test]
fn tampered_share_fails_the_integrity_check() {
    let mut r = rng(108);
    let mut c = committee(ParamSetId::Gw8192, 1, 3, 2, 1, &mut r);
    // Length a multiple of N: no zero padding, the canary is in a ciphertext of its own.
    let updates = vec![
        (random_values(&mut r, 8192, 8.0), 2),
        (random_values(&mut r, 8192, 8.0), 5),
    ];
    let (agg, receipts, sum) = aggregate_of(&c.pk, 0, &updates, &mut r);
    assert_eq!(agg.ciphertexts().len(), 2);
    let req = agg.decryption_request(receipts, 1, &[1, 2]);
    let s1 = c.members[0].partial_decrypt(&req, &mut r).unwrap();
    let s2 = c.members[1].partial_decrypt(&req, &mut r).unwrap();
    assert!(max_abs_err(&agg.combine_sum_f64(&[s1.clone(), s2.clone()]).unwrap(), &sum) <= 1e-6);
    // Flip a bit of one residue in the last ciphertext's share (the one holding the canary).
    let mut bytes = s2.to_bytes();
    let poly_bytes = 8192 * 120 / 8;
    let first_of_last = bytes.len() - poly_bytes;
    bytes[first_of_last + 3] ^= 0x02;
    let bad = DecryptionShare::from_bytes(&bytes).unwrap();
    assert_eq!(
        agg.combine_sum_f64(&[s1.clone(), bad]).unwrap_err(),
        Error::Combine("integrity check failed: the decrypted weight differs from the total weight")
    );
    // An aggregate whose declared total weight disagrees with what was encrypted.
    let mut bytes = agg.to_bytes();
    // header 7 + epoch 8 + round 8, then total_weight.
    bytes[23] ^= 1;
    let lying = Aggregate::from_bytes(&bytes).unwrap();
    assert!(lying.combine_sum_f64(&[s1, s2]).is_err());
}

#[test]
fn shares_for_different_participant_sets_do_not_mix() {
    // Lagrange coefficients depend on the participant set: shares made for different sets cannot be mixed.
    let mut r = rng(102);
    let mut c = committee(ParamSetId::Gw4096, 1, 3, 2, 1, &mut r);
    let updates = vec![(random_values(&mut r, 100, 8.0), 1)];
    let (agg, receipts, _) = aggregate_of(&c.pk, 0, &updates, &mut r);
    let req = agg.decryption_request(receipts, 1, &[1, 2]);
    let s1 = c.members[0].partial_decrypt(&req, &mut r).unwrap();
    let s3 = {
        let req3 = agg.decryption_request(req.receipts.clone(), 1, &[1, 3]);
        c.members[2].partial_decrypt(&req3, &mut r).unwrap()
    };
    // s1 was made for {1,2}, s3 for {1,3}: mixing them must fail.
    assert!(matches!(agg.combine_sum_f64(&[s1, s3]), Err(Error::Combine(_))));
}

#[test]
fn share_for_another_ciphertext_is_rejected() {
    let mut r = rng(103);
    let mut c = committee(ParamSetId::Gw4096, 1, 3, 2, 1, &mut r);
    let updates = vec![
        (random_values(&mut r, 100, 8.0), 1),
        (random_values(&mut r, 100, 8.0), 2),
    ];
    let (agg_a, rec_a, _) = aggregate_of(&c.pk, 1, &updates, &mut r);
    let (agg_b, rec_b, _) = aggregate_of(&c.pk, 2, &updates, &mut r);
    let req_a = agg_a.decryption_request(rec_a, 1, &[1, 2]);
    let req_b = agg_b.decryption_request(rec_b, 1, &[1, 2]);
    let a1 = c.members[0].partial_decrypt(&req_a, &mut r).unwrap();
    let b2 = c.members[1].partial_decrypt(&req_b, &mut r).unwrap();
    let a2 = c.members[1].partial_decrypt(&req_a, &mut r).unwrap();
    assert!(matches!(
        agg_a.combine_sum_f64(&[a1.clone(), b2]),
        Err(Error::Combine(_))
    ));
    assert!(agg_a.combine_sum_f64(&[a1.clone(), a2.clone()]).is_ok());
    // Same round id, but a different aggregate (one more update): digest differs.
    let mut agg_a2 = agg_a.clone();
    agg_a2
        .add(&encrypt_update_with_rng(&c.pk, &random_values(&mut r, 100, 8.0), 1, &mut r).unwrap())
        .unwrap();
    assert!(matches!(agg_a2.combine_sum_f64(&[a1, a2]), Err(Error::Combine(_))));
}

#[test]
fn members_enforce_the_decryption_policy() {
    let mut r = rng(104);
    let mut c = committee(ParamSetId::Gw4096, 7, 3, 2, 3, &mut r);
    let updates: Vec<(Vec<f32>, u32)> = (0..4).map(|i| (random_values(&mut r, 64, 8.0), i + 1)).collect();
    let (agg, receipts, _) = aggregate_of(&c.pk, 5, &updates, &mut r);
    let m = &mut c.members[0];

    // Too few receipts for the member's own floor (3), whatever the request's policy says.
    let req = agg.decryption_request(receipts[..2].to_vec(), 1, &[1, 2]);
    assert!(matches!(m.partial_decrypt(&req, &mut r), Err(Error::Refused(_))));
    // Request's own policy above the receipts it shows.
    let req = agg.decryption_request(receipts.clone(), 5, &[1, 2]);
    assert!(matches!(m.partial_decrypt(&req, &mut r), Err(Error::Refused(_))));
    // The same agent twice.
    let mut dup = receipts.clone();
    dup[1].agent_id = dup[0].agent_id.clone();
    assert!(matches!(
        m.partial_decrypt(&agg.decryption_request(dup, 3, &[1, 2]), &mut r),
        Err(Error::Refused(_))
    ));
    // The same update digest twice.
    let mut dup = receipts.clone();
    dup[1].update_digest = dup[0].update_digest;
    assert!(matches!(
        m.partial_decrypt(&agg.decryption_request(dup, 3, &[1, 2]), &mut r),
        Err(Error::Refused(_))
    ));
    // Receipts for another round.
    let mut other = receipts.clone();
    other[2].round = 6;
    assert!(matches!(
        m.partial_decrypt(&agg.decryption_request(other, 3, &[1, 2]), &mut r),
        Err(Error::Refused(_))
    ));
    // Weights that do not add up to the aggregate's total (a receipt dropped, a fake one added).
    let mut fake = receipts[..3].to_vec();
    fake.push(ContributionReceipt {
        agent_id: "ghost".into(),
        update_digest: [9; 32],
        ..receipts[3].clone()
    });
    fake[3].weight += 1;
    assert!(matches!(
        m.partial_decrypt(&agg.decryption_request(fake, 3, &[1, 2]), &mut r),
        Err(Error::Refused(_))
    ));
    // Participants without this member, or unsorted / out of range.
    let mut req = agg.decryption_request(receipts.clone(), 3, &[2, 3]);
    assert!(matches!(m.partial_decrypt(&req, &mut r), Err(Error::Refused(_))));
    req.participants = vec![2, 1];
    assert!(matches!(m.partial_decrypt(&req, &mut r), Err(Error::Refused(_))));
    req.participants = vec![1, 9];
    assert!(matches!(m.partial_decrypt(&req, &mut r), Err(Error::Refused(_))));

    // A valid request is answered, and answered identically when repeated.
    let req = agg.decryption_request(receipts.clone(), 3, &[1, 2]);
    let s = m.partial_decrypt(&req, &mut r).unwrap();
    assert_eq!(m.partial_decrypt(&req, &mut r).unwrap(), s);
    assert_eq!(m.issued_rounds(), vec![(5, agg.digest())]);
    // A different participant set for the same round: refused (would be a second, different share).
    let req13 = agg.decryption_request(receipts.clone(), 3, &[1, 3]);
    assert!(matches!(m.partial_decrypt(&req13, &mut r), Err(Error::Refused(_))));
    // The same ciphertext under another round id: refused.
    let mut again = agg.decryption_request(receipts.clone(), 3, &[1, 2]);
    again.round = 99;
    for rc in again.receipts.iter_mut() {
        rc.round = 99;
    }
    assert!(matches!(m.partial_decrypt(&again, &mut r), Err(Error::Refused(_))));
    // A different aggregate for the same round: refused.
    let (agg2, receipts2, _) = aggregate_of(&c.pk, 5, &updates, &mut r);
    assert!(matches!(
        m.partial_decrypt(&agg2.decryption_request(receipts2, 3, &[1, 2]), &mut r),
        Err(Error::Refused(_))
    ));
}

#[test]
fn exported_member_survives_a_restart_and_keeps_its_record() {
    let mut r = rng(107);
    let mut c = committee(ParamSetId::Gw4096, 2, 3, 2, 1, &mut r);
    let updates = vec![
        (random_values(&mut r, 300, 8.0), 3),
        (random_values(&mut r, 300, 8.0), 5),
    ];
    let (agg, receipts, _) = aggregate_of(&c.pk, 1, &updates, &mut r);
    let req = agg.decryption_request(receipts, 1, &[1, 2]);
    c.members[0].partial_decrypt(&req, &mut r).unwrap();
    let saved = c.members[0].export_secret();
    let mut restored = CommitteeMember::import_secret(&saved).unwrap();
    assert_eq!(restored.id(), 1);
    assert_eq!(restored.config(), c.members[0].config());
    assert_eq!(restored.issued_rounds(), c.members[0].issued_rounds());
    // The answered round stays answered (refused, since the share itself was not kept).
    assert!(matches!(restored.partial_decrypt(&req, &mut r), Err(Error::Refused(_))));
    // A new round decrypts correctly with the restored share.
    let (agg2, receipts2, sum2) = aggregate_of(&c.pk, 2, &updates, &mut r);
    let req2 = agg2.decryption_request(receipts2, 1, &[1, 3]);
    let shares = vec![
        restored.partial_decrypt(&req2, &mut r).unwrap(),
        c.members[2].partial_decrypt(&req2, &mut r).unwrap(),
    ];
    assert!(max_abs_err(&agg2.combine_sum_f64(&shares).unwrap(), &sum2) <= 1e-6);
    // Tampering is detected.
    let mut bad = saved.to_vec();
    bad.truncate(bad.len() - 1);
    assert!(CommitteeMember::import_secret(&bad).is_err());
}

#[test]
fn rotation_moves_to_new_keys() {
    let mut r = rng(105);
    let c = committee(ParamSetId::Gw4096, 1, 3, 2, 1, &mut r);
    let updates = vec![(random_values(&mut r, 50, 8.0), 1)];
    let (old_agg, old_receipts, _) = aggregate_of(&c.pk, 0, &updates, &mut r);
    let mut next = c.config.clone();
    next.epoch = 2;
    next.crp_seed = [3; 32];
    assert!(c.members.into_iter().next().unwrap().rotate(&c.config, &mut r).is_err());
    let c2 = committee(ParamSetId::Gw4096, 1, 3, 2, 1, &mut r);
    let kg: Vec<MemberKeygen> = c2
        .members
        .into_iter()
        .map(|m| m.rotate(&next, &mut r).unwrap())
        .collect();
    let pk2 = collective_public_key(&next, &kg.iter().map(|m| m.public_share()).collect::<Vec<_>>()).unwrap();
    assert_eq!(pk2.epoch(), 2);
    let received: Vec<Vec<ShamirShare>> = (1..=3)
        .map(|j| kg.iter().map(|m| m.share_for(j).unwrap()).collect())
        .collect();
    let mut members: Vec<CommitteeMember> = kg
        .into_iter()
        .zip(received)
        .map(|(m, sh)| m.finish(&sh, 1).unwrap())
        .collect();
    // Old-epoch aggregates are refused by the new committee, old-epoch updates do not add to new aggregates.
    let req = old_agg.decryption_request(old_receipts, 1, &[1, 2]);
    assert!(matches!(
        members[0].partial_decrypt(&req, &mut r),
        Err(Error::EpochMismatch { .. })
    ));
    let old_update = encrypt_update_with_rng(&c.pk, &updates[0].0, 1, &mut r).unwrap();
    let mut new_agg = Aggregate::new(ParamSetId::Gw4096, 2, 0, 50).unwrap();
    assert!(matches!(new_agg.add(&old_update), Err(Error::EpochMismatch { .. })));
    // New epoch works end to end.
    let (agg, receipts, sum) = aggregate_of(&pk2, 0, &updates, &mut r);
    let req = agg.decryption_request(receipts, 1, &[2, 3]);
    let shares = vec![
        members[1].partial_decrypt(&req, &mut r).unwrap(),
        members[2].partial_decrypt(&req, &mut r).unwrap(),
    ];
    assert!(max_abs_err(&agg.combine_sum_f64(&shares).unwrap(), &sum) <= 1e-6);
}

#[test]
fn aggregate_rejects_mismatched_updates() {
    let mut r = rng(106);
    let c = committee(ParamSetId::Gw4096, 1, 1, 1, 1, &mut r);
    let mut agg = Aggregate::new(ParamSetId::Gw4096, 1, 0, 10).unwrap();
    let wrong_len = encrypt_update_with_rng(&c.pk, &[1.0; 11], 1, &mut r).unwrap();
    assert!(matches!(agg.add(&wrong_len), Err(Error::ShapeMismatch(_))));
    let mut agg8 = Aggregate::new(ParamSetId::Gw8192, 1, 0, 10).unwrap();
    let ok = encrypt_update_with_rng(&c.pk, &[1.0; 10], 1, &mut r).unwrap();
    assert_eq!(agg8.add(&ok), Err(Error::ParamMismatch));
    assert!(encrypt_update_with_rng(&c.pk, &[1.0; 10], 0, &mut r).is_err());
    assert!(encrypt_update_with_rng(&c.pk, &[], 1, &mut r).is_err());
    assert!(encrypt_update_with_rng(&c.pk, &[f32::NAN], 1, &mut r).is_err());
    assert!(encrypt_update_with_rng(&c.pk, &[f32::MAX], 1, &mut r).is_err());
    assert!(agg.combine(&[]).is_err());
    agg.add(&ok).unwrap();
    assert_eq!(agg.count(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Random numbers of updates (1..=40), random lengths (spanning several ciphertexts), random weights:
    /// the decrypted weighted sum and average match plaintext arithmetic on every parameter set.
    #[test]
    fn sums_match_plaintext(seed in any::<u64>(), set in 0usize..3, count in 1usize..=40, len in 1usize..20_000, wmax in 1u32..200) {
        let params = ParamSetId::ALL[set];
        let mut r = rng(seed);
        let mut c = committee(params, 1, 3, 2, 1, &mut r);
        let updates: Vec<(Vec<f32>, u32)> =
            (0..count).map(|i| (random_values(&mut r, len, 8.0), 1 + (i as u32 * 7919) % wmax)).collect();
        let (agg, receipts, sum) = aggregate_of(&c.pk, 0, &updates, &mut r);
        let req = agg.decryption_request(receipts, 1, &[2, 3]);
        let shares = vec![c.members[1].partial_decrypt(&req, &mut r).unwrap(), c.members[2].partial_decrypt(&req, &mut r).unwrap()];
        let got = agg.combine_sum_f64(&shares).unwrap();
        prop_assert!(max_abs_err(&got, &sum) <= 1e-6);
        let total: f64 = updates.iter().map(|u| u.1 as f64).sum();
        let avg = agg.combine_f64(&shares).unwrap();
        prop_assert!(max_abs_err(&avg, &sum.iter().map(|s| s / total).collect::<Vec<_>>()) <= 1e-6);
    }

    /// Large counts (up to 1,000) on the smallest set, with single-key decryption (fast).
    #[test]
    fn large_sums_match_plaintext(seed in any::<u64>(), count in 1usize..=1000) {
        let mut r = rng(seed);
        let sk = SecretKey::generate(ParamSetId::Gw4096, &mut r);
        let pk = sk.public_key(1, [5; 32], &mut r);
        let updates: Vec<(Vec<f32>, u32)> = (0..count).map(|_| (random_values(&mut r, 40, 8.0), 1)).collect();
        let (agg, _, sum) = aggregate_of(&pk, 0, &updates, &mut r);
        prop_assert!(max_abs_err(&agg.decrypt_sum_with(&sk).unwrap(), &sum) <= 1e-6);
    }

    /// Ciphertext × integer and × real scalars agree with plaintext scaling.
    #[test]
    fn scalar_products_match_plaintext(seed in any::<u64>(), set in 0usize..3, k in -1000i64..1000, real in -100.0f64..100.0, bits in 1u32..=10) {
        let params = ParamSetId::ALL[set];
        let mut r = rng(seed);
        let sk = SecretKey::generate(params, &mut r);
        let pk = sk.public_key(1, [6; 32], &mut r);
        let x: Vec<f64> = random_values(&mut r, 1000, 8.0).into_iter().map(f64::from).collect();
        let ct = encrypt(&pk, &x, &mut r).unwrap();
        let mut ck = ct.clone();
        ck.mul_integer(k);
        let got = decrypt(&sk, &ck).unwrap();
        prop_assert!(max_abs_err(&got[..1000], &x.iter().map(|v| v * k as f64).collect::<Vec<_>>()) <= 1e-6);
        let mut cr = ct.clone();
        cr.mul_real(real, bits).unwrap();
        let rq = (real * 2f64.powi(bits as i32)).round() / 2f64.powi(bits as i32);
        let got = decrypt(&sk, &cr).unwrap();
        prop_assert!(max_abs_err(&got[..1000], &x.iter().map(|v| v * rq).collect::<Vec<_>>()) <= 1e-6);
    }
}
