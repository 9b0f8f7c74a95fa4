//! Both phases end to end: images the test draws -> extractor (real EfficientNet-Lite0 through
//! ONNX Runtime) -> Parquet cache -> head-trainer -> a head that beats chance on held-out images.

use std::path::Path;

use extractor::embed::Device;
use extractor::job::JobConfig;
use feature_cache::{EmbeddingCache, Silent};
use head_trainer::config::RunConfig;
use head_trainer::run::{predict, train_one, Inputs};
use image::{Rgb, RgbImage};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.next() % (hi - lo)
    }
}

/// Three visual topics: red disks, blue stripes, green checkerboards; some images mix two.
fn draw(kind: usize, rng: &mut Lcg) -> RgbImage {
    let (w, h) = (rng.range(120, 200), rng.range(120, 200));
    let mut img = RgbImage::from_pixel(w, h, Rgb([250, 250, 245]));
    let jitter = |rng: &mut Lcg, c: u8| c.saturating_add((rng.range(0, 40)) as u8).saturating_sub(20);
    match kind {
        0 => {
            for _ in 0..rng.range(1, 4) {
                let (cx, cy, r) = (rng.range(0, w) as i32, rng.range(0, h) as i32, rng.range(15, 50) as i32);
                let color = Rgb([jitter(rng, 220), jitter(rng, 30), jitter(rng, 30)]);
                for (x, y, p) in img.enumerate_pixels_mut() {
                    if (x as i32 - cx).pow(2) + (y as i32 - cy).pow(2) < r * r {
                        *p = color;
                    }
                }
            }
        }
        1 => {
            let period = rng.range(8, 24);
            let color = Rgb([jitter(rng, 30), jitter(rng, 60), jitter(rng, 220)]);
            for (_, y, p) in img.enumerate_pixels_mut() {
                if (y / period).is_multiple_of(2) {
                    *p = color;
                }
            }
        }
        _ => {
            let cell = rng.range(10, 30);
            let color = Rgb([jitter(rng, 30), jitter(rng, 180), jitter(rng, 40)]);
            for (x, y, p) in img.enumerate_pixels_mut() {
                if (x / cell + y / cell).is_multiple_of(2) {
                    *p = color;
                }
            }
        }
    }
    img
}

fn make_dataset(dir: &Path, n: usize) {
    let names = ["Disks", "Stripes", "Checkers"];
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut rng = Lcg(7);
    let mut csv = String::from("id,topic\n");
    for i in 0..n {
        let kind = i % 3;
        let id = format!("img{i:04}.{}", if i.is_multiple_of(2) { "png" } else { "jpg" });
        draw(kind, &mut rng).save(dir.join("images").join(&id)).unwrap();
        csv.push_str(&format!("{id},{}\n", names[kind]));
    }
    std::fs::write(dir.join("images").join("broken.jpg"), b"not really a jpeg").unwrap();
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
}

#[test]
fn extract_train_evaluate_predict() {
    let tmp = tempfile::tempdir().unwrap();
    make_dataset(tmp.path(), 240);
    let cache = tmp.path().join("cache");
    let images = tmp.path().join("images");
    let job = JobConfig {
        device: Device::Cpu,
        batch_size: 16,
        input_size: Some(128),
        part_size: 100,
        ..JobConfig::new(images.to_str().unwrap(), "efficientnet-lite0", &cache)
    };
    let summary = extractor::job::run(&job, &Silent).unwrap();
    assert_eq!((summary.embedded, summary.failed), (240, 1));
    let c = EmbeddingCache::open(&cache).unwrap();
    assert_eq!((c.rows(), c.meta.dim, c.meta.model.as_str()), (240, 1280, "efficientnet-lite0"));

    let inputs = Inputs::load(&cache, &tmp.path().join("labels.csv")).unwrap();
    let mut config = RunConfig::for_column("topic");
    config.train.epochs = 30;
    config.train.batch_size = 32;
    config.split.val = 0.2;
    config.split.test = 0.3;
    let run_dir = tmp.path().join("run");
    let outcome = train_one(&inputs, &config, &run_dir, &Default::default(), &Silent).unwrap();
    let test = &outcome.trained.test;
    assert!(test.images >= 40, "{} test images", test.images);
    let macro_auc = test.macro_.roc_auc.unwrap();
    let micro_f1 = test.micro.at_f1.f1;
    // chance: ROC AUC 0.5, micro F1 about 1/3 for three balanced topics
    assert!(macro_auc > 0.9, "macro ROC AUC {macro_auc}");
    assert!(micro_f1 > 0.75, "micro F1 {micro_f1}");
    for f in [
        "metrics.json",
        "report.md",
        "head.safetensors",
        "head.json",
        "predictions.parquet",
        "roc.png",
        "roc.svg",
        "pr.png",
        "pr.svg",
        "training.png",
        "training.svg",
        "labels.png",
        "labels.svg",
    ] {
        let len = std::fs::metadata(run_dir.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{f} missing or empty");
    }
    let n = predict(&run_dir, &cache, &tmp.path().join("all.parquet"), &Silent).unwrap();
    assert_eq!(n, 240);
}
