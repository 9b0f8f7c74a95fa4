//! Finite-difference check of the analytic gradients of every loss, through a fused stack of
//! two heads of different shapes, with the training step split into 1, 2 and 3 parts; and the
//! split step run on threads against the same step run on one.

use head_trainer::model::{Adam, HeadShape, HeadStack, LossKind, LossWeights};
use head_trainer::rng::Rng;
use head_trainer::step::TrainStep;

fn total_loss(stack: &HeadStack, x: &[f32], b: usize, y: &[Vec<bool>], w: &[LossWeights]) -> f64 {
    let (mut hidden, mut logits) = (Vec::new(), vec![Vec::new(); stack.len()]);
    stack.forward(x, b, &mut hidden, &mut logits);
    let mut total = 0.0;
    for (k, s) in stack.shapes.iter().enumerate() {
        let m = s.outputs;
        let mut l = 0.0;
        for i in 0..b * m {
            l += f64::from(w[k].loss_and_grad(i % m, logits[k][i], y[k][i]).0);
        }
        total += l / (b * m) as f64;
    }
    total
}

/// The mean loss of head k on `rows` of the batch, as `TrainStep::run` wants it.
fn batch_loss<'a>(
    y: &'a [Vec<bool>],
    w: &'a [LossWeights],
    b: usize,
) -> impl Fn(usize, std::ops::Range<usize>, &[f32], &mut [f32]) -> Option<f64> + Sync + 'a {
    move |k, rows, z, dz| {
        let m = w[k].pos.len();
        let norm = 1.0 / (b * m) as f32;
        let mut loss = 0.0;
        for (i, (z, g)) in z.iter().zip(dz.iter_mut()).enumerate() {
            let at = rows.start * m + i;
            let (l, d) = w[k].loss_and_grad(at % m, *z, y[k][at]);
            loss += f64::from(l);
            *g = d * norm;
        }
        Some(loss * f64::from(norm))
    }
}

#[test]
fn analytic_gradients_match_finite_differences() {
    for kind in [LossKind::Bce, LossKind::ClassWeighted, LossKind::PosWeight, LossKind::Focal] {
        for parts in [1, 2, 3] {
            let (d, b) = (7, 5);
            let shapes = [HeadShape { hidden: 4, outputs: 3 }, HeadShape { hidden: 6, outputs: 2 }];
            let mut stack = HeadStack::new(d, &shapes, &[1, 2]);
            let mut rng = Rng::new(9);
            // non-zero biases so every ReLU branch is exercised away from its kink
            for p in &mut stack.params {
                *p += rng.uniform(-0.3, 0.3);
            }
            let x: Vec<f32> = (0..b * d).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let y: Vec<Vec<bool>> =
                shapes.iter().map(|s| (0..b * s.outputs).map(|_| rng.next_f64() < 0.4).collect()).collect();
            let w: Vec<LossWeights> = shapes
                .iter()
                .map(|s| LossWeights::new(kind, 20, &(0..s.outputs).map(|j| 3 + 2 * j).collect::<Vec<_>>()))
                .collect();

            let step = TrainStep::new(&stack, parts);
            assert_eq!(step.parts(), parts);
            let mut grad = vec![0.0; stack.params.len()];
            let before = stack.params.clone();
            let losses = step.run(&mut stack, &x, b, &batch_loss(&y, &w, b), &mut grad, None);
            assert_eq!(stack.params, before, "without Adam the step leaves the parameters alone");
            let expected: f64 = losses.iter().map(|l| l.expect("every head has rows")).sum();
            let reference = total_loss(&stack, &x, b, &y, &w);
            assert!(
                (expected - reference).abs() < 1e-5,
                "{kind}, {parts} parts: loss {expected} vs {reference}"
            );

            let eps = 1e-3f32;
            let mut worst = 0f64;
            for (i, &analytic) in grad.iter().enumerate() {
                let orig = stack.params[i];
                stack.params[i] = orig + eps;
                let up = total_loss(&stack, &x, b, &y, &w);
                stack.params[i] = orig - eps;
                let down = total_loss(&stack, &x, b, &y, &w);
                stack.params[i] = orig;
                let numeric = (up - down) / (2.0 * f64::from(eps));
                let analytic = f64::from(analytic);
                let err = (numeric - analytic).abs() / (numeric.abs() + analytic.abs()).max(1e-3);
                worst = worst.max(err);
            }
            assert!(worst < 2e-2, "{kind}, {parts} parts: worst relative gradient error {worst}");
        }
    }
}

/// Ten Adam steps of a stack split in `parts`, on a pool of `threads` threads.
fn train_ten_steps(parts: usize, threads: usize) -> Vec<f32> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
    train_ten_steps_on(parts, &pool)
}

/// Ten Adam steps of a stack split in `parts`, on `pool`.
fn train_ten_steps_on(parts: usize, pool: &rayon::ThreadPool) -> Vec<f32> {
    let (d, b) = (40, 16);
    let shapes = [HeadShape { hidden: 24, outputs: 3 }, HeadShape { hidden: 40, outputs: 5 }];
    let mut stack = HeadStack::new(d, &shapes, &[3, 4]);
    let mut rng = Rng::new(5);
    let x: Vec<f32> = (0..b * d).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let y: Vec<Vec<bool>> =
        shapes.iter().map(|s| (0..b * s.outputs).map(|_| rng.next_f64() < 0.3).collect()).collect();
    let w: Vec<LossWeights> =
        shapes.iter().map(|s| LossWeights::new(LossKind::ClassWeighted, 50, &vec![10; s.outputs])).collect();
    pool.install(|| {
        let step = TrainStep::new(&stack, parts);
        let mut grad = vec![0.0; stack.params.len()];
        let mut adam = Adam::new(stack.params.len(), 1e-2);
        for _ in 0..10 {
            step.run(&mut stack, &x, b, &batch_loss(&y, &w, b), &mut grad, Some(&mut adam));
        }
    });
    stack.params
}

#[test]
fn a_step_split_over_threads_gives_the_bits_of_the_same_split_on_one_thread() {
    let on_threads = train_ten_steps(2, 2);
    assert_eq!(on_threads, train_ten_steps(2, 1));
    // and any split trains the same model up to rounding
    let whole = train_ten_steps(1, 1);
    for (a, b) in whole.iter().zip(&on_threads) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
    }
    assert_ne!(
        whole,
        HeadStack::new(
            40,
            &[HeadShape { hidden: 24, outputs: 3 }, HeadShape { hidden: 40, outputs: 5 }],
            &[3, 4]
        )
        .params
    );
}

#[test]
fn concurrent_trainings_on_one_pool_neither_deadlock_nor_change_results() {
    // four trainings at once on one 2-thread pool: only one step at a time spreads its parts over
    // the pool's threads (two could each hold a thread the other's barrier waits for — a
    // timing-dependent hang this test would show as one, not as a failure); the others run their
    // parts in turn, which must give the same bits
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a thread pool");
    let expected = train_ten_steps(2, 1);
    std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4).map(|_| scope.spawn(|| train_ten_steps_on(2, &pool))).collect();
        for run in runs {
            assert_eq!(run.join().expect("a training thread"), expected);
        }
    });
}

#[test]
fn fused_heads_start_like_single_heads() {
    let shapes = [HeadShape { hidden: 3, outputs: 2 }, HeadShape { hidden: 5, outputs: 4 }];
    let fused = HeadStack::new(6, &shapes, &[11, 22]);
    let alone = HeadStack::new(6, &shapes[1..], &[22]);
    assert_eq!(fused.head(1), alone.head(0));
}
