//! `extractor info`: what a cache holds.

use std::collections::BTreeMap;
use std::path::Path;

use feature_cache::failures::{count_by_kind, read_cache_failures};
use feature_cache::{CacheMetadata, EmbeddingCache};
use serde::Serialize;

use crate::error::Result;

/// Summary of a cache directory.
#[derive(Debug, Clone, Serialize)]
pub struct CacheInfo {
    /// The directory.
    pub path: String,
    /// Embedded images.
    pub rows: usize,
    /// Parquet parts.
    pub parts: usize,
    /// Bytes of the parts on disk.
    pub bytes_on_disk: u64,
    /// The shared metadata.
    pub metadata: CacheMetadata,
    /// Failures recorded.
    pub failures: usize,
    /// Failures by kind.
    pub failures_by_kind: BTreeMap<String, usize>,
}

/// Reads a cache's footers and failure tables (refusing mixed caches).
pub fn cache_info(dir: &Path) -> Result<CacheInfo> {
    let cache = EmbeddingCache::open(dir)?;
    let failures = read_cache_failures(dir)?;
    let bytes_on_disk =
        cache.parts.iter().filter_map(|p| std::fs::metadata(&p.path).ok()).map(|m| m.len()).sum();
    Ok(CacheInfo {
        path: dir.display().to_string(),
        rows: cache.rows(),
        parts: cache.parts.len(),
        bytes_on_disk,
        metadata: cache.meta.clone(),
        failures: failures.len(),
        failures_by_kind: count_by_kind(&failures),
    })
}

impl std::fmt::Display for CacheInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.metadata;
        writeln!(f, "cache          {}", self.path)?;
        writeln!(
            f,
            "embeddings     {} rows in {} parts, {:.1} MiB on disk",
            self.rows,
            self.parts,
            self.bytes_on_disk as f64 / 1048576.0
        )?;
        writeln!(f, "model          {} (sha256 {})", m.model, m.model_sha256)?;
        writeln!(
            f,
            "embedding      {} x {} ({} pooling, {}px input)",
            m.dim, m.dtype, m.pooling, m.input_size
        )?;
        writeln!(f, "preprocessing  {}", m.preprocessing)?;
        writeln!(f, "written by     {}", m.tool_version)?;
        write!(f, "failures       {}", self.failures)?;
        for (kind, n) in &self.failures_by_kind {
            write!(f, "\n  {kind:<14} {n}")?;
        }
        Ok(())
    }
}
