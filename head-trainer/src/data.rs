//! Embeddings joined with labels and splits: the rows a head trains and is evaluated on.

use feature_cache::{
    check_unique_ids, widen_f16, CacheMetadata, EmbeddingCache, EmbeddingDtype, EmbeddingValues, LabelTable,
    RowGroupRef, Split, SplitSpec,
};
use half::f16;
use half::slice::HalfFloatSliceExt;
use serde::Serialize;

use crate::error::{Result, TrainError};
use crate::rng::Rng;

/// One step's batch of a row plan: its rows as f32 (`rows x dim`) and their (cache row,
/// label-table row) pairs.
pub type PlanBatch<'a> = (&'a [f32], &'a [(usize, usize)]);

/// Embedding values in memory, row-major; f16 caches stay f16 (half the memory) and rows are
/// widened to f32 only when a batch is gathered.
#[derive(Debug, Clone)]
enum FeatureStore {
    /// Half precision.
    F16(Vec<f16>),
    /// Single precision.
    F32(Vec<f32>),
}

impl FeatureStore {
    /// An empty store of the cache's precision with room for `values` values.
    fn with_capacity(dtype: EmbeddingDtype, values: usize) -> Self {
        match dtype {
            EmbeddingDtype::F16 => Self::F16(Vec::with_capacity(values)),
            EmbeddingDtype::F32 => Self::F32(Vec::with_capacity(values)),
        }
    }

    /// Appends rows as the cache stores them (a copy when the precisions agree).
    fn extend(&mut self, values: EmbeddingValues<'_>) {
        match (self, values) {
            (Self::F16(v), EmbeddingValues::F16(x)) => v.extend_from_slice(x),
            (Self::F32(v), EmbeddingValues::F32(x)) => v.extend_from_slice(x),
            (Self::F16(v), EmbeddingValues::F32(x)) => {
                let start = v.len();
                v.resize(start + x.len(), f16::ZERO);
                v[start..].convert_from_f32_slice(x);
            }
            (Self::F32(v), EmbeddingValues::F16(x)) => {
                let start = v.len();
                v.resize(start + x.len(), 0.0);
                widen_f16(x, &mut v[start..]);
            }
        }
    }

    /// Writes rows `rows` (of `dim` values) as f32 into `out` (`rows.len() x dim`), split over
    /// the threads of the pool.
    fn gather(&self, dim: usize, rows: impl ExactSizeIterator<Item = usize>, out: &mut Vec<f32>) {
        use rayon::prelude::*;
        let rows: Vec<usize> = rows.collect();
        out.resize(rows.len() * dim, 0.0);
        if dim == 0 {
            return;
        }
        let per_task = rows.len().div_ceil(rayon::current_num_threads()).max(32);
        out.par_chunks_mut(per_task * dim).zip(rows.par_chunks(per_task)).for_each(|(out, rows)| {
            for (dst, &r) in out.chunks_exact_mut(dim).zip(rows) {
                match self {
                    Self::F16(v) => widen_f16(&v[r * dim..(r + 1) * dim], dst),
                    Self::F32(v) => dst.copy_from_slice(&v[r * dim..(r + 1) * dim]),
                }
            }
        });
    }
}

/// Bytes one embedding value takes in memory.
fn value_bytes(dtype: EmbeddingDtype) -> u64 {
    match dtype {
        EmbeddingDtype::F16 => 2,
        EmbeddingDtype::F32 => 4,
    }
}

/// A cache read row group by row group, holding at most `buffer_rows` rows at a time.
#[derive(Debug, Clone)]
struct Streamed {
    cache: EmbeddingCache,
    groups: Vec<RowGroupRef>,
    buffer_rows: usize,
}

impl Streamed {
    /// Index of the row group holding cache row `row`.
    fn group_of(&self, row: usize) -> usize {
        self.groups.partition_point(|g| g.first_row + g.rows <= row)
    }

    /// Reads row groups `groups` into one store; row `r` of group `groups[i]` lands at
    /// `offsets[i] + r - first_row`.
    fn read(&self, groups: &[usize]) -> Result<(FeatureStore, Vec<usize>)> {
        let (dtype, dim) = (self.cache.meta.dtype, self.cache.meta.dim);
        let rows: usize = groups.iter().map(|&g| self.groups[g].rows).sum();
        let mut store = FeatureStore::with_capacity(dtype, rows * dim);
        let mut offsets = Vec::with_capacity(groups.len());
        let mut at = 0;
        for &g in groups {
            let group = &self.groups[g];
            let mut values = 0;
            self.cache.for_each_raw_in_group(group, |v| {
                values += v.len();
                store.extend(v);
                Ok(())
            })?;
            if values != group.rows * dim {
                return Err(TrainError::Data(format!(
                    "{}: row group {} of part {} has {} values, its footer says {} rows of {dim}",
                    self.cache.root.display(),
                    group.index,
                    group.part,
                    values,
                    group.rows
                )));
            }
            offsets.push(at);
            at += group.rows;
        }
        Ok((store, offsets))
    }
}

