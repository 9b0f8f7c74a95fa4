//! Embeddings joined with labels and splits: the rows a head trains and is evaluated on.

use std::collections::HashMap;

use feature_cache::{CacheMetadata, EmbeddingCache, EmbeddingDtype, LabelTable, Split, SplitSpec};
use half::f16;
use half::slice::HalfFloatSliceExt;
use serde::Serialize;

use crate::error::{Result, TrainError};

/// Embedding values in memory, row-major; f16 caches stay f16 (half the memory) and rows are
/// widened to f32 only when a batch is gathered.
#[derive(Debug, Clone)]
pub enum FeatureStore {
    /// Half precision.
    F16(Vec<f16>),
    /// Single precision.
    F32(Vec<f32>),
}

/// All embeddings of a cache.
#[derive(Debug, Clone)]
pub struct Features {
    /// Image ids, one per row.
    pub ids: Vec<String>,
    /// Values per row.
    pub dim: usize,
    /// The values.
    pub store: FeatureStore,
    /// The cache's metadata (model identity).
    pub meta: CacheMetadata,
}

impl Features {
    /// Reads a whole cache into memory (refusing duplicate ids).
    pub fn load(cache: &EmbeddingCache) -> Result<Self> {
        let n = cache.rows();
        let dim = cache.meta.dim;
        let mut ids = Vec::with_capacity(n);
        let mut store = match cache.meta.dtype {
            EmbeddingDtype::F16 => FeatureStore::F16(Vec::with_capacity(n * dim)),
            EmbeddingDtype::F32 => FeatureStore::F32(Vec::with_capacity(n * dim)),
        };
        cache.for_each_batch(|batch| {
            ids.extend(batch.ids);
            match &mut store {
                FeatureStore::F16(v) => {
                    let start = v.len();
                    v.resize(start + batch.values.len(), f16::ZERO);
                    v[start..].convert_from_f32_slice(&batch.values);
                }
                FeatureStore::F32(v) => v.extend_from_slice(&batch.values),
            }
            Ok(())
        })?;
        let mut seen = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if let Some(first) = seen.insert(id.as_str(), i) {
                return Err(TrainError::Data(format!(
                    "{}: duplicate id `{id}` (rows {} and {})",
                    cache.root.display(),
                    first + 1,
                    i + 1
                )));
            }
        }
        Ok(Self { ids, dim, store, meta: cache.meta.clone() })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Writes rows `rows` as f32 into `out` (`rows.len() x dim`).
    pub fn gather(&self, rows: &[usize], out: &mut Vec<f32>) {
        let d = self.dim;
        out.resize(rows.len() * d, 0.0);
        for (i, &r) in rows.iter().enumerate() {
            let dst = &mut out[i * d..(i + 1) * d];
            match &self.store {
                FeatureStore::F16(v) => v[r * d..(r + 1) * d].convert_to_f32_slice(dst),
                FeatureStore::F32(v) => dst.copy_from_slice(&v[r * d..(r + 1) * d]),
            }
        }
    }
}

/// Counts of the join between a cache and a label table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JoinStats {
    /// Embeddings in the cache.
    pub embeddings: usize,
    /// Rows in the label table.
    pub labelled: usize,
    /// Embeddings with a label-table row.
    pub joined: usize,
    /// Label-table rows with no embedding (not extracted, or failed).
    pub labels_without_embedding: usize,
    /// Joined rows per split.
    pub per_split: [usize; 3],
}

/// Each embedding row's label-table row and split.
#[derive(Debug, Clone)]
pub struct Joined {
    /// (feature row, label-table row, split) for every embedding that has labels.
    pub rows: Vec<(usize, usize, Split)>,
    /// Counts.
    pub stats: JoinStats,
}

impl Joined {
    /// Joins by id; the split comes from the table's `split` column where set, else the hash.
    pub fn new(features: &Features, table: &LabelTable, split: &SplitSpec) -> Result<Self> {
        split.validate()?;
        let mut rows = Vec::new();
        let mut stats = JoinStats { embeddings: features.len(), labelled: table.len(), ..Default::default() };
        for (fr, id) in features.ids.iter().enumerate() {
            let Some(tr) = table.row_of(id) else { continue };
            let s = table.splits.as_ref().and_then(|s| s[tr]).unwrap_or_else(|| split.assign(id));
            stats.per_split[s as usize] += 1;
            rows.push((fr, tr, s));
        }
        stats.joined = rows.len();
        stats.labels_without_embedding = table.len() - rows.len();
        if rows.is_empty() {
            return Err(TrainError::Data(format!(
                "no image of the cache ({} embeddings) is in the label table {} ({} rows): do the ids match?",
                features.len(),
                table.path.display(),
                table.len()
            )));
        }
        Ok(Self { rows, stats })
    }
}
