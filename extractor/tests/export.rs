//! The exported topic model (head + backbone) run through ONNX Runtime from Rust, on the
//! extractor's own network input, gives the probabilities of extractor + `head-trainer predict`.

use std::path::Path;

use extractor::embed::Device;
use extractor::job::{JobConfig, Preparation, DEFAULT_JPEG_DRAFT_MARGIN};
use extractor::model::ResizePolicy;
use feature_cache::Silent;
use head_trainer::config::RunConfig;
use head_trainer::predictions::read_predictions;
use head_trainer::run::{predict, train_one, Inputs};
use ort::session::Session;
use ort::value::TensorRef;

/// 60 images of three drawn topics (red disks, blue stripes, green checks), PNG, and labels.
fn dataset(dir: &Path) {
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let mut csv = String::from("id,topic\n");
    for i in 0..60u32 {
        let kind = i % 3;
        let img = image::RgbImage::from_fn(200 + i, 180 + 2 * i, |x, y| {
            let on = match kind {
                0 => (x as i32 - 90).pow(2) + (y as i32 - 80).pow(2) < (30 + i as i32).pow(2),
                1 => (y / (6 + i % 9)) % 2 == 0,
                _ => (x / (10 + i % 7) + y / (10 + i % 7)) % 2 == 0,
            };
            let c = [[220, 40, 30], [30, 60, 220], [40, 180, 50]][kind as usize];
            if on {
                image::Rgb(c)
            } else {
                image::Rgb([245, 245, 240])
            }
        });
        let id = format!("img{i:03}.png");
        img.save(dir.join("images").join(&id)).unwrap();
        csv.push_str(&format!("{id},{}\n", ["disks", "stripes", "checks"][kind as usize]));
    }
    std::fs::write(dir.join("labels.csv"), csv).unwrap();
}

#[test]
fn the_exported_model_equals_extraction_and_predict() {
    let tmp = tempfile::tempdir().unwrap();
    dataset(tmp.path());
    let cache = tmp.path().join("cache");
    let images = tmp.path().join("images");
    let job = JobConfig {
        device: Device::Cpu,
        batch_size: 16,
        ..JobConfig::new(images.to_str().unwrap(), "efficientnet-lite0", &cache)
    };
    extractor::job::run(&job, &Silent).unwrap();
    let inputs = Inputs::load(&cache, &tmp.path().join("labels.csv")).unwrap();
    let mut config = RunConfig::for_column("topic");
    config.train.epochs = 5;
    let run = tmp.path().join("run");
    train_one(&inputs, &config, &run, &Default::default(), &Silent).unwrap();
    predict(&run, &cache, &tmp.path().join("predict.parquet"), &Silent).unwrap();
    let expected = read_predictions(&tmp.path().join("predict.parquet")).unwrap();

    let onnx = tmp.path().join("topics.onnx");
    head_trainer::export::export(&run, Some("efficientnet-lite0"), &onnx).unwrap();
    let rt = extractor::runtime::init().unwrap();
    let mut session = Session::builder(&rt.env).unwrap().commit_from_file(&onnx).unwrap();
    // the extractor's network input for each image, as the job prepared it
    let prep = Preparation::new(
        ResizePolicy::CenterCrop { crop_fraction: 0.875 },
        224,
        image_input::decode::DEFAULT_MAX_PIXELS,
        DEFAULT_JPEG_DRAFT_MARGIN,
    );
    let mut pixels = Vec::new();
    for id in &expected.ids {
        let bytes = std::fs::read(tmp.path().join("images").join(id)).unwrap();
        pixels.extend(prep.network_input(&bytes, Some("png")).unwrap().0);
    }
    let n = expected.ids.len();
    let input = TensorRef::from_array_view(([n, 224, 224, 3], pixels.as_slice())).unwrap();
    let outputs = session.run(ort::inputs!["pixels" => input]).unwrap();
    let (shape, probs) = outputs["probabilities"].try_extract_tensor::<f32>().unwrap();
    assert_eq!(shape.as_ref(), [n as i64, 3]);
    let worst = probs.iter().zip(&expected.probs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-5, "exported model vs extractor + predict: max difference {worst}");
}
