//! `--memory-limit`: a cache bigger than the limit is streamed from its row groups; it reads the
//! same values, visits every training row once per epoch, holds at most the limit of rows at a
//! time, and trains a head as good as the in-memory one.

use std::collections::HashSet;
use std::path::Path;

use feature_cache::{CacheMetadata, EmbeddingCache, EmbeddingDtype, EmbeddingWriter, Pooling, Silent};
use head_trainer::config::RunConfig;
use head_trainer::data::Features;
use head_trainer::rng::Rng;
use head_trainer::run::{train_one, Inputs};

const N: usize = 20_000; // three row groups of 8192, 8192 and 3616 rows
const DIM: usize = 16;

/// A cache whose values encode their row (so any mix-up shows) plus a planted label `a`.
fn dataset(dir: &Path) {
    let meta = CacheMetadata {
        model: "synthetic".into(),
        model_sha256: "0".repeat(64),
        dim: DIM,
        pooling: Pooling::Avg,
        input_size: 224,
        preprocessing: "none".into(),
        dtype: EmbeddingDtype::F16,
        tool_version: "test".into(),
    };
    std::fs::create_dir_all(dir.join("cache")).unwrap();
    let mut w = EmbeddingWriter::create(dir.join("cache/emb.parquet"), meta).unwrap();
    let mut rng = Rng::new(3);
    let mut csv = String::from("id,tags\n");
    for i in 0..N {
        let a = rng.next_f64() < 0.3;
        let mut x: Vec<f32> = (0..DIM).map(|_| rng.uniform(0.0, 1.0)).collect();
        x[0] = (i % 1000) as f32; // exact in f16
        if a {
            x[1] += 1.0;
            x[2] -= 0.5;
        }
        w.push(&format!("i{i}"), &x, 1, 1, None).unwrap();
        csv.push_str(&format!("i{i},{}\n", if a { "a|b" } else { "b" }));
    }
    w.finish().unwrap();
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
}

/// Bytes of `rows` rows of the cache's values in memory.
fn rows_bytes(rows: usize) -> u64 {
    (rows * DIM * 2) as u64
}

#[test]
fn streamed_features_read_the_same_values_and_visit_every_row_once() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let cache = EmbeddingCache::open(tmp.path().join("cache")).unwrap();
    assert_eq!(cache.row_groups().len(), 3);
    let resident = Features::open(&cache, None).unwrap();
    let fits = Features::open(&cache, Some(rows_bytes(N))).unwrap();
    let streamed = Features::open(&cache, Some(rows_bytes(9000))).unwrap();
    assert!(!resident.is_streamed() && !fits.is_streamed() && streamed.is_streamed());
    assert_eq!(streamed.ids, resident.ids);

    // the same values for any rows, in any order
    let mut rng = Rng::new(1);
    let rows: Vec<usize> = (0..5000).map(|_| rng.below(N)).collect();
    let read = |f: &Features| {
        let mut out = vec![0f32; rows.len() * DIM];
        f.for_rows(&rows, 777, |x, positions| {
            for (row, &p) in x.chunks_exact(DIM).zip(positions) {
                out[p * DIM..(p + 1) * DIM].copy_from_slice(row);
            }
            Ok(())
        })
        .unwrap();
        out
    };
    let (a, b) = (read(&resident), read(&streamed));
    assert_eq!(a, b);
    assert!(rows.iter().enumerate().all(|(p, &r)| a[p * DIM] == (r % 1000) as f32));

    // an epoch: every plan row exactly once, batches within one buffer (at most 9000 rows of
    // the cache, i.e. one row group of 8192 here), values matching the rows
    let mut plan: Vec<(usize, usize)> = (0..N).filter(|i| i % 3 != 0).map(|i| (i, i)).collect();
    let mut seen = HashSet::new();
    let mut buffers: Vec<HashSet<usize>> = Vec::new();
    let mut last_group = usize::MAX;
    streamed
        .for_each_batch_of_epoch(&mut plan, 64, &mut Rng::new(9), |x, batch| {
            assert!(batch.len() <= 64);
            let groups: HashSet<usize> = batch.iter().map(|r| r.0 / 8192).collect();
            assert_eq!(groups.len(), 1, "a batch never spans two buffers here");
            let g = *groups.iter().next().unwrap();
            if g != last_group {
                buffers.push(HashSet::new());
                last_group = g;
            }
            for (row, r) in x.chunks_exact(DIM).zip(batch) {
                assert_eq!(row[0], (r.0 % 1000) as f32);
                assert!(seen.insert(r.0), "row {} twice", r.0);
                buffers.last_mut().unwrap().insert(r.0);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(seen.len(), plan.len());
    assert_eq!(buffers.len(), 3, "each row group read once per epoch");
    // rows are shuffled within a buffer, not read in order
    let mut order = Vec::new();
    streamed
        .for_each_batch_of_epoch(&mut plan, 64, &mut Rng::new(9), |_, batch| {
            order.extend(batch.iter().map(|r| r.0));
            Ok(())
        })
        .unwrap();
    assert!(order.windows(2).filter(|w| w[1] < w[0]).count() > order.len() / 3);
}

#[test]
fn a_head_trained_streamed_is_as_good_as_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let mut config = RunConfig::for_column("tags");
    config.train.epochs = 3;
    let (cache, labels) = (tmp.path().join("cache"), tmp.path().join("labels.csv"));
    let resident = Inputs::open(&cache, &labels, None).unwrap();
    let streamed = Inputs::open(&cache, &labels, Some(rows_bytes(9000))).unwrap();
    assert!(streamed.features.is_streamed());
    let a = train_one(&resident, &config, &tmp.path().join("resident"), &Default::default(), &Silent)
        .unwrap()
        .trained;
    let b = train_one(&streamed, &config, &tmp.path().join("streamed"), &Default::default(), &Silent)
        .unwrap()
        .trained;
    let (ra, rb) = (a.test.macro_.roc_auc.unwrap(), b.test.macro_.roc_auc.unwrap());
    assert!(ra > 0.9 && rb > 0.9, "the planted label is learnt: {ra} / {rb}");
    assert!((ra - rb).abs() < 0.01, "block shuffle vs full shuffle: {ra} vs {rb}");
    assert_eq!(a.test_ids, b.test_ids);
    // the linear probe needs its training matrix in memory and says so
    config.model = head_trainer::model::ModelKind::Linear;
    let err = train_one(&streamed, &config, &tmp.path().join("probe"), &Default::default(), &Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("linear probe") && err.contains("--memory-limit"), "{err}");
}
