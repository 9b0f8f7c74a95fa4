//! Finite-difference check of the analytic gradients of every loss, through a fused stack of
//! two heads of different shapes on different batches, with the step split over 1, 2 and 3
//! threads (so heads are cut into 1, 2 and 3 pieces); and the split step run on threads against
//! the same step run on one.

use std::ops::Range;

use head_trainer::model::{Adam, HeadShape, HeadStack, LossKind, LossWeights};
use head_trainer::rng::Rng;
use head_trainer::step::{Batch, TrainStep};

/// Two batches (5 and 4 rows): head 0 trains on the first, head 1 on the second.
struct Data {
    d: usize,
    x: [Vec<f32>; 2],
    rows: [usize; 2],
    y: Vec<Vec<bool>>,
    w: Vec<LossWeights>,
}

impl Data {
    fn new(d: usize, shapes: &[HeadShape], kind: LossKind, rng: &mut Rng) -> Self {
        let rows = [5, 4];
        let x = rows.map(|b| (0..b * d).map(|_| rng.uniform(-1.0, 1.0)).collect::<Vec<f32>>());
        let y = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| (0..rows[k] * s.outputs).map(|_| rng.next_f64() < 0.4).collect())
            .collect();
        let w = shapes
            .iter()
            .map(|s| LossWeights::new(kind, 20, &(0..s.outputs).map(|j| 3 + 2 * j).collect::<Vec<_>>()))
            .collect();
        Self { d, x, rows, y, w }
    }

    fn batches(&self) -> Vec<Batch<'_>> {
        (0..2).map(|i| Batch { x: &self.x[i], rows: self.rows[i] }).collect()
    }

    /// The mean loss of head k on `rows` of its batch, as `TrainStep::run` wants it.
    fn loss(&self) -> impl Fn(usize, Range<usize>, &[f32], &mut [f32], &mut [f64]) + Sync + '_ {
        move |k, rows, z, dz, row_losses| {
            let (m, b) = (self.w[k].pos.len(), self.rows[k]);
            let norm = 1.0 / (b * m) as f32;
            for (i, row) in rows.enumerate() {
                let mut l = 0f64;
                for j in 0..m {
                    let (lj, d) = self.w[k].loss_and_grad(j, z[i * m + j], self.y[k][row * m + j]);
                    l += f64::from(lj);
                    dz[i * m + j] = d * norm;
                }
                row_losses[i] = l * f64::from(norm);
            }
        }
    }

    /// The sum of both heads' mean losses, computed directly from the forward pass.
    fn total_loss(&self, stack: &HeadStack) -> f64 {
        let (mut hidden, mut logits) = (Vec::new(), Vec::new());
        let mut total = 0.0;
        for (k, s) in stack.shapes.iter().enumerate() {
            stack.forward_head(k, &self.x[k], self.rows[k], &mut hidden, &mut logits);
            let m = s.outputs;
            let n = self.rows[k] * m;
            let l: f64 =
                (0..n).map(|i| f64::from(self.w[k].loss_and_grad(i % m, logits[i], self.y[k][i]).0)).sum();
            total += l / n as f64;
        }
        let _ = self.d;
        total
    }
}

/// W1 and b1 entries of hidden units whose pre-activation, for some row of their head's batch,
/// lies so close to the ReLU's kink that a finite difference of `eps` crosses it: there the
/// numeric derivative is not the derivative.
fn parameters_at_a_kink(stack: &HeadStack, data: &Data, eps: f32) -> std::collections::HashSet<usize> {
    let d = stack.dim;
    let mut out = std::collections::HashSet::new();
    for (k, s) in stack.shapes.iter().enumerate() {
        for h in 0..s.hidden {
            let unit = stack.offsets[k] + h;
            let w = &stack.params[unit * d..(unit + 1) * d];
            let b = stack.params[stack.b1_range().start + unit];
            let close = data.x[k].chunks_exact(d).any(|x| {
                let pre: f32 = b + x.iter().zip(w).map(|(a, b)| a * b).sum::<f32>();
                // one parameter moves at a time: a pre-activation by at most eps · max(1, |x_d|)
                let reach: f32 = eps * x.iter().fold(1f32, |m, v| m.max(v.abs()));
                pre.abs() < 2.0 * reach
            });
            if close {
                out.extend(unit * d..(unit + 1) * d);
                out.insert(stack.b1_range().start + unit);
            }
        }
    }
    out
}

