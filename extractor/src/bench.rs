//! `extractor bench-decode`: the extractor's own decode ceiling — read, decode and preprocess
//! every image of an input exactly as `embed` does (same pipeline, same threads), with no
//! inference and nothing written; or only the first stages of that, to see what each costs.

use std::time::Instant;

use feature_cache::{Progress, Shard};
use image_input::{decode_bytes, Catalog, InputOptions};
use serde::Serialize;

use crate::error::Result;
use crate::job::{pipeline, thread_count, window, Preparation};

/// How far each image is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Its bytes read (the input's own rate).
    Read,
    /// Read and decoded (the decoders' rate).
    Decode,
    /// Read, decoded and made the network input, as `embed` does.
    Prepare,
}

/// What a decode-only run measured.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeRate {
    /// Images prepared.
    pub images: usize,
    /// Images that failed.
    pub failed: usize,
    /// Threads used.
    pub threads: usize,
    /// How far each image was taken.
    pub stage: Stage,
    /// Wall-clock seconds (listing the input excluded).
    pub seconds: f64,
    /// Images (prepared or failed) per second.
    pub images_per_s: f64,
    /// The same per thread.
    pub images_per_s_per_thread: f64,
}

/// Takes every image of `input` to `stage`, `repeat` times; returns the rate.
pub fn bench_decode(
    input: &str,
    options: &InputOptions,
    prep: Preparation,
    stage: Stage,
    threads: usize,
    repeat: usize,
    progress: &dyn Progress,
) -> Result<DecodeRate> {
    let catalog = Catalog::open(input, options, Shard::ALL, progress)?;
    let threads = thread_count(threads);
    let (mut images, mut failed) = (0, 0);
    progress.start("decoding", (catalog.entries.len() * repeat.max(1)) as u64, "images");
    let start = Instant::now();
    for _ in 0..repeat.max(1) {
        pipeline::prepare_in_order(
            &catalog,
            threads,
            window(64, threads),
            &|mut image| match stage {
                Stage::Read => image.take_bytes().is_ok(),
                Stage::Decode => image
                    .take_bytes()
                    .is_ok_and(|b| decode_bytes(&b, image.extension.as_deref(), &prep.decode).is_ok()),
                Stage::Prepare => prep.prepare(image).result.is_ok(),
            },
            &mut |ok: bool| {
                if ok {
                    images += 1;
                } else {
                    failed += 1;
                }
                progress.advance(1);
                Ok(())
            },
        )?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let rate = (images + failed) as f64 / seconds.max(1e-9);
    Ok(DecodeRate {
        images,
        failed,
        threads,
        stage,
        seconds,
        images_per_s: rate,
        images_per_s_per_thread: rate / threads as f64,
    })
}
