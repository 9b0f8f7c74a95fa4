//! The Parquet contract: round trips, metadata, mixed caches, manifests, label tables, splits.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::collections::HashSet;

use feature_cache::failures::{count_by_kind, failures_dir, read_cache_failures};
use feature_cache::manifest::read_manifest;
use feature_cache::{
    CacheError, CacheMetadata, EmbeddingCache, EmbeddingDtype, EmbeddingWriter, Failure, FailureWriter,
    LabelTable, Origin, Pooling, Split, SplitSpec,
};

fn meta(dim: usize, dtype: EmbeddingDtype) -> CacheMetadata {
    CacheMetadata {
        model: "efficientnet-lite0".into(),
        model_sha256: "ab".repeat(32),
        dim,
        pooling: Pooling::Avg,
        input_size: 224,
        preprocessing: "center_crop(0.875)+bilinear".into(),
        dtype,
        tool_version: "extractor 0.1.0".into(),
    }
}

fn value(i: usize, j: usize) -> f32 {
    ((i * 31 + j * 7) % 97) as f32 / 13.0 - 3.0
}

/// Row i of the test parts comes from row i of a Parquet shard, except every third row (a tar
/// member) and every fifth (a file).
fn origin(i: usize) -> Origin {
    if i.is_multiple_of(5) {
        Origin::File(format!("/images/img{i:05}.jpg").into())
    } else if i.is_multiple_of(3) {
        Origin::TarMember { shard: "shards/00001.tar".into(), member: format!("{i:09}.jpg") }
    } else {
        Origin::ParquetRow { shard: "wit/00000.parquet".into(), row: i as u64 }
    }
}

fn write_part(path: &Path, m: CacheMetadata, ids: std::ops::Range<usize>) -> PathBuf {
    let mut w = EmbeddingWriter::create(path, m.clone()).unwrap();
    for i in ids {
        let row: Vec<f32> = (0..m.dim).map(|j| value(i, j)).collect();
        w.push(&format!("img{i:05}"), &row, 100 + i as u32, 50, Some(&origin(i))).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn round_trip_f32_is_exact_and_f16_is_close() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [EmbeddingDtype::F32, EmbeddingDtype::F16] {
        let path = dir.path().join(format!("{dtype}.parquet"));
        // more rows than one row group, to cross a group boundary
        write_part(&path, meta(24, dtype), 0..20_000);
        let cache = EmbeddingCache::open(&path).unwrap();
        assert_eq!(cache.meta, meta(24, dtype));
        assert_eq!(cache.rows(), 20_000);
        let m = cache.read_all().unwrap();
        assert_eq!(m.len(), 20_000);
        assert_eq!(m.ids[12_345], "img12345");
        assert_eq!(m.widths[7], 107);
        let tol = if dtype == EmbeddingDtype::F32 { 0.0 } else { 2e-3 };
        for i in [0, 8191, 8192, 19_999] {
            for (j, v) in m.row(i).iter().enumerate() {
                assert!((v - value(i, j)).abs() <= tol, "{dtype} row {i} col {j}: {v} vs {}", value(i, j));
            }
        }
        assert_eq!(cache.read_ids().unwrap(), m.ids);
        let wanted: HashSet<&str> = ["img00000", "img08192", "img19998", "nope"].into();
        let origins = cache.read_origins(&wanted).unwrap();
        assert_eq!(origins.len(), 3);
        for (id, i) in [("img00000", 0), ("img08192", 8192), ("img19998", 19_998)] {
            assert_eq!(origins[id], origin(i), "{id}");
        }
    }
}

#[test]
fn unfinished_part_is_invisible_and_leaves_no_temp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("emb-0.parquet");
    {
        let mut w = EmbeddingWriter::create(&path, meta(4, EmbeddingDtype::F32)).unwrap();
        w.push("a", &[1.0, 2.0, 3.0, 4.0], 1, 1, None).unwrap();
        // dropped without finish(): a crash or an error
    }
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn wrong_length_embedding_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EmbeddingWriter::create(dir.path().join("x.parquet"), meta(4, EmbeddingDtype::F32)).unwrap();
    let err = w.push("a", &[1.0; 5], 1, 1, None).unwrap_err().to_string();
    assert!(err.contains("`a` has 5 values") && err.contains("dim is 4"), "{err}");
}

