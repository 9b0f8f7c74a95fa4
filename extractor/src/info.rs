//! `extractor info`: what a cache holds, and whether it is complete and consistent.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use feature_cache::failures::{count_by_kind, read_cache_failures};
use feature_cache::{CacheMetadata, EmbeddingCache};
use serde::Serialize;

use crate::error::Result;

/// An id found twice in a cache, with two parts holding it.
#[derive(Debug, Clone, Serialize)]
pub struct DuplicateId {
    /// The id.
    pub id: String,
    /// A part that holds it.
    pub first: String,
    /// Another part that holds it.
    pub second: String,
}

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
    /// The shared metadata (`None` when there is no part, e.g. every image failed).
    pub metadata: Option<CacheMetadata>,
    /// Parts per contract version.
    pub format_versions: BTreeMap<u32, usize>,
    /// Embedded images per shard tag (`s0003of0016`) of the part names.
    pub rows_by_shard: BTreeMap<String, usize>,
    /// Failures recorded.
    pub failures: usize,
    /// Failures by kind.
    pub failures_by_kind: BTreeMap<String, usize>,
    /// Ids embedded twice (at most 10 listed) and how many there are.
    pub duplicate_ids: Vec<DuplicateId>,
    /// Number of ids embedded more than once.
    pub duplicates: usize,
    /// Ids both embedded and recorded as failed.
    pub embedded_and_failed: usize,
}

/// The shard tag in a part's file name (`emb-s0003of0016-000012.parquet` -> `s0003of0016`).
fn shard_tag(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.strip_prefix("emb-").and_then(|r| r.split('-').next()).unwrap_or("(other)").to_string()
}

/// Reads a cache's footers, ids and failure tables (refusing mixed caches).
pub fn cache_info(dir: &Path) -> Result<CacheInfo> {
    let cache = EmbeddingCache::open_if_any(dir)?;
    let failures = read_cache_failures(dir)?;
    let mut info = CacheInfo {
        path: dir.display().to_string(),
        rows: 0,
        parts: 0,
        bytes_on_disk: 0,
        metadata: cache.as_ref().map(|c| c.meta.clone()),
        format_versions: BTreeMap::new(),
        rows_by_shard: BTreeMap::new(),
        failures: failures.len(),
        failures_by_kind: count_by_kind(&failures),
        duplicate_ids: Vec::new(),
        duplicates: 0,
        embedded_and_failed: 0,
    };
    let Some(cache) = cache else { return Ok(info) };
    info.rows = cache.rows();
    info.parts = cache.parts.len();
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(info.rows);
    for (k, part) in cache.parts.iter().enumerate() {
        info.bytes_on_disk += std::fs::metadata(&part.path).map(|m| m.len()).unwrap_or(0);
        *info.format_versions.entry(part.format_version).or_insert(0) += 1;
        *info.rows_by_shard.entry(shard_tag(&part.path)).or_insert(0) += part.rows;
        for id in part.read_ids()? {
            if let Some(&first) = seen.get(&id) {
                info.duplicates += 1;
                if info.duplicate_ids.len() < 10 {
                    info.duplicate_ids.push(DuplicateId {
                        id,
                        first: cache.parts[first].path.display().to_string(),
                        second: part.path.display().to_string(),
                    });
                }
            } else {
                seen.insert(id, k);
            }
        }
    }
    info.embedded_and_failed = failures.iter().filter(|f| seen.contains_key(&f.id)).count();
    Ok(info)
}

impl std::fmt::Display for CacheInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "cache          {}", self.path)?;
        writeln!(
            f,
            "embeddings     {} rows in {} parts, {:.1} MiB on disk",
            self.rows,
            self.parts,
            self.bytes_on_disk as f64 / 1048576.0
        )?;
        match &self.metadata {
            Some(m) => {
                writeln!(f, "model          {} (sha256 {})", m.model, m.model_sha256)?;
                writeln!(
                    f,
                    "embedding      {} x {} ({} pooling, {}px input)",
                    m.dim, m.dtype, m.pooling, m.input_size
                )?;
                writeln!(f, "preprocessing  {}", m.preprocessing)?;
                writeln!(f, "written by     {}", m.tool_version)?;
            }
            None => writeln!(f, "model          (no embedding part yet)")?,
        }
        if !self.format_versions.is_empty() {
            let v: Vec<String> =
                self.format_versions.iter().map(|(v, n)| format!("{v} ({n} parts)")).collect();
            writeln!(f, "format         {}", v.join(", "))?;
        }
        if self.rows_by_shard.len() > 1 {
            writeln!(f, "by shard       {} shards", self.rows_by_shard.len())?;
            for (tag, n) in &self.rows_by_shard {
                writeln!(f, "  {tag:<14} {n}")?;
            }
        }
        if self.duplicates > 0 {
            writeln!(
                f,
                "DUPLICATE IDS  {} (readers refuse this cache until they are removed)",
                self.duplicates
            )?;
            for d in &self.duplicate_ids {
                writeln!(f, "  {} in {} and {}", d.id, d.first, d.second)?;
            }
        }
        if self.embedded_and_failed > 0 {
            writeln!(f, "embedded and failed  {} ids", self.embedded_and_failed)?;
        }
        write!(f, "failures       {}", self.failures)?;
        for (kind, n) in &self.failures_by_kind {
            write!(f, "\n  {kind:<18} {n}")?;
        }
        Ok(())
    }
}
