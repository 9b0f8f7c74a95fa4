//! Faults a multi-million-image job meets, each found by trying the extractor as a new user
//! would, each with its regression test: the job never hangs, never loses finished work and
//! never files an image under a wrong or shared id.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use feature_cache::failures::{failures_dir, read_cache_failures};
use feature_cache::EmbeddingCache;

fn png(path: &Path, seed: u32) {
    image::RgbImage::from_fn(40, 36, |x, y| {
        image::Rgb([(x * 5 + seed) as u8, (y * 7 + seed * 3) as u8, ((x ^ y) * 11) as u8])
    })
    .save_with_format(path, image::ImageFormat::Png)
    .unwrap();
}

fn images(dir: &Path, n: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        png(&dir.join(format!("img{i:04}.png")), i);
    }
}

fn extractor(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_extractor"));
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn embed(input: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = extractor(&["embed", input.to_str().unwrap(), "--model", "efficientnet-lite0"]);
    cmd.args(["--out", out.to_str().unwrap(), "--input-size", "64", "--device", "cpu", "--quiet"])
        .args(extra);
    cmd
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn part_files(out: &Path) -> Vec<PathBuf> {
    EmbeddingCache::part_paths(out).unwrap_or_default()
}

#[test]
fn a_write_error_mid_run_stops_the_job_within_seconds_naming_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    images(&input, 400);
    let out = tmp.path().join("cache");
    let mut child =
        embed(&input, &out, &["--batch-size", "4", "--part-size", "8", "--threads", "1"]).spawn().unwrap();
    let start = Instant::now();
    while part_files(&out).len() < 2 {
        assert!(child.try_wait().unwrap().is_none(), "finished before the fault could be injected");
        assert!(start.elapsed() < Duration::from_secs(300), "no part written in 300 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    // the output directory disappears under the running job (a full disk fails the same way);
    // renamed away in one step, as deleting it file by file races with the job's next part
    std::fs::rename(&out, tmp.path().join("gone")).unwrap();
    let removed = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(removed.elapsed() < Duration::from_secs(30), "the job still runs 30 s after its output went");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned();
    assert!(!status.success());
    assert!(stderr.contains("No such file or directory") && stderr.contains("cache"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_fifo_or_device_in_a_manifest_is_refused_without_being_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("pipe.jpg");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    png(&tmp.path().join("good.png"), 1);
    let manifest = tmp.path().join("m.csv");
    std::fs::write(&manifest, format!("id,path\npipe,{}\nzero,/dev/zero\ngood,good.png\n", fifo.display()))
        .unwrap();
    let out = tmp.path().join("cache");
    let start = Instant::now();
    let stdout = ok(embed(&manifest, &out, &[]).output().unwrap());
    assert!(start.elapsed() < Duration::from_secs(120));
    assert!(stdout.contains("embedded 1 images, 2 failed"), "{stdout}");
    let failures = read_cache_failures(&out).unwrap();
    let kinds: Vec<(&str, &str)> = failures.iter().map(|f| (f.id.as_str(), f.kind.as_str())).collect();
    assert_eq!(kinds, [("pipe", "not-a-file"), ("zero", "not-a-file")]);
    assert!(failures[0].reason.contains("FIFO"), "{}", failures[0].reason);
}

#[test]
fn directory_symlink_loops_list_each_file_once_and_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    png(&root.join("a/b/x.png"), 1);
    png(&root.join("y.png"), 2);
    std::os::unix::fs::symlink(root.join("a"), root.join("a/b/loop1")).unwrap();
    std::os::unix::fs::symlink(&root, root.join("a/loop2")).unwrap();
    let out = tmp.path().join("cache");
    let stdout = ok(embed(&root, &out, &[]).output().unwrap());
    assert!(stdout.contains("embedded 2 images, 0 failed"), "{stdout}");
    let mut ids = EmbeddingCache::open(&out).unwrap().read_ids().unwrap();
    ids.sort();
    assert_eq!(ids, ["a/b/x.png", "y.png"]);
}

#[test]
fn a_part_never_holds_more_than_part_size_images() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    images(&input, 23);
    let out = tmp.path().join("cache");
    ok(embed(&input, &out, &["--part-size", "3", "--batch-size", "8"]).output().unwrap());
    let cache = EmbeddingCache::open(&out).unwrap();
    let sizes: Vec<usize> = cache.parts.iter().map(|p| p.rows).collect();
    assert_eq!(sizes, [3, 3, 3, 3, 3, 3, 3, 2], "{sizes:?}");
}

#[test]
fn temporaries_of_a_killed_run_are_removed_and_other_shards_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    images(&input, 5);
    let out = tmp.path().join("cache");
    std::fs::create_dir_all(failures_dir(&out)).unwrap();
    let ours = [
        out.join(".emb-s0000of0001-000007.parquet.AbCdEfGhIj.tmp"),
        failures_dir(&out).join(".failures-s0000of0001-000003.parquet.KlMnOpQrSt.tmp"),
    ];
    let theirs = out.join(".emb-s0001of0002-000000.parquet.UvWxYzAbCd.tmp");
    for p in ours.iter().chain([&theirs]) {
        std::fs::write(p, b"half a part").unwrap();
    }
    let out_cmd = embed(&input, &out, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out_cmd.stderr).into_owned();
    ok(out_cmd);
    assert!(stderr.contains("removed 2 unfinished temporary files of shard 0/1"), "{stderr}");
    assert!(ours.iter().all(|p| !p.exists()));
    assert!(theirs.exists(), "a temporary of another shard may belong to a live job");
}

#[test]
fn a_second_job_on_the_same_shard_stops_at_once_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    images(&input, 3);
    let out = tmp.path().join("cache");
    std::fs::create_dir_all(&out).unwrap();
    // another process writes shard 0/1 (as the extractor would: it holds the lock and says who it is)
    let lock = std::fs::File::create(out.join(".lock-s0000of0001")).unwrap();
    lock.try_lock().unwrap();
    std::fs::write(out.join(".lock-s0000of0001"), "pid 4242 on node17").unwrap();
    let start = Instant::now();
    let second = embed(&input, &out, &[]).output().unwrap();
    assert!(start.elapsed() < Duration::from_secs(30), "it waited for the lock");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("shard 0/1 is being written by another extractor (pid 4242 on node17)"),
        "{stderr}"
    );
    // another shard of the same cache is free
    ok(embed(&input, &out, &["--shard", "0/2"]).output().unwrap());
    drop(lock);
    ok(embed(&input, &out, &[]).output().unwrap());
}