#[test]
fn directory_cache_joins_parts_and_refuses_mixed_models() {
    let dir = tempfile::tempdir().unwrap();
    write_part(&dir.path().join("emb-a.parquet"), meta(8, EmbeddingDtype::F16), 0..10);
    write_part(&dir.path().join("emb-b.parquet"), meta(8, EmbeddingDtype::F16), 10..25);
    std::fs::create_dir(failures_dir(dir.path())).unwrap();
    FailureWriter::write(
        failures_dir(dir.path()).join("failures-a.parquet"),
        &[Failure {
            id: "bad".into(),
            kind: "corrupt".into(),
            reason: "eof".into(),
            origin: Some(Origin::File("/x/bad.jpg".into())),
        }],
    )
    .unwrap();
    let cache = EmbeddingCache::open(dir.path()).unwrap();
    assert_eq!(cache.parts.len(), 2, "failures table is not an embedding part");
    assert_eq!(cache.parts[0].format_version, 2);
    assert_eq!(cache.rows(), 25);
    let failures = read_cache_failures(dir.path()).unwrap();
    assert_eq!(count_by_kind(&failures).get("corrupt"), Some(&1));

    let mut other = meta(8, EmbeddingDtype::F16);
    other.model = "efficientnet-lite2".into();
    write_part(&dir.path().join("emb-c.parquet"), other, 25..30);
    let err = EmbeddingCache::open(dir.path()).unwrap_err();
    assert!(matches!(err, CacheError::MixedCache(ref m) if m.field == "model"), "{err}");
    assert!(err.to_string().contains("efficientnet-lite2"), "{err}");
}

#[test]
fn mixed_dims_refused_and_duplicates_named() {
    let dir = tempfile::tempdir().unwrap();
    write_part(&dir.path().join("emb-a.parquet"), meta(8, EmbeddingDtype::F32), 0..10);
    write_part(&dir.path().join("emb-b.parquet"), meta(8, EmbeddingDtype::F32), 5..12);
    let err = EmbeddingCache::open(dir.path()).unwrap().read_all().unwrap_err().to_string();
    assert!(err.contains("duplicate id `img00005`"), "{err}");
    write_part(&dir.path().join("emb-c.parquet"), meta(16, EmbeddingDtype::F32), 20..22);
    let err = EmbeddingCache::open(dir.path()).unwrap_err().to_string();
    assert!(err.contains("(dim)"), "{err}");
}

#[test]
fn parquet_without_our_metadata_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("failures-0.parquet");
    FailureWriter::write(&p, &[]).unwrap();
    let err = EmbeddingCache::open(&p).unwrap_err().to_string();
    assert!(err.contains("wit.format_version") && err.contains("not an embedding cache"), "{err}");
}

#[test]
fn pyarrow_reads_the_cache_as_a_numpy_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_part(&dir.path().join("emb.parquet"), meta(12, EmbeddingDtype::F16), 0..300);
    write_part(&dir.path().join("emb32.parquet"), meta(12, EmbeddingDtype::F32), 0..10);
    let script = r#"
