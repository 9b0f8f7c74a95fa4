//! `extractor bench-decode`: the extractor's own decode ceiling — read, decode and preprocess
//! every image of an input exactly as `embed` does (same pipeline, same threads), with no
//! inference and nothing written.

use std::time::Instant;

use feature_cache::{Progress, Shard};
use image_input::{Catalog, InputOptions};
use serde::Serialize;

use crate::error::Result;
use crate::job::{pipeline, thread_count, window, Preparation, Prepared};

/// What a decode-only run measured.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeRate {
    /// Images prepared.
    pub images: usize,
    /// Images that failed.
    pub failed: usize,
    /// Threads used.
    pub threads: usize,
    /// Wall-clock seconds (listing the input excluded).
    pub seconds: f64,
    /// Images (prepared or failed) per second.
    pub images_per_s: f64,
    /// The same per thread.
    pub images_per_s_per_thread: f64,
}

/// Prepares every image of `input` `repeat` times; returns the rate.
pub fn bench_decode(
    input: &str,
    options: &InputOptions,
    prep: Preparation,
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
            &|i| prep.prepare(i),
            &mut |p: Prepared| {
                match p.result {
                    Ok(_) => images += 1,
                    Err(_) => failed += 1,
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
        seconds,
        images_per_s: rate,
        images_per_s_per_thread: rate / threads as f64,
    })
}
