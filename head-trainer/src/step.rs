//! One training step of a [`HeadStack`], split across the threads of the rayon pool by *pieces*.
//!
//! A piece is a block of one head's hidden units: its rows of W1ᵀ and of b1, the rows of the
//! head's W2 its units feed, the gradients and Adam moments of those, and (the head's first
//! piece) the head's output biases. A head of H units is cut into `min(threads, H / 32)` pieces
//! (at least one) at fixed places. That cut depends on the head and the thread count alone —
//! never on the other heads of the stack — and so does every product a piece computes: a head
//! gets the same bits whether it trains alone or beside any other heads.
//!
//! Each head trains on the batch of its own row plan ([`Batch`]; heads whose plans are equal
//! share one), or sits a step out. A step is three phases with a barrier after each of the
//! first two:
//!
//! 1. each piece computes its hidden activations and its share of its head's logits;
//! 2. each thread adds up, for its rows of every head's batch, the shares in piece order and
//!    computes the loss, its gradient and each row's part of the batch loss;
//! 3. each piece collects its head's whole loss gradient, back-propagates it into its own
//!    parameters and updates them with Adam (with its head's step count).
//!
//! A head's batch loss is the sum of its rows' parts in row order, whatever the thread that
//! computed them. No piece writes what another reads, the pool's threads are woken once per step,
//! and with the same thread count a step gives the same bits on every run.

use std::collections::HashMap;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock, TryLockError};

use crate::model::{gemm, Adam, AdamStep, HeadShape, HeadStack, Threads};

/// Hidden units below which a piece is not worth a thread of its own.
const MIN_UNITS_PER_PIECE: usize = 32;

/// The batch of one row plan: `rows` embeddings of the stack's dimension, row-major.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// `rows x dim` values.
    pub x: &'a [f32],
    /// Rows.
    pub rows: usize,
}

/// Where head `k`'s cut into `pieces` pieces falls: the boundary before piece `t`.
fn cut(hidden: usize, pieces: usize, t: usize) -> usize {
    let u = hidden * t / pieces;
    // whole SIMD rows where every piece still gets some
    if t < pieces && hidden >= 16 * pieces {
        u / 8 * 8
    } else {
        u
    }
}

/// The number of pieces of a head of `hidden` units on `threads` threads.
pub fn pieces_of(hidden: usize, threads: usize) -> usize {
    threads.min(hidden / MIN_UNITS_PER_PIECE).clamp(1, hidden.max(1))
}

/// A block of one head's hidden units and what it owns.
#[derive(Debug, Clone)]
struct Piece {
    head: usize,
    /// Head-local units.
    units: Range<usize>,
    /// The head's first piece (it adds the output biases and owns them).
    first: bool,
    /// Parameter ranges it owns: W1ᵀ rows, b1, W2 rows, then (first piece) b2.
    segments: Vec<Range<usize>>,
}

/// A piece's working memory, reused from step to step.
#[derive(Debug, Default)]
struct PieceScratch {
    /// B x units: activations after ReLU.
    hidden: Vec<f32>,
    /// B x units: loss gradient with respect to the activations.
    dhidden: Vec<f32>,
}

/// The parameters, gradients and moments one piece owns during a step, per segment.
struct Owned<'a> {
    params: Vec<&'a mut [f32]>,
    grads: Vec<&'a mut [f32]>,
    m: Vec<&'a mut [f32]>,
    v: Vec<&'a mut [f32]>,
}

/// A thread's part of phase 2: for each head, its rows' loss gradient and loss parts.
#[derive(Debug, Default)]
struct RowsOut {
    /// Per head: dLoss/dlogits of this thread's rows (`rows x M_k`).
    dlogits: Vec<Vec<f32>>,
    /// Per head: each of this thread's rows' part of the batch loss.
    losses: Vec<Vec<f64>>,
}