import sys, numpy as np, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
md = t.schema.metadata
emb = np.stack(t.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
flat = t.column("embedding").combine_chunks().flatten().to_numpy().reshape(len(t), -1)
assert emb.shape == (300, 12) and flat.shape == (300, 12), emb.shape
assert np.array_equal(emb, flat.astype(np.float32))
assert md[b"wit.model"] == b"efficientnet-lite0" and md[b"wit.dim"] == b"12" and md[b"wit.dtype"] == b"f16"
i, j = 123, 5
expected = ((i * 31 + j * 7) % 97) / 13.0 - 3.0
assert abs(emb[i, j] - expected) < 2e-3, (emb[i, j], expected)
assert t.column("id")[i].as_py() == "img00123"
assert t.column("source")[i].as_py() == "shards/00001.tar" and t.column("source_member")[i].as_py() == "000000123.jpg"
assert t.column("source_row")[1].as_py() == 1 and t.column("source_row")[0].as_py() is None
# f16 values PLAIN (DuckDB reads no byte-stream-split FIXED_LEN_BYTE_ARRAY), f32 byte-stream-split;
# never a dictionary
col = pq.ParquetFile(sys.argv[1]).metadata.row_group(0).column(1)
assert col.path_in_schema == "embedding.list.item", col.path_in_schema
assert "BYTE_STREAM_SPLIT" not in col.encodings and not col.has_dictionary_page, col.encodings
col = pq.ParquetFile(sys.argv[1].replace("emb.parquet", "emb32.parquet")).metadata.row_group(0).column(1)
assert "BYTE_STREAM_SPLIT" in col.encodings and not col.has_dictionary_page, col.encodings
print("ok", emb.shape, str(flat.dtype))
"#;
    let out = Command::new(python())
        .args(["-c", script, path.to_str().unwrap()])
        .output()
        .expect("run python (scripts/setup creates .venv)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pyarrow check failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("ok (300, 12) float16"), "{stdout}");
}

/// The project's Python: `WIT_PYTHON`, else `.venv/bin/python` of the workspace.
fn python() -> PathBuf {
    std::env::var_os("WIT_PYTHON").map(PathBuf::from).unwrap_or_else(|| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        assert!(p.exists(), "{} missing: run scripts/setup", p.display());
        p
    })
}

#[test]
fn manifest_tables_in_three_formats() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("m.csv");
    std::fs::write(&csv, "id,path\na,img/a.png\nb,/abs/b.jpg\n").unwrap();
    let m = read_manifest(&csv).unwrap();
    assert_eq!(m[0].path, dir.path().join("img/a.png"));
    assert_eq!(m[1].path, PathBuf::from("/abs/b.jpg"));

    let jsonl = dir.path().join("m.jsonl");
    std::fs::write(&jsonl, "{\"id\": \"a\", \"path\": \"a.png\"}\n\n{\"id\": \"b\", \"path\": \"b.png\"}\n")
        .unwrap();
    assert_eq!(read_manifest(&jsonl).unwrap().len(), 2);

    let dup = dir.path().join("dup.csv");
    std::fs::write(&dup, "id,path\na,1.png\nb,2.png\na,3.png\n").unwrap();
    let err = read_manifest(&dup).unwrap_err().to_string();
    assert!(err.contains("dup.csv") && err.contains("duplicate id `a` (rows 1 and 3)"), "{err}");

    let missing = dir.path().join("nopath.csv");
    std::fs::write(&missing, "id,file\na,1.png\n").unwrap();
    let err = read_manifest(&missing).unwrap_err().to_string();
    assert!(err.contains("column `path`: missing (columns present: id, file)"), "{err}");

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": \"a\", \"path\": \"a.png\"}\n{not json\n").unwrap();
    let err = read_manifest(&bad).unwrap_err().to_string();
    assert!(err.contains("bad.jsonl: row 2: invalid JSON"), "{err}");

    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "id,path\na,\n").unwrap();
    let err = read_manifest(&empty).unwrap_err().to_string();
    assert!(err.contains("row 1: `path` is empty"), "{err}");
}