/// Where the embedding values are.
#[derive(Debug, Clone)]
enum Residency {
    /// All of them in memory.
    Resident(FeatureStore),
    /// Read from the cache's row groups when needed.
    Streamed(Streamed),
}

/// The embeddings of a cache: ids in memory, values in memory or streamed from row groups.
#[derive(Debug, Clone)]
pub struct Features {
    /// Image ids, one per row.
    pub ids: Vec<String>,
    /// Values per row.
    pub dim: usize,
    /// The cache's metadata (model identity).
    pub meta: CacheMetadata,
    residency: Residency,
}

impl Features {
    /// Opens a cache: in memory when its values fit `memory_limit` bytes (or no limit is given),
    /// otherwise streamed from its row groups with at most `memory_limit` bytes of values in
    /// memory at a time (and never less than one row group). Duplicate ids are refused.
    pub fn open(cache: &EmbeddingCache, memory_limit: Option<u64>) -> Result<Self> {
        let n = cache.rows();
        let dim = cache.meta.dim;
        let row_bytes = dim as u64 * value_bytes(cache.meta.dtype);
        let fits = memory_limit.is_none_or(|limit| n as u64 * row_bytes <= limit);
        let (ids, residency) = if fits {
            let mut ids = Vec::with_capacity(n);
            let mut store = FeatureStore::with_capacity(cache.meta.dtype, n * dim);
            cache.for_each_raw(|batch_ids, values| {
                ids.extend(batch_ids);
                store.extend(values);
                Ok(())
            })?;
            (ids, Residency::Resident(store))
        } else {
            let limit = memory_limit.unwrap_or(u64::MAX);
            let buffer_rows = (limit / row_bytes.max(1)) as usize;
            let groups = cache.row_groups();
            (cache.read_ids()?, Residency::Streamed(Streamed { cache: cache.clone(), groups, buffer_rows }))
        };
        check_unique_ids(&cache.root, &ids)?;
        Ok(Self { ids, dim, meta: cache.meta.clone(), residency })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether values are streamed from row groups rather than held in memory.
    pub fn is_streamed(&self) -> bool {
        matches!(self.residency, Residency::Streamed(_))
    }

    /// Calls `f(x, positions)` for the cache rows `rows`, at most `chunk` rows at a time: `x`
    /// holds the rows `rows[p]` for `p` in `positions`, as f32. In memory the chunks follow
    /// `rows`' order; streamed, they follow the row groups.
    pub fn for_rows(
        &self,
        rows: &[usize],
        chunk: usize,
        mut f: impl FnMut(&[f32], &[usize]) -> Result<()>,
    ) -> Result<()> {
        let mut x = Vec::new();
        match &self.residency {
            Residency::Resident(store) => {
                let positions: Vec<usize> = (0..rows.len()).collect();
                for pos in positions.chunks(chunk.max(1)) {
                    store.gather(self.dim, pos.iter().map(|&p| rows[p]), &mut x);
                    f(&x, pos)?;
                }
            }
            Residency::Streamed(s) => {
                let mut by_group: Vec<Vec<usize>> = vec![Vec::new(); s.groups.len()];
                for (p, &r) in rows.iter().enumerate() {
                    by_group[s.group_of(r)].push(p);
                }
                for (g, positions) in by_group.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
                    let (store, _) = s.read(&[g])?;
                    let first = s.groups[g].first_row;
                    for pos in positions.chunks(chunk.max(1)) {
                        store.gather(self.dim, pos.iter().map(|&p| rows[p] - first), &mut x);
                        f(&x, pos)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// One epoch over several row plans at once, in memory: each plan is shuffled with its own
    /// generator and cut into batches, and step `s` calls `f` with batch `s` of every plan that
    /// still has one (`None` for the others), each as f32 rows and its (cache row, label-table
    /// row) pairs. A plan's batches are the ones it would have alone. Streamed caches step one
    /// plan at a time (see [`Features::for_each_batch_of_epoch`]).
    pub fn for_each_step_of_epoch(
        &self,
        plans: &mut [Vec<(usize, usize)>],
        rngs: &mut [Rng],
        batch_size: usize,
        mut f: impl FnMut(&[Option<PlanBatch<'_>>]) -> Result<()>,
    ) -> Result<()> {
        if let (Residency::Streamed(_), [plan], [rng]) = (&self.residency, &mut *plans, &mut *rngs) {
            return self.for_each_batch_of_epoch(plan, batch_size, rng, |x, batch| f(&[Some((x, batch))]));
        }
        let Residency::Resident(store) = &self.residency else {
            return Err(TrainError::Data(
                "a streamed cache trains one row plan at a time (heads with different rows are not fused)"
                    .into(),
            ));
        };
        let bs = batch_size.max(1);
        for (plan, rng) in plans.iter_mut().zip(rngs.iter_mut()) {
            rng.shuffle(plan);
        }
        let steps = plans.iter().map(|p| p.len().div_ceil(bs)).max().unwrap_or(0);
        let mut xs: Vec<Vec<f32>> = vec![Vec::new(); plans.len()];
        for step in 0..steps {
            for (x, plan) in xs.iter_mut().zip(plans.iter()) {
                if let Some(batch) = plan.chunks(bs).nth(step) {
                    store.gather(self.dim, batch.iter().map(|r| r.0), x);
                }
            }
            let batches: Vec<Option<PlanBatch<'_>>> = xs
                .iter()
                .zip(plans.iter())
                .map(|(x, plan)| plan.chunks(bs).nth(step).map(|batch| (x.as_slice(), batch)))
                .collect();
            f(&batches)?;
        }
        Ok(())
    }

    /// One epoch over `plan` ((cache row, label-table row) pairs) in batches: calls
    /// `f(x, batch)` with each batch's rows as f32. In memory the whole plan is shuffled with
    /// `rng`; streamed, the row groups are shuffled and read into buffers of at most the memory
    /// limit, and each buffer's rows are shuffled (a block shuffle: a different batch order from
    /// the in-memory one, drawn from the same seed).
    pub fn for_each_batch_of_epoch(
        &self,
        plan: &mut [(usize, usize)],
        batch_size: usize,
        rng: &mut Rng,
        mut f: impl FnMut(&[f32], &[(usize, usize)]) -> Result<()>,
    ) -> Result<()> {
        let mut x = Vec::new();
        match &self.residency {
            Residency::Resident(store) => {
                rng.shuffle(plan);
                for batch in plan.chunks(batch_size.max(1)) {
                    store.gather(self.dim, batch.iter().map(|r| r.0), &mut x);
                    f(&x, batch)?;
                }
            }
            Residency::Streamed(s) => {
                let mut by_group: Vec<Vec<(usize, usize)>> = vec![Vec::new(); s.groups.len()];
                for &r in plan.iter() {
                    by_group[s.group_of(r.0)].push(r);
                }
                let mut order: Vec<usize> =
                    (0..s.groups.len()).filter(|&g| !by_group[g].is_empty()).collect();
                rng.shuffle(&mut order);
                let mut next = 0;
                while next < order.len() {
                    // fill a buffer with the next row groups of the shuffled order
                    let mut take = vec![order[next]];
                    let mut rows = s.groups[order[next]].rows;
                    next += 1;
                    while next < order.len() && rows + s.groups[order[next]].rows <= s.buffer_rows {
                        rows += s.groups[order[next]].rows;
                        take.push(order[next]);
                        next += 1;
                    }
                    let (store, offsets) = s.read(&take)?;
                    let mut local: Vec<(usize, (usize, usize))> = Vec::new();
                    for (&g, &offset) in take.iter().zip(&offsets) {
                        let first = s.groups[g].first_row;
                        local.extend(by_group[g].iter().map(|&r| (offset + r.0 - first, r)));
                    }
                    rng.shuffle(&mut local);
                    let mut batch = Vec::with_capacity(batch_size);
                    for chunk in local.chunks(batch_size.max(1)) {
                        store.gather(self.dim, chunk.iter().map(|c| c.0), &mut x);
                        batch.clear();
                        batch.extend(chunk.iter().map(|c| c.1));
                        f(&x, &batch)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Counts of the join between a cache and a label table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct JoinStats {
    /// Embeddings in the cache.
    pub embeddings: usize,
    /// Rows in the label table.
    pub labelled: usize,
    /// Embeddings with a label-table row.
    pub joined: usize,
    /// Label-table rows with no embedding (not extracted, or failed).
    pub labels_without_embedding: usize,
    /// The first few of those ids, in label-table order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_examples: Vec<String>,
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
        if stats.labels_without_embedding > 0 {
            let mut found = vec![false; table.len()];
            for r in &rows {
                found[r.1] = true;
            }
            stats.missing_examples = table
                .ids
                .iter()
                .zip(&found)
                .filter(|(_, f)| !**f)
                .take(5)
                .map(|(id, _)| id.clone())
                .collect();
        }
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