/// A training step for one [`HeadStack`] shape and thread count.
#[derive(Debug)]
pub struct TrainStep {
    pieces: Vec<Piece>,
    /// The pieces each thread works on.
    threads: Vec<Vec<usize>>,
    /// Each head's pieces, in unit order.
    head_pieces: Vec<Vec<usize>>,
    scratch: Vec<Mutex<PieceScratch>>,
    /// Each piece's share of its head's logits (`B_k x M_k`).
    shares: Vec<RwLock<Vec<f32>>>,
    /// Each thread's output of phase 2.
    rows_out: Vec<RwLock<RowsOut>>,
    shapes: Vec<HeadShape>,
    /// Parameters of the stack it was made for.
    params_len: usize,
}

impl TrainStep {
    /// A step for the threads of the current rayon pool.
    pub fn for_pool(stack: &HeadStack) -> Self {
        Self::new(stack, rayon::current_num_threads())
    }

    /// A step over `threads` threads (at least 1). The threads run in parallel when the pool
    /// has them, one after the other otherwise; the result depends on `threads` only.
    pub fn new(stack: &HeadStack, threads: usize) -> Self {
        let threads = threads.max(1);
        let b1 = stack.b1_range();
        let mut pieces = Vec::new();
        let mut head_pieces = Vec::new();
        for (k, shape) in stack.shapes.iter().enumerate() {
            let n = pieces_of(shape.hidden, threads);
            let mut mine = Vec::with_capacity(n);
            for t in 0..n {
                let units = cut(shape.hidden, n, t)..cut(shape.hidden, n, t + 1);
                let fused = stack.offsets[k] + units.start..stack.offsets[k] + units.end;
                let (w2, m) = (stack.w2_range(k).start, shape.outputs);
                let mut segments = vec![
                    fused.start * stack.dim..fused.end * stack.dim,
                    b1.start + fused.start..b1.start + fused.end,
                    w2 + units.start * m..w2 + units.end * m,
                ];
                if t == 0 {
                    segments.push(stack.b2_range(k));
                }
                mine.push(pieces.len());
                pieces.push(Piece { head: k, units, first: t == 0, segments });
            }
            head_pieces.push(mine);
        }
        debug_assert_eq!(
            pieces.iter().flat_map(|p| &p.segments).map(|r| r.len()).sum::<usize>(),
            stack.params.len(),
            "the pieces own every parameter once"
        );
        // the largest pieces first, each to the least loaded thread (ties: the lowest)
        let mut order: Vec<usize> = (0..pieces.len()).collect();
        order.sort_by_key(|&p| (std::cmp::Reverse(pieces[p].units.len()), p));
        let mut load = vec![0usize; threads];
        let mut per_thread: Vec<Vec<usize>> = vec![Vec::new(); threads];
        for p in order {
            let t = (0..threads).min_by_key(|&t| (load[t], t)).expect("at least one thread");
            load[t] += pieces[p].units.len();
            per_thread[t].push(p);
        }
        for list in &mut per_thread {
            list.sort_unstable();
        }
        Self {
            scratch: (0..pieces.len()).map(|_| Mutex::default()).collect(),
            shares: (0..pieces.len()).map(|_| RwLock::default()).collect(),
            rows_out: (0..threads).map(|_| RwLock::default()).collect(),
            pieces,
            threads: per_thread,
            head_pieces,
            shapes: stack.shapes.clone(),
            params_len: stack.params.len(),
        }
    }

    /// Number of threads the step is split over.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// Number of pieces of head `k`.
    pub fn pieces(&self, k: usize) -> usize {
        self.head_pieces[k].len()
    }

