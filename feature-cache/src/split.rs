//! Deterministic train/validation/test assignment by a hash of the image id.
//!
//! The split of an id depends only on the id, the fractions and the salt, never on which label
//! configuration is being trained or on row order: every experiment on a cache evaluates on the
//! same test images, and adding images never moves existing ones between splits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CacheError, Result};

/// Which part of the data an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Fits the weights.
    Train,
    /// Picks the best epoch and tunes thresholds.
    Val,
    /// Reported metrics.
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        })
    }
}

impl FromStr for Split {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "val" | "valid" | "validation" => Ok(Split::Val),
            "test" => Ok(Split::Test),
            other => Err(format!("`{other}` is not a split (train, val, test)")),
        }
    }
}

/// Fractions and salt of a hash split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitSpec {
    /// Fraction of ids in validation.
    pub val: f64,
    /// Fraction of ids in test.
    pub test: f64,
    /// Mixed into the hash; change it to draw a different split.
    pub salt: String,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self { val: 0.1, test: 0.2, salt: "wit-split-v1".into() }
    }
}

impl SplitSpec {
    /// Checks the fractions.
    pub fn validate(&self) -> Result<()> {
        let ok = |x: f64| (0.0..1.0).contains(&x);
        if !ok(self.val) || !ok(self.test) || self.val + self.test >= 1.0 {
            return Err(CacheError::Invalid(format!(
                "split fractions val={} test={} must be in [0, 1) and leave room for train",
                self.val, self.test
            )));
        }
        Ok(())
    }

    /// The split of `id`: SHA-256(salt, 0x00, id) read as a uniform number in [0, 1).
    pub fn assign(&self, id: &str) -> Split {
        let u = hash_unit(&self.salt, id);
        if u < self.test {
            Split::Test
        } else if u < self.test + self.val {
            Split::Val
        } else {
            Split::Train
        }
    }
}

/// A uniform number in [0, 1) from the first 8 bytes of SHA-256(salt, 0x00, id).
pub fn hash_unit(salt: &str, id: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0u8]);
    h.update(id.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}
