//! A job killed with SIGKILL mid-run, then rerun, ends with exactly the ids of an uninterrupted
//! run: no duplicates, nothing lost.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use feature_cache::EmbeddingCache;

const IMAGES: usize = 400;

fn make_images(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..IMAGES {
        let img = image::RgbImage::from_fn(48, 40, |x, y| {
            image::Rgb([(x * 5 + i as u32) as u8, (y * 7 + i as u32 * 3) as u8, ((x ^ y) * 11) as u8])
        });
        img.save(dir.join(format!("img{i:04}.png"))).unwrap();
    }
    // failures are part of the resumable state too
    std::fs::write(dir.join("zz-empty.jpg"), b"").unwrap();
}

fn extractor(input: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_extractor"));
    cmd.args([
        "embed",
        input.to_str().unwrap(),
        "--model",
        "efficientnet-lite0",
        "--out",
        out.to_str().unwrap(),
    ])
    .args(["--input-size", "64", "--batch-size", "4", "--part-size", "8", "--threads", "1", "--quiet"])
    .args(["--device", "cpu", "--dtype", "f32"])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

fn parts(out: &Path) -> usize {
    std::fs::read_dir(out)
        .map(|d| d.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("emb-")).count())
        .unwrap_or(0)
}

#[test]
fn sigkill_then_rerun_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    make_images(&images);

    let reference = tmp.path().join("reference");
    let out = extractor(&images, &reference).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let killed = tmp.path().join("killed");
    let mut child = extractor(&images, &killed).spawn().unwrap();
    let start = Instant::now();
    while parts(&killed) < 3 {
        assert!(child.try_wait().unwrap().is_none(), "job finished before it could be killed");
        assert!(start.elapsed() < Duration::from_secs(300), "no parts written in 300 s");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructors, no cleanup
    child.wait().unwrap();
    let after_kill = EmbeddingCache::open(&killed).unwrap().rows();
    assert!(after_kill > 0 && after_kill < IMAGES, "killed mid-run ({after_kill} rows)");

    let out = extractor(&images, &killed).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{after_kill} already done")), "{stdout}");

    let a = EmbeddingCache::open(&reference).unwrap().read_all().unwrap();
    let b = EmbeddingCache::open(&killed).unwrap().read_all().unwrap(); // refuses duplicate ids
    let (mut ia, mut ib) = (a.ids.clone(), b.ids.clone());
    ia.sort();
    ib.sort();
    assert_eq!(ia, ib);
    assert_eq!(ia.len(), IMAGES);
    // same embeddings, whatever batch each image landed in
    for (i, id) in b.ids.iter().enumerate().step_by(37) {
        let j = a.ids.iter().position(|x| x == id).unwrap();
        let max = a.row(j).iter().zip(b.row(i)).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(max < 1e-4, "{id}: max abs diff {max}");
    }
    let failures = feature_cache::failures::read_cache_failures(&killed).unwrap();
    assert_eq!(failures.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["zz-empty.jpg"]);

    // a third run has nothing left to do
    let out = extractor(&images, &killed).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("embedded 0 images, 0 failed"));
}

#[test]
fn a_cache_of_another_model_configuration_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    image::RgbImage::from_pixel(40, 40, image::Rgb([200, 10, 10])).save(images.join("red.png")).unwrap();
    let out = tmp.path().join("cache");
    assert!(extractor(&images, &out).status().unwrap().success());
    let res = extractor(&images, &out).args(["--pooling", "flatten"]).output().unwrap();
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(
        err.contains("already holds embeddings with dim = 1280") && err.contains("another --out"),
        "{err}"
    );
}