    /// One step. Head `k` trains on `batches[plan_of[k]]`, or sits the step out when
    /// `plan_of[k]` is `None` (its parameters, moments and step count stay as they are). The
    /// gradient of every parameter of a training head goes into `grad` (one per parameter) and,
    /// with `adam`, the update follows. `loss(k, rows, logits, dlogits, row_losses)` is head k's
    /// loss on a range of its batch's rows, given their logits (`rows.len() x M_k`, row-major):
    /// it writes dLoss/dlogits and each row's part of the batch loss. Returns each head's batch
    /// loss (the sum of its rows' parts, in row order), `None` for heads that sat out.
    pub fn run<L>(
        &self,
        stack: &mut HeadStack,
        batches: &[Batch<'_>],
        plan_of: &[Option<usize>],
        loss: &L,
        grad: &mut [f32],
        adam: Option<&mut Adam>,
    ) -> Vec<Option<f64>>
    where
        L: Fn(usize, Range<usize>, &[f32], &mut [f32], &mut [f64]) + Sync,
    {
        assert_eq!(stack.params.len(), self.params_len, "a TrainStep serves the stack shape it was made for");
        assert_eq!(grad.len(), stack.params.len(), "one gradient per parameter");
        assert_eq!(plan_of.len(), stack.len(), "a plan (or none) per head");
        for b in batches {
            assert!(b.x.len() >= b.rows * stack.dim, "a batch holds its rows of the embedding dimension");
        }
        let active: Vec<Option<Batch<'_>>> = plan_of.iter().map(|p| p.map(|i| batches[i])).collect();
        let (updates, mut m, mut v) = match adam {
            Some(adam) => {
                let updates: Vec<Option<AdamStep>> =
                    (0..stack.len()).map(|k| active[k].map(|_| adam.begin_step(k))).collect();
                let (m, v) = adam.moments_mut();
                (updates, split_segments(m, &self.pieces), split_segments(v, &self.pieces))
            }
            None => (
                vec![None; stack.len()],
                self.pieces.iter().map(|_| Vec::new()).collect(),
                self.pieces.iter().map(|_| Vec::new()).collect(),
            ),
        };
        let HeadStack { dim, params, .. } = stack;
        let mut params = split_segments(params, &self.pieces);
        let mut grads = split_segments(grad, &self.pieces);
        let owned: Vec<Mutex<Owned>> = (0..self.pieces.len())
            .map(|p| {
                Mutex::new(Owned {
                    params: std::mem::take(&mut params[p]),
                    grads: std::mem::take(&mut grads[p]),
                    m: std::mem::take(&mut m[p]),
                    v: std::mem::take(&mut v[p]),
                })
            })
            .collect();
        let ctx = Context { step: self, dim: *dim, active: &active, updates: &updates };

        let n = self.threads.len();
        let team = match TEAM.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if n == 1 || team.is_none() || rayon::current_num_threads() < n {
            // one thread: the phases one after the other
            for t in 0..n {
                ctx.phase1(t, &owned);
            }
            for t in 0..n {
                ctx.phase2(t, loss);
            }
            for t in 0..n {
                ctx.phase3(t, &owned);
            }
        } else {
            let barriers = [Arrivals::new(n), Arrivals::new(n)];
            rayon::broadcast(|bc| {
                let t = bc.index();
                if t >= n {
                    return;
                }
                // every thread arrives at both barriers even after a panic, so none is left waiting
                let first = catch_unwind(AssertUnwindSafe(|| ctx.phase1(t, &owned)));
                barriers[0].wait();
                let second = first.and_then(|()| catch_unwind(AssertUnwindSafe(|| ctx.phase2(t, loss))));
                barriers[1].wait();
                match second {
                    Ok(()) => ctx.phase3(t, &owned),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            });
        }
        drop(team);
        ctx.batch_losses()
    }
}

/// At most one step runs its threads on the pool at a time: two steps broadcast at once could
/// each hold a thread the other's barrier waits for. A step that finds the team busy runs its
/// threads' work on its own thread.
static TEAM: Mutex<()> = Mutex::new(());

/// What the threads of one step share.
struct Context<'a> {
    step: &'a TrainStep,
    dim: usize,
    /// Each head's batch this step, or none.
    active: &'a [Option<Batch<'a>>],
    /// Each training head's Adam coefficients (with Adam).
    updates: &'a [Option<AdamStep>],
}

