//! The network's parameters as one flat `Vec<f32>`: the unit federated learning averages.
//!
//! Order (each tensor row-major, PyTorch layouts, LSTM gates in candle's order i, f, g, o):
//!
//! | # | name | shape |
//! |---|---|---|
//! | 0 | `conv.weight` | `[64, 78, 3]` (out, in, tap) |
//! | 1 | `conv.bias` | `[64]` |
//! | 2 | `lstm.weight_ih` | `[256, 64]` |
//! | 3 | `lstm.weight_hh` | `[256, 64]` |
//! | 4 | `lstm.bias_ih` | `[256]` |
//! | 5 | `lstm.bias_hh` | `[256]` |
//! | 6 | `score.weight` | `[1, 64]` |
//! | 7 | `score.bias` | `[1]` |
//! | 8 | `family.weight` | `[9, 64]` (rows in [`crate::FAMILIES`] order) |
//! | 9 | `family.bias` | `[9]` |
//!
//! Two parameter vectors may only be averaged when their [`arch_hash`] is equal.
//! The file form (`params.bin`) is: magic `GWP1`, the 16-byte ASCII arch hash, the count as
//! u32 LE, then the values as f32 LE.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::{FAMILIES, FAMILY_COUNT, FEATURE_COUNT, WINDOW};

/// Convolution output channels.
pub const CONV_CHANNELS: usize = 64;
/// Convolution taps over time (padding 1 each side keeps the length).
pub const KERNEL: usize = 3;
/// Max-pool width over time.
pub const POOL: usize = 2;
/// LSTM steps after pooling.
pub const STEPS: usize = WINDOW / POOL;
/// LSTM hidden size.
pub const HIDDEN: usize = 64;
/// Bumped by hand when the network changes in a way the shapes do not show.
pub const ARCH_VERSION: u32 = 1;

/// One parameter tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub shape: &'static [usize],
}

impl ParamSpec {
    pub const fn len(&self) -> usize {
        let mut n = 1;
        let mut i = 0;
        while i < self.shape.len() {
            n *= self.shape[i];
            i += 1;
        }
        n
    }

    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The parameter tensors in flat order.
pub const PARAMS: [ParamSpec; 10] = [
    ParamSpec {
        name: "conv.weight",
        shape: &[CONV_CHANNELS, FEATURE_COUNT, KERNEL],
    },
    ParamSpec {
        name: "conv.bias",
        shape: &[CONV_CHANNELS],
    },
    ParamSpec {
        name: "lstm.weight_ih",
        shape: &[4 * HIDDEN, CONV_CHANNELS],
    },
    ParamSpec {
        name: "lstm.weight_hh",
        shape: &[4 * HIDDEN, HIDDEN],
    },
    ParamSpec {
        name: "lstm.bias_ih",
        shape: &[4 * HIDDEN],
    },
    ParamSpec {
        name: "lstm.bias_hh",
        shape: &[4 * HIDDEN],
    },
    ParamSpec {
        name: "score.weight",
        shape: &[1, HIDDEN],
    },
    ParamSpec {
        name: "score.bias",
        shape: &[1],
    },
    ParamSpec {
        name: "family.weight",
        shape: &[FAMILY_COUNT, HIDDEN],
    },
    ParamSpec {
        name: "family.bias",
        shape: &[FAMILY_COUNT],
    },
];

/// Total number of parameters.
pub const PARAM_COUNT: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < PARAMS.len() {
        n += PARAMS[i].len();
        i += 1;
    }
    n
};

/// Position of each tensor in the flat vector.
pub fn offsets() -> [std::ops::Range<usize>; PARAMS.len()] {
    let mut start = 0;
    PARAMS.map(|p| {
        let r = start..start + p.len();
        start = r.end;
        r
    })
}

/// A short hash of everything that decides what a flat vector means: shapes, order,
/// window, families and [`ARCH_VERSION`]. 16 hex digits.
pub fn arch_hash() -> String {
    let mut h = Sha256::new();
    h.update(format!(
        "gatewatch-cnn-lstm v{ARCH_VERSION}; window {WINDOW}; features {FEATURE_COUNT}; "
    ));
    h.update(format!("conv k{KERNEL} pad1 relu; maxpool {POOL}; lstm gates ifgo; "));
    for p in PARAMS {
        h.update(format!("{}{:?};", p.name, p.shape));
    }
    for f in FAMILIES {
        h.update(f.name());
        h.update(",");
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks that a flat vector has the length this architecture needs.
pub fn check_len(flat: &[f32]) -> Result<()> {
    if flat.len() != PARAM_COUNT {
        return Err(Error::BadModel(format!(
            "parameter vector has {} values, this architecture has {PARAM_COUNT}",
            flat.len()
        )));
    }
    Ok(())
}

const MAGIC: &[u8; 4] = b"GWP1";

/// Encodes a flat vector in the `params.bin` form.
pub fn encode(flat: &[f32]) -> Result<Vec<u8>> {
    check_len(flat)?;
    let mut out = Vec::with_capacity(24 + 4 * flat.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(arch_hash().as_bytes());
    out.extend_from_slice(&(flat.len() as u32).to_le_bytes());
    for v in flat {
        out.extend_from_slice(&v.to_le_bytes());
    }
    Ok(out)
}

/// Decodes the `params.bin` form, refusing another architecture's vector.
pub fn decode(bytes: &[u8]) -> Result<Vec<f32>> {
    let bad = |m: &str| Error::BadModel(format!("parameter file: {m}"));
    if bytes.len() < 24 || &bytes[..4] != MAGIC {
        return Err(bad("not a gatewatch parameter file"));
    }
    let hash = std::str::from_utf8(&bytes[4..20]).map_err(|_| bad("bad architecture hash"))?;
    if hash != arch_hash() {
        return Err(bad(&format!("architecture {hash}, this build is {}", arch_hash())));
    }
    let mut count = [0u8; 4];
    count.copy_from_slice(&bytes[20..24]);
    let count = u32::from_le_bytes(count) as usize;
    let body = &bytes[24..];
    if count != PARAM_COUNT || body.len() != 4 * count {
        return Err(bad("wrong length"));
    }
    let flat: Vec<f32> = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok(flat)
}

/// Writes `params.bin`.
pub fn save(path: &Path, flat: &[f32]) -> Result<()> {
    std::fs::write(path, encode(flat)?).map_err(|e| Error::io(path, e))
}

/// Reads `params.bin`.
pub fn load(path: &Path) -> Result<Vec<f32>> {
    decode(&std::fs::read(path).map_err(|e| Error::io(path, e))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_round_trip() {
        assert_eq!(PARAM_COUNT, 64 * 78 * 3 + 64 + 2 * 256 * 64 + 2 * 256 + 65 + 9 * 64 + 9);
        let r = offsets();
        assert_eq!(r[0], 0..14976);
        assert_eq!(r[9].end, PARAM_COUNT);
        assert_eq!(arch_hash().len(), 16);
        let flat: Vec<f32> = (0..PARAM_COUNT)
            .map(|i| (i as f32).sin() * 1e-3 + f32::EPSILON)
            .collect();
        let bytes = encode(&flat).expect("encode");
        assert_eq!(decode(&bytes).expect("decode"), flat);
        let mut other = bytes.clone();
        other[5] ^= 1;
        assert!(decode(&other).is_err(), "another architecture's hash must be refused");
        assert!(decode(&bytes[..bytes.len() - 4]).is_err());
        assert!(encode(&flat[1..]).is_err());
    }
}