#[test]
fn avif_and_heic_are_unsupported_formats() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(
        input.join("a.avif"),
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf\x00\x00\x00\x08meta",
    )
    .unwrap();
    std::fs::write(
        input.join("b.heic"),
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic\x00\x00\x00\x08meta",
    )
    .unwrap();
    png(&input.join("c.png"), 3);
    let out = tmp.path().join("cache");
    ok(embed(&input, &out, &[]).output().unwrap());
    let kinds: Vec<String> = read_cache_failures(&out).unwrap().iter().map(|f| f.kind.clone()).collect();
    assert_eq!(kinds, ["unsupported-format", "unsupported-format"]);
}

#[test]
fn colliding_non_utf8_names_keep_unique_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    std::fs::create_dir_all(&input).unwrap();
    for (i, name) in [&b"caf\xe9.png"[..], b"caf\xe8.png", "caf\u{FFFD}.png".as_bytes()].iter().enumerate() {
        png(&input.join(std::ffi::OsStr::from_bytes(name)), i as u32);
    }
    let out = tmp.path().join("cache");
    ok(embed(&input, &out, &[]).output().unwrap());
    let embedded = EmbeddingCache::open(&out).unwrap().read_ids().unwrap();
    let failed: Vec<String> = read_cache_failures(&out).unwrap().into_iter().map(|f| f.id).collect();
    assert_eq!(embedded, ["caf\u{FFFD}.png"]);
    assert_eq!(failed, ["caf\\xE8.png", "caf\\xE9.png"]);
}

#[test]
fn info_reports_a_cache_where_every_image_failed_and_survives_a_closed_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("images");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("empty.jpg"), b"").unwrap();
    std::fs::write(input.join("notes.txt"), b"not an image").unwrap();
    let out = tmp.path().join("cache");
    ok(embed(&input, &out, &[]).output().unwrap());
    let info = ok(extractor(&["info", out.to_str().unwrap()]).output().unwrap());
    assert!(info.contains("embeddings     0 rows in 0 parts"), "{info}");
    assert!(
        info.contains("failures       2") && info.contains("not-an-image") && info.contains("empty"),
        "{info}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(extractor(&["info", out.to_str().unwrap(), "--json"]).output().unwrap()))
            .unwrap();
    assert_eq!((json["rows"].as_u64(), json["failures"].as_u64()), (Some(0), Some(2)));

    // `extractor info CACHE | head -1`: the reader leaves after one line
    let mut child = extractor(&["info", out.to_str().unwrap()]).stdout(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // closed before anything is written
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(result.status.success() && !stderr.contains("panicked"), "{:?} {stderr}", result.status);
}