const SHAPES: [HeadShape; 2] = [HeadShape { hidden: 64, outputs: 3 }, HeadShape { hidden: 96, outputs: 2 }];

#[test]
fn analytic_gradients_match_finite_differences() {
    for kind in [LossKind::Bce, LossKind::ClassWeighted, LossKind::PosWeight, LossKind::Focal] {
        for threads in [1, 2, 3] {
            let d = 7;
            let mut stack = HeadStack::new(d, &SHAPES, &[1, 2]);
            let mut rng = Rng::new(9);
            // non-zero biases so every ReLU branch is exercised away from its kink
            for p in &mut stack.params {
                *p += rng.uniform(-0.3, 0.3);
            }
            let data = Data::new(d, &SHAPES, kind, &mut rng);
            let step = TrainStep::new(&stack, threads);
            assert_eq!(
                step.pieces(1),
                threads.min(3),
                "96 units are cut in as many pieces as threads, up to 3"
            );
            let mut grad = vec![0.0; stack.params.len()];
            let before = stack.params.clone();
            let losses =
                step.run(&mut stack, &data.batches(), &[Some(0), Some(1)], &data.loss(), &mut grad, None);
            assert_eq!(stack.params, before, "without Adam the step leaves the parameters alone");
            let expected: f64 = losses.iter().map(|l| l.expect("every head has rows")).sum();
            let reference = data.total_loss(&stack);
            assert!(
                (expected - reference).abs() < 1e-5,
                "{kind}, {threads} threads: loss {expected} vs {reference}"
            );

            let eps = 1e-3f32;
            let near_kink = parameters_at_a_kink(&stack, &data, eps);
            assert!(near_kink.len() < stack.params.len() / 20, "most parameters are checked");
            let mut worst = 0f64;
            for (i, &analytic) in grad.iter().enumerate() {
                let orig = stack.params[i];
                stack.params[i] = orig + eps;
                let up = data.total_loss(&stack);
                stack.params[i] = orig - eps;
                let down = data.total_loss(&stack);
                stack.params[i] = orig;
                let numeric = (up - down) / (2.0 * f64::from(eps));
                let analytic = f64::from(analytic);
                // relative, with a floor: an f32 forward pass leaves ~1e-4 of noise in a central
                // difference at eps = 1e-3, which only large gradients dwarf
                let err = (numeric - analytic).abs() / (numeric.abs() + analytic.abs()).max(1e-2);
                if !near_kink.contains(&i) {
                    worst = worst.max(err);
                }
            }
            assert!(worst < 2e-2, "{kind}, {threads} threads: worst relative gradient error {worst}");
        }
    }
}

/// Ten Adam steps of the stack split over `threads`, on `pool`.
fn train_ten_steps_on(threads: usize, pool: &rayon::ThreadPool) -> Vec<f32> {
    let d = 40;
    let mut stack = HeadStack::new(d, &SHAPES, &[3, 4]);
    let data = Data::new(d, &SHAPES, LossKind::ClassWeighted, &mut Rng::new(5));
    pool.install(|| {
        let step = TrainStep::new(&stack, threads);
        let mut grad = vec![0.0; stack.params.len()];
        let mut adam = Adam::new(stack.params.len(), 1e-2, 2);
        for s in 0..10 {
            // head 1 sits every third step out: its Adam steps are its own
            let plan = [Some(0), (s % 3 != 2).then_some(1)];
            step.run(&mut stack, &data.batches(), &plan, &data.loss(), &mut grad, Some(&mut adam));
        }
        assert_eq!((adam.steps(0), adam.steps(1)), (10, 7));
    });
    stack.params
}

fn train_ten_steps(threads: usize, pool_threads: usize) -> Vec<f32> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(pool_threads).build().expect("a thread pool");
    train_ten_steps_on(threads, &pool)
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
    assert_ne!(whole, HeadStack::new(40, &SHAPES, &[3, 4]).params);
}

#[test]
fn concurrent_trainings_on_one_pool_neither_deadlock_nor_change_results() {
    // four trainings at once on one 2-thread pool: only one step at a time spreads its work over
    // the pool's threads (two could each hold a thread the other's barrier waits for — a
    // timing-dependent hang this test would show as one, not as a failure); the others run their
    // threads' work in turn, which must give the same bits
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
