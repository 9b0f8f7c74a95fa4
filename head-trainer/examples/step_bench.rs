//! Times one training step at the head-trainer benchmark's shapes (batch 128, D 1280, one head
//! of 128 hidden units and 20 labels, or `--heads K` fused heads), without any data loading:
//!
//!     cargo run --release -p head-trainer --example step_bench [-- --heads 8]
//!
//! Set RAYON_NUM_THREADS to choose the threads.
use head_trainer::model::{Adam, HeadShape, HeadStack, LossKind, LossWeights};
use head_trainer::step::{Batch, TrainStep};
use std::time::Instant;

fn main() {
    let heads: usize = match std::env::args().skip_while(|a| a != "--heads").nth(1) {
        Some(k) => k.parse().expect("--heads takes a number"),
        None => 1,
    };
    let (b, d, h, m) = (128usize, 1280usize, 128usize, 20usize);
    let shapes = vec![HeadShape { hidden: h, outputs: m }; heads];
    let seeds: Vec<u64> = (1..=heads as u64).collect();
    let mut stack = HeadStack::new(d, &shapes, &seeds);
    let x: Vec<f32> = (0..b * d).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let weights =
        LossWeights::new(LossKind::ClassWeighted, 1000, &(1..=m).map(|j| 10 * j).collect::<Vec<_>>());
    let loss = |_k: usize, rows: std::ops::Range<usize>, z: &[f32], dz: &mut [f32], row_loss: &mut [f64]| {
        for (r, (z, g)) in z.chunks_exact(m).zip(dz.chunks_exact_mut(m)).enumerate() {
            let mut total = 0f64;
            for j in 0..m {
                let i = (rows.start + r) * m + j;
                let (l, dl) = weights.loss_and_grad(j, z[j], i.is_multiple_of(7));
                total += f64::from(l);
                g[j] = dl / (b * m) as f32;
            }
            row_loss[r] = total / (b * m) as f64;
        }
    };
    let mut grad = vec![0f32; stack.params.len()];
    let mut adam = Adam::new(stack.params.len(), 1e-3, heads);
    let batches = [Batch { x: &x, rows: b }];
    let plan = vec![Some(0); heads];
    let step = TrainStep::for_pool(&stack);
    let steps = 3000;
    // rounds of 200 steps; the median round (a shared VM's neighbours make single rounds noisy)
    let mut run = || {
        let mut rounds: Vec<f64> = (0..steps / 200)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..200 {
                    step.run(&mut stack, &batches, &plan, &loss, &mut grad, Some(&mut adam));
                }
                start.elapsed().as_secs_f64() / 200.0
            })
            .collect();
        rounds.sort_by(f64::total_cmp);
        (rounds[0], rounds[rounds.len() / 2])
    };
    // on a pool thread, as training runs
    let (fastest, per_step) = rayon::scope(|_| run());
    let flop = 4.0 * (b * d * h * heads) as f64;
    println!(
        "{heads} head(s), {} piece(s) each, {} threads: {:.1} us per step, fastest round {:.1} ({:.0} GFLOP/s in the first layer)",
        step.pieces(0),
        rayon::current_num_threads(),
        per_step * 1e6,
        fastest * 1e6,
        flop / per_step / 1e9
    );
}