#[test]
fn label_tables_csv_jsonl_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("labels.csv");
    std::fs::write(
        &csv,
        "id,fine,coarse,split\na,Animals|Plants,Nature,train\nb,,Culture,\nc,Maps,Places,test\n",
    )
    .unwrap();
    let t = LabelTable::load(&csv).unwrap();
    assert_eq!(t.columns, ["fine", "coarse"]);
    assert_eq!(t.column("fine").unwrap()[0], ["Animals", "Plants"]);
    assert!(t.column("fine").unwrap()[1].is_empty());
    assert_eq!(t.splits.as_ref().unwrap()[2], Some(Split::Test));
    assert_eq!(t.row_of("c"), Some(2));
    let err = t.column("ores").unwrap_err().to_string();
    assert!(err.contains("no such label column (have: fine, coarse)"), "{err}");

    let jsonl = dir.path().join("labels.jsonl");
    std::fs::write(
        &jsonl,
        "{\"id\": \"a\", \"ores\": [\"STEM.Space\", \"Culture\"]}\n{\"id\": \"b\", \"ores\": 3}\n",
    )
    .unwrap();
    let err = LabelTable::load(&jsonl);
    // a number is read as one label "3": legal, if odd
    assert_eq!(err.unwrap().column("ores").unwrap()[1], ["3"]);

    // Parquet with a list<string> column, written by pyarrow
    let pq = dir.path().join("labels.parquet");
    let script = "import sys, pyarrow as pa, pyarrow.parquet as pq\n\
        pq.write_table(pa.table({'id': ['x', 'y'], 'custom': [['Maps', 'Flags'], None]}), sys.argv[1])";
    let st = Command::new(python()).args(["-c", script, pq.to_str().unwrap()]).status().unwrap();
    assert!(st.success());
    let t = LabelTable::load(&pq).unwrap();
    assert_eq!(t.column("custom").unwrap()[0], ["Maps", "Flags"]);
    assert!(t.column("custom").unwrap()[1].is_empty());

    let bad_split = dir.path().join("bs.csv");
    std::fs::write(&bad_split, "id,fine,split\na,X,training\n").unwrap();
    let err = LabelTable::load(&bad_split).unwrap_err().to_string();
    assert!(err.contains("bs.csv: row 1: `training` is not a split"), "{err}");
}

#[test]
fn hash_split_is_deterministic_and_proportional() {
    let spec = SplitSpec::default();
    spec.validate().unwrap();
    let n = 50_000;
    let mut counts = [0usize; 3];
    for i in 0..n {
        let id = format!("File:{i}.jpg");
        counts[spec.assign(&id) as usize] += 1;
    }
    let frac = |c: usize| c as f64 / n as f64;
    assert!((frac(counts[0]) - 0.7).abs() < 0.01, "{counts:?}");
    assert!((frac(counts[1]) - 0.1).abs() < 0.01, "{counts:?}");
    assert!((frac(counts[2]) - 0.2).abs() < 0.01, "{counts:?}");
    let other = SplitSpec { salt: "other".into(), ..SplitSpec::default() };
    let moved = (0..1000).filter(|i| spec.assign(&i.to_string()) != other.assign(&i.to_string())).count();
    assert!(moved > 300, "a different salt draws a different split ({moved} moved)");
    assert!(SplitSpec { val: 0.5, test: 0.5, salt: String::new() }.validate().is_err());
}

#[test]
fn widening_f16_equals_the_per_value_conversion_for_every_bit_pattern() {
    // all 65,536 f16 bit patterns (zeros, subnormals, infinities, NaNs), at lengths that are and
    // are not multiples of the 8-wide F16C loop
    let all: Vec<half::f16> = (0..=u16::MAX).map(half::f16::from_bits).collect();
    for len in [all.len(), all.len() - 3, 7, 0] {
        let src = &all[..len];
        let mut out = vec![0f32; len];
        feature_cache::widen_f16(src, &mut out);
        for (h, w) in src.iter().zip(&out) {
            let expected = h.to_f32();
            assert!(
                w.to_bits() == expected.to_bits() || (w.is_nan() && expected.is_nan()),
                "{:#06x}: {w} vs {expected}",
                h.to_bits()
            );
        }
    }
}
