//! Word-size modular arithmetic: products through `u128`, Shoup precomputation, primality.

/// `a * b mod q` through a 128-bit product.
#[inline]
pub(crate) fn mul_mod(a: u64, b: u64, q: u64) -> u64 {
    ((a as u128 * b as u128) % q as u128) as u64
}

/// `a + b mod q` for `a, b < q`.
#[inline]
pub(crate) fn add_mod(a: u64, b: u64, q: u64) -> u64 {
    let s = a + b;
    if s >= q {
        s - q
    } else {
        s
    }
}

/// `a - b mod q` for `a, b < q`.
#[inline]
pub(crate) fn sub_mod(a: u64, b: u64, q: u64) -> u64 {
    if a >= b {
        a - b
    } else {
        a + q - b
    }
}

/// `base^exp mod q`.
pub(crate) fn pow_mod(mut base: u64, mut exp: u64, q: u64) -> u64 {
    let mut acc = 1 % q;
    base %= q;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = mul_mod(acc, base, q);
        }
        base = mul_mod(base, base, q);
        exp >>= 1;
    }
    acc
}

/// Inverse modulo a prime `q` (Fermat). `a` must be non-zero mod `q`.
pub(crate) fn inv_mod(a: u64, q: u64) -> u64 {
    pow_mod(a, q - 2, q)
}

/// Shoup's precomputed quotient `floor(w * 2^64 / q)` for a constant `w < q`.
#[inline]
pub(crate) fn shoup(w: u64, q: u64) -> u64 {
    (((w as u128) << 64) / q as u128) as u64
}

/// `x * w mod q` in `[0, 2q)` for any `x < 2^64`, given `w_shoup = shoup(w, q)` (Harvey's lazy form).
#[inline(always)]
pub(crate) fn mul_shoup_lazy(x: u64, w: u64, w_shoup: u64, q: u64) -> u64 {
    let hi = ((x as u128 * w_shoup as u128) >> 64) as u64;
    x.wrapping_mul(w).wrapping_sub(hi.wrapping_mul(q))
}

/// `x * w mod q` in `[0, q)`.
#[inline(always)]
pub(crate) fn mul_shoup(x: u64, w: u64, w_shoup: u64, q: u64) -> u64 {
    let r = mul_shoup_lazy(x, w, w_shoup, q);
    if r >= q {
        r - q
    } else {
        r
    }
}

/// Deterministic Miller–Rabin for all 64-bit integers (the first twelve prime bases suffice).
pub fn is_prime_u64(n: u64) -> bool {
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    if n < 2 {
        return false;
    }
    for &p in &BASES {
        if n % p == 0 {
            return n == p;
        }
    }
    let mut d = n - 1;
    let mut r = 0;
    while d % 2 == 0 {
        d /= 2;
        r += 1;
    }
    'outer: for &a in &BASES {
        let mut x = pow_mod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..r {
            x = mul_mod(x, x, n);
            if x == n - 1 {
                continue 'outer;
            }
        }
        return false;
    }
    true
}

/// Largest primes `q < 2^bits` with `q ≡ 1 (mod 2n)`, descending, excluding those in `skip`.
pub(crate) fn ntt_prime_below(bits: u32, two_n: u64, skip: &[u64]) -> Option<u64> {
    let top = 1u64 << bits;
    // Largest candidate < 2^bits congruent to 1 mod 2n.
    let mut c = (top - 1) / two_n * two_n + 1;
    if c >= top {
        c = c.checked_sub(two_n)?;
    }
    while c > two_n {
        if !skip.contains(&c) && is_prime_u64(c) {
            return Some(c);
        }
        c -= two_n;
    }
    None
}

/// A primitive `2n`-th root of unity modulo the prime `q` (requires `q ≡ 1 mod 2n`, `n` a power of two).
pub(crate) fn primitive_2n_root(q: u64, n: u64) -> Option<u64> {
    let two_n = 2 * n;
    if (q - 1) % two_n != 0 {
        return None;
    }
    let cofactor = (q - 1) / two_n;
    // g^cofactor has order dividing 2n; it has order exactly 2n iff its n-th power is -1.
    (2..q.min(1 << 20))
        .map(|x| pow_mod(x, cofactor, q))
        .find(|&g| pow_mod(g, n, q) == q - 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::needless_range_loop)]
mod tests {
    use super::*;

    #[test]
    fn miller_rabin_matches_trial_division_small() {
        for n in 0u64..5000 {
            let trial = n >= 2 && (2..n).take_while(|d| d * d <= n).all(|d| n % d != 0);
            assert_eq!(is_prime_u64(n), trial, "n = {n}");
        }
        // Known large primes and strong pseudoprimes.
        assert!(is_prime_u64(0xffff_ffff_ffff_ffc5)); // 2^64 - 59
        assert!(is_prime_u64((1 << 61) - 1));
        assert!(!is_prime_u64(3_215_031_751)); // strong pseudoprime to bases 2,3,5,7
        assert!(!is_prime_u64(3_825_123_056_546_413_051));
    }

    #[test]
    fn shoup_product_matches_u128() {
        let q = (1u64 << 61) - 1;
        for (x, w) in [
            (0u64, 5u64),
            (q - 1, q - 1),
            (123_456_789, 987_654_321),
            (u64::MAX, q - 2),
        ] {
            let w = w % q;
            let lazy = mul_shoup_lazy(x, w, shoup(w, q), q);
            assert!(lazy < 2 * q);
            assert_eq!(lazy % q, mul_mod(x % q, w, q));
            assert_eq!(mul_shoup(x, w, shoup(w, q), q), mul_mod(x % q, w, q));
        }
    }

    #[test]
    fn roots_have_exact_order() {
        let n = 1024u64;
        let q = ntt_prime_below(50, 2 * n, &[]).unwrap();
        let psi = primitive_2n_root(q, n).unwrap();
        assert_eq!(pow_mod(psi, 2 * n, q), 1);
        assert_eq!(pow_mod(psi, n, q), q - 1);
        assert_eq!(mul_mod(psi, inv_mod(psi, q), q), 1);
    }
}