impl Context<'_> {
    /// The rows of head `k`'s batch whose loss thread `t` computes.
    fn rows(&self, k: usize, t: usize) -> Range<usize> {
        let b = self.active[k].map_or(0, |a| a.rows);
        let n = self.step.threads.len();
        b * t / n..b * (t + 1) / n
    }

    /// Hidden activations of thread `t`'s pieces and their shares of the logits.
    fn phase1(&self, t: usize, owned: &[Mutex<Owned<'_>>]) {
        for &p in &self.step.threads[t] {
            let piece = &self.step.pieces[p];
            let Some(batch) = self.active[piece.head] else { continue };
            let own = owned[p].lock().unwrap_or_else(|e| e.into_inner());
            let mut sc = self.step.scratch[p].lock().unwrap_or_else(|e| e.into_inner());
            let (b, d, w) = (batch.rows, self.dim, piece.units.len());
            let m = self.step.shapes[piece.head].outputs;
            sc.hidden.resize(b * w, 0.0);
            for row in sc.hidden.chunks_exact_mut(w.max(1)) {
                row.copy_from_slice(own.params[1]);
            }
            gemm(Threads::Caller, b, d, w, batch.x, d, 1, own.params[0], 1, d, &mut sc.hidden, w, 1, 1.0);
            for h in &mut sc.hidden {
                *h = h.max(0.0);
            }
            let mut share = self.step.shares[p].write().unwrap_or_else(|e| e.into_inner());
            share.clear();
            share.resize(b * m, 0.0);
            if piece.first {
                for row in share.chunks_exact_mut(m.max(1)) {
                    row.copy_from_slice(own.params[3]);
                }
            }
            gemm(Threads::Caller, b, w, m, &sc.hidden, w, 1, own.params[2], m, 1, &mut share, m, 1, 1.0);
        }
    }

    /// The logits of thread `t`'s rows of every head, from the shares in piece order, and the
    /// loss on them.
    fn phase2<L>(&self, t: usize, loss: &L)
    where
        L: Fn(usize, Range<usize>, &[f32], &mut [f32], &mut [f64]) + Sync,
    {
        let heads = self.step.shapes.len();
        let mut out = self.step.rows_out[t].write().unwrap_or_else(|e| e.into_inner());
        out.dlogits.resize_with(heads, Vec::new);
        out.losses.resize_with(heads, Vec::new);
        let mut z = Vec::new();
        for k in 0..heads {
            let rows = self.rows(k, t);
            let m = self.step.shapes[k].outputs;
            out.dlogits[k].clear();
            out.losses[k].clear();
            if self.active[k].is_none() || rows.is_empty() {
                continue;
            }
            let span = rows.start * m..rows.end * m;
            z.clear();
            z.resize(span.len(), 0.0);
            for &p in &self.step.head_pieces[k] {
                let share = self.step.shares[p].read().unwrap_or_else(|e| e.into_inner());
                for (zi, s) in z.iter_mut().zip(&share[span.clone()]) {
                    *zi += s;
                }
            }
            out.dlogits[k].resize(span.len(), 0.0);
            out.losses[k].resize(rows.len(), 0.0);
            let RowsOut { dlogits, losses } = &mut *out;
            loss(k, rows, &z, &mut dlogits[k], &mut losses[k]);
        }
    }

    /// Thread `t`'s pieces: their head's whole loss gradient, the gradients of their parameters
    /// and (with Adam) the update.
    fn phase3(&self, t: usize, owned: &[Mutex<Owned<'_>>]) {
        let n = self.step.threads.len();
        let mut assembled: HashMap<usize, Vec<f32>> = HashMap::new();
        for &p in &self.step.threads[t] {
            let piece = &self.step.pieces[p];
            let k = piece.head;
            let Some(batch) = self.active[k] else { continue };
            let (b, d, w) = (batch.rows, self.dim, piece.units.len());
            let m = self.step.shapes[k].outputs;
            let dz = assembled.entry(k).or_insert_with(|| {
                let mut dz = Vec::with_capacity(b * m);
                for s in 0..n {
                    let theirs = self.step.rows_out[s].read().unwrap_or_else(|e| e.into_inner());
                    dz.extend_from_slice(&theirs.dlogits[k]);
                }
                dz
            });
            let mut own = owned[p].lock().unwrap_or_else(|e| e.into_inner());
            let mut sc = self.step.scratch[p].lock().unwrap_or_else(|e| e.into_inner());
            let PieceScratch { hidden, dhidden } = &mut *sc;
            let Owned { params, grads, m: first_moments, v: second_moments } = &mut *own;
            // dW2 rows = Hᵀ dZ
            gemm(Threads::Caller, w, b, m, hidden, 1, w, dz, m, 1, grads[2], m, 1, 0.0);
            // dH = dZ W2_rowsᵀ
            dhidden.clear();
            dhidden.resize(b * w, 0.0);
            gemm(Threads::Caller, b, m, w, dz, m, 1, params[2], 1, m, dhidden, w, 1, 0.0);
            if piece.first {
                column_sums(dz, grads[3]);
            }
            for (g, h) in dhidden.iter_mut().zip(hidden.iter()) {
                if *h <= 0.0 {
                    *g = 0.0;
                }
            }
            // dW1ᵀ rows = dHᵀ X
            gemm(Threads::Caller, w, b, d, dhidden, 1, w, batch.x, d, 1, grads[0], d, 1, 0.0);
            column_sums(dhidden, grads[1]);
            if let Some(update) = &self.updates[k] {
                let moments = first_moments.iter_mut().zip(second_moments.iter_mut());
                for ((p, g), (m, v)) in params.iter_mut().zip(grads.iter()).zip(moments) {
                    update.update(p, g, m, v);
                }
            }
        }
    }

    /// Each head's batch loss: its rows' parts, summed in row order.
    fn batch_losses(&self) -> Vec<Option<f64>> {
        (0..self.step.shapes.len())
            .map(|k| {
                self.active[k]?;
                let mut total = 0f64;
                for out in &self.step.rows_out {
                    let out = out.read().unwrap_or_else(|e| e.into_inner());
                    total = out.losses.get(k).into_iter().flatten().fold(total, |a, l| a + l);
                }
                Some(total)
            })
            .collect()
    }
}

/// `out[j] = Σ_i rows[i][j]` over the rows of width `out.len()`.
fn column_sums(rows: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    if out.is_empty() {
        return;
    }
    for row in rows.chunks_exact(out.len()) {
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// Splits `data` into each piece's segments (which cover it without overlap).
fn split_segments<'a>(mut data: &'a mut [f32], pieces: &[Piece]) -> Vec<Vec<&'a mut [f32]>> {
    let mut order: Vec<(usize, usize, usize)> = pieces
        .iter()
        .enumerate()
        .flat_map(|(t, p)| p.segments.iter().enumerate().map(move |(i, r)| (r.start, t, i)))
        .collect();
    order.sort_unstable();
    let mut out: Vec<Vec<Option<&'a mut [f32]>>> =
        pieces.iter().map(|p| p.segments.iter().map(|_| None).collect()).collect();
    let mut at = 0;
    for (start, t, i) in order {
        let len = pieces[t].segments[i].len();
        let rest = std::mem::take(&mut data);
        let (_, rest) = rest.split_at_mut(start - at);
        let (segment, rest) = rest.split_at_mut(len);
        out[t][i] = Some(segment);
        data = rest;
        at = start + len;
    }
    out.into_iter().map(|p| p.into_iter().map(|s| s.expect("every segment is split off")).collect()).collect()
}

/// A one-use barrier for the threads of a step: nobody leaves before all have arrived. Spins
/// (the threads are otherwise idle pool threads), yielding after a while in case one was
/// descheduled.
struct Arrivals {
    n: usize,
    arrived: AtomicUsize,
}

impl Arrivals {
    fn new(n: usize) -> Self {
        Self { n, arrived: AtomicUsize::new(0) }
    }

    fn wait(&self) {
        self.arrived.fetch_add(1, Ordering::AcqRel);
        let mut spins = 0u32;
        while self.arrived.load(Ordering::Acquire) < self.n {
            if spins < 4096 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LossKind, LossWeights};
    use crate::rng::Rng;

    #[test]
    fn a_head_is_cut_by_its_own_size_and_the_thread_count_only() {
        let d = 16;
        let alone = HeadStack::new(d, &[HeadShape { hidden: 128, outputs: 4 }], &[1]);
        let stack = HeadStack::new(
            d,
            &[
                HeadShape { hidden: 40, outputs: 2 },
                HeadShape { hidden: 128, outputs: 4 },
                HeadShape { hidden: 8, outputs: 1 },
            ],
            &[9, 1, 3],
        );
        for threads in [1, 2, 3, 7] {
            let a = TrainStep::new(&alone, threads);
            let s = TrainStep::new(&stack, threads);
            let cuts = |step: &TrainStep, k: usize| -> Vec<Range<usize>> {
                step.head_pieces[k].iter().map(|&p| step.pieces[p].units.clone()).collect()
            };
            assert_eq!(cuts(&a, 0), cuts(&s, 1), "{threads} threads");
            assert_eq!(s.pieces(2), 1, "8 units are one piece");
        }
        assert_eq!(pieces_of(128, 2), 2);
        assert_eq!(pieces_of(32, 8), 1);
        assert_eq!(pieces_of(0, 4), 1);
    }

    /// Ten Adam steps of head `shape` on its batches, alone or inside a stack.
    fn train(shapes: &[HeadShape], seeds: &[u64], threads: usize, watch: usize) -> Vec<f32> {
        let d = 24;
        let mut stack = HeadStack::new(d, shapes, seeds);
        let mut rng = Rng::new(5);
        // two row plans: head `watch` on plan 0, the others on plan 1 (every other step)
        let batches: Vec<Vec<f32>> =
            [9usize, 5].iter().map(|&b| (0..b * d).map(|_| rng.uniform(-1.0, 1.0)).collect()).collect();
        let rows = [9, 5];
        let w: Vec<LossWeights> = shapes
            .iter()
            .map(|s| LossWeights::new(LossKind::ClassWeighted, 40, &vec![7; s.outputs]))
            .collect();
        let loss = |k: usize, r: Range<usize>, z: &[f32], dz: &mut [f32], row_losses: &mut [f64]| {
            let m = w[k].pos.len();
            for (i, row) in r.clone().enumerate() {
                let mut l = 0f64;
                for j in 0..m {
                    let (li, gi) = w[k].loss_and_grad(j, z[i * m + j], (row + j) % 3 == 0);
                    l += f64::from(li);
                    dz[i * m + j] = gi / 9.0;
                }
                row_losses[i] = l / 9.0;
            }
        };
        let step = TrainStep::new(&stack, threads);
        let mut grad = vec![0.0; stack.params.len()];
        let mut adam = Adam::new(stack.params.len(), 1e-2, stack.len());
        for s in 0..10 {
            let batches: Vec<Batch> = batches.iter().zip(rows).map(|(x, rows)| Batch { x, rows }).collect();
            let plan: Vec<Option<usize>> = (0..stack.len())
                .map(|k| {
                    if k == watch {
                        Some(0)
                    } else if s % 2 == 0 {
                        Some(1)
                    } else {
                        None
                    }
                })
                .collect();
            step.run(&mut stack, &batches, &plan, &loss, &mut grad, Some(&mut adam));
        }
        let h = stack.head(watch);
        [h.w1, h.b1, h.w2, h.b2].concat()
    }

    #[test]
    fn a_head_trains_to_the_same_bits_alone_and_beside_others() {
        let watched = HeadShape { hidden: 64, outputs: 3 };
        for threads in [1, 2, 3] {
            let alone = train(&[watched], &[4], threads, 0);
            let others =
                [HeadShape { hidden: 96, outputs: 5 }, watched, HeadShape { hidden: 16, outputs: 2 }];
            let fused = train(&others, &[8, 4, 2], threads, 1);
            assert_eq!(alone, fused, "{threads} threads");
        }
    }
}
