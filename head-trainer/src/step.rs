//! One training step of a [`HeadStack`], split across the threads of the rayon pool by hidden
//! units.
//!
//! Each *part* owns a contiguous block of the fused hidden units: its rows of W1ᵀ and of b1, the
//! rows of every second layer its units feed, the gradients and Adam moments of those, and (part
//! 0) the output biases. A step is three phases with a barrier after each of the first two:
//!
//! 1. each part computes its hidden activations and its share of every head's logits (part 0's
//!    share carries the output biases);
//! 2. each part adds up the shares in part order — so every part sees the same logits — and
//!    computes the loss and its gradient on its own rows of the batch;
//! 3. each part collects the whole loss gradient, back-propagates it into its own parameters and
//!    updates them with Adam.
//!
//! No part writes what another reads, so beyond handing over shares a step needs no locks,
//! the pool's threads are woken once per step rather than once per product, and each part's
//! Adam update runs on gradients it has just written. With the same number of parts a step gives
//! the same bits on every run.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, RwLock, TryLockError};

use crate::model::{gemm, Adam, AdamStep, HeadStack, Threads};

/// Hidden units below which a part is not worth a thread of its own.
const MIN_UNITS_PER_PART: usize = 32;

/// What one part owns.
#[derive(Debug, Clone)]
struct Part {
    /// Fused hidden units.
    units: Range<usize>,
    /// Heads its units belong to, with the head-local units (rows of that head's W2).
    heads: Vec<(usize, Range<usize>)>,
    /// Parameter ranges it owns, in this order: W1ᵀ rows, b1, the W2 rows of each of `heads`,
    /// then (part 0 only) the b2 of every head.
    segments: Vec<Range<usize>>,
}

/// A part's working memory, reused from step to step.
#[derive(Debug, Default)]
struct Scratch {
    /// B x units: activations after ReLU.
    hidden: Vec<f32>,
    /// B x units: loss gradient with respect to the activations.
    dhidden: Vec<f32>,
    /// Every head's logits, head-major (head k's B x M_k block at `logit_offsets[k]·B`).
    logits: Vec<f32>,
    /// Loss gradient with respect to `logits`, same layout.
    dlogits: Vec<f32>,
}

/// The parameters, gradients and moments one part owns during a step, per segment.
struct Owned<'a> {
    params: Vec<&'a mut [f32]>,
    grads: Vec<&'a mut [f32]>,
    m: Vec<&'a mut [f32]>,
    v: Vec<&'a mut [f32]>,
}

/// A training step for one [`HeadStack`] shape: the split of its hidden units into parts and
/// the parts' working memory.
#[derive(Debug)]
pub struct TrainStep {
    parts: Vec<Part>,
    scratch: Vec<Mutex<Scratch>>,
    /// Each part's share of the logits (head-major, like [`Scratch::logits`]).
    shares: Vec<RwLock<Vec<f32>>>,
    /// Each part's rows of the loss gradient (same layout; the other rows are stale).
    dlogit_rows: Vec<RwLock<Vec<f32>>>,
    logit_offsets: Vec<usize>,
    outputs_total: usize,
    /// Parameters of the stack it was made for.
    params_len: usize,
}

impl TrainStep {
    /// A step in as many parts as the current rayon pool has threads, each at least
    /// 32 hidden units.
    pub fn for_pool(stack: &HeadStack) -> Self {
        let parts = rayon::current_num_threads().min(stack.hidden_total / MIN_UNITS_PER_PART);
        Self::new(stack, parts)
    }

    /// A step in `parts` parts (at least 1, at most one per hidden unit). Parts run on separate
    /// threads when the pool has enough of them, one after the other otherwise; the result
    /// depends on the number of parts only.
    pub fn new(stack: &HeadStack, parts: usize) -> Self {
        let ht = stack.hidden_total;
        let n = parts.clamp(1, ht.max(1));
        let bound = |t: usize| {
            let u = ht * t / n;
            // whole SIMD rows where every part still gets some
            if t < n && ht >= 16 * n {
                u / 8 * 8
            } else {
                u
            }
        };
        let b1 = stack.b1_range();
        let parts: Vec<Part> = (0..n)
            .map(|t| {
                let units = bound(t)..bound(t + 1);
                let heads: Vec<(usize, Range<usize>)> = (0..stack.len())
                    .filter_map(|k| {
                        let (o, h) = (stack.offsets[k], stack.shapes[k].hidden);
                        let (lo, hi) = (units.start.max(o), units.end.min(o + h));
                        (lo < hi).then(|| (k, lo - o..hi - o))
                    })
                    .collect();
                let mut segments = vec![
                    units.start * stack.dim..units.end * stack.dim,
                    b1.start + units.start..b1.start + units.end,
                ];
                for (k, rows) in &heads {
                    let (w2, m) = (stack.w2_range(*k).start, stack.shapes[*k].outputs);
                    segments.push(w2 + rows.start * m..w2 + rows.end * m);
                }
                if t == 0 {
                    segments.extend((0..stack.len()).map(|k| stack.b2_range(k)));
                }
                Part { units, heads, segments }
            })
            .collect();
        debug_assert_eq!(
            parts.iter().flat_map(|p| &p.segments).map(|r| r.len()).sum::<usize>(),
            stack.params.len(),
            "the parts own every parameter once"
        );
        let mut logit_offsets = Vec::with_capacity(stack.len());
        let mut outputs_total = 0;
        for s in &stack.shapes {
            logit_offsets.push(outputs_total);
            outputs_total += s.outputs;
        }
        Self {
            scratch: (0..n).map(|_| Mutex::default()).collect(),
            shares: (0..n).map(|_| RwLock::default()).collect(),
            dlogit_rows: (0..n).map(|_| RwLock::default()).collect(),
            parts,
            logit_offsets,
            outputs_total,
            params_len: stack.params.len(),
        }
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// One step on the batch `x` (`b` rows of `stack.dim`): the gradient of every parameter into
    /// `grad` (one per parameter) and, with `adam`, the update. `loss(k, rows, logits, dlogits)` is
    /// head k's loss on a range of the batch's rows, given their logits (`rows.len() x M_k`,
    /// row-major): it writes dLoss/dlogits (normalised as the batch loss is) and returns those
    /// rows' part of the batch loss, or `None` when no row of the whole batch counts for that
    /// head (`dlogits` then stays zero). Returns each head's batch loss.
    pub fn run<L>(
        &self,
        stack: &mut HeadStack,
        x: &[f32],
        b: usize,
        loss: &L,
        grad: &mut [f32],
        adam: Option<&mut Adam>,
    ) -> Vec<Option<f64>>
    where
        L: Fn(usize, Range<usize>, &[f32], &mut [f32]) -> Option<f64> + Sync,
    {
        assert_eq!(stack.params.len(), self.params_len, "a TrainStep serves the stack shape it was made for");
        assert_eq!(grad.len(), stack.params.len(), "one gradient per parameter");
        assert!(x.len() >= b * stack.dim, "the batch holds b rows of the embedding dimension");
        let (update, mut m, mut v) = match adam {
            Some(adam) => {
                let update = adam.begin_step();
                let (m, v) = adam.moments_mut();
                (Some(update), split_segments(m, &self.parts), split_segments(v, &self.parts))
            }
            None => (
                None,
                self.parts.iter().map(|_| Vec::new()).collect(),
                self.parts.iter().map(|_| Vec::new()).collect(),
            ),
        };
        let HeadStack { dim, shapes, offsets, params, .. } = stack;
        let mut params = split_segments(params, &self.parts);
        let mut grads = split_segments(grad, &self.parts);
        let owned: Vec<Mutex<Owned>> = (0..self.parts.len())
            .map(|t| {
                Mutex::new(Owned {
                    params: std::mem::take(&mut params[t]),
                    grads: std::mem::take(&mut grads[t]),
                    m: std::mem::take(&mut m[t]),
                    v: std::mem::take(&mut v[t]),
                })
            })
            .collect();
        let ctx = Context { step: self, dim: *dim, shapes, offsets, x, b, update };
        let lock = |t: usize| owned[t].lock().unwrap_or_else(|e| e.into_inner());
        let scratch = |t: usize| self.scratch[t].lock().unwrap_or_else(|e| e.into_inner());

        let n = self.parts.len();
        let team = match TEAM.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if n == 1 || team.is_none() || rayon::current_num_threads() < n {
            // one thread: the phases one after the other
            for t in 0..n {
                ctx.phase1(t, &lock(t), &mut scratch(t));
            }
            let losses: Vec<_> = (0..n).map(|t| ctx.phase2(t, &mut scratch(t), loss)).collect();
            for t in 0..n {
                ctx.phase3(t, &mut lock(t), &mut scratch(t));
            }
            return sum_losses(losses);
        }
        let barriers = [Arrivals::new(n), Arrivals::new(n)];
        let results = rayon::broadcast(|bc| {
            let t = bc.index();
            if t >= n {
                return None;
            }
            let (mut own, mut sc) = (lock(t), scratch(t));
            // every part arrives at both barriers even after a panic, so none is left waiting
            let first = catch_unwind(AssertUnwindSafe(|| ctx.phase1(t, &own, &mut sc)));
            barriers[0].wait();
            let second = first.and_then(|()| catch_unwind(AssertUnwindSafe(|| ctx.phase2(t, &mut sc, loss))));
            barriers[1].wait();
            match second {
                Ok(losses) => {
                    ctx.phase3(t, &mut own, &mut sc);
                    Some(losses)
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        drop(team);
        sum_losses(results.into_iter().flatten().collect())
    }
}

/// At most one step runs its parts on the pool at a time: two steps broadcast at once could each
/// hold a thread the other's barrier waits for. A step that finds the team busy runs its parts
/// on its own thread.
static TEAM: Mutex<()> = Mutex::new(());

/// What the parts of one step share.
struct Context<'a> {
    step: &'a TrainStep,
    dim: usize,
    shapes: &'a [crate::model::HeadShape],
    offsets: &'a [usize],
    x: &'a [f32],
    b: usize,
    update: Option<AdamStep>,
}

impl Context<'_> {
    /// The rows of the batch whose loss part `t` computes.
    fn batch_rows(&self, t: usize) -> Range<usize> {
        let n = self.step.parts.len();
        self.b * t / n..self.b * (t + 1) / n
    }

    /// Hidden activations of part `t` and its share of the logits.
    fn phase1(&self, t: usize, own: &Owned, sc: &mut Scratch) {
        let part = &self.step.parts[t];
        let (b, d, w) = (self.b, self.dim, part.units.len());
        sc.hidden.resize(b * w, 0.0);
        for row in sc.hidden.chunks_exact_mut(w) {
            row.copy_from_slice(own.params[1]);
        }
        gemm(Threads::Caller, b, d, w, self.x, d, 1, own.params[0], 1, d, &mut sc.hidden, w, 1, 1.0);
        for h in &mut sc.hidden {
            *h = h.max(0.0);
        }
        let mut share = self.step.shares[t].write().unwrap_or_else(|e| e.into_inner());
        share.clear();
        share.resize(b * self.step.outputs_total, 0.0);
        if t == 0 {
            let b2 = &own.params[2 + part.heads.len()..];
            for (k, bias) in b2.iter().enumerate() {
                let q = self.step.logit_offsets[k] * b;
                for row in share[q..q + b * bias.len()].chunks_exact_mut(bias.len().max(1)) {
                    row.copy_from_slice(bias);
                }
            }
        }
        for (i, (k, rows)) in part.heads.iter().enumerate() {
            let m = self.shapes[*k].outputs;
            let q = self.step.logit_offsets[*k] * b;
            let col = self.offsets[*k] + rows.start - part.units.start;
            let out = &mut share[q..q + b * m];
            gemm(
                Threads::Caller,
                b,
                rows.len(),
                m,
                &sc.hidden[col..],
                w,
                1,
                own.params[2 + i],
                m,
                1,
                out,
                m,
                1,
                1.0,
            );
        }
    }

    /// The logits from every share and the loss gradient on part `t`'s rows of the batch.
    /// Returns those rows' part of each head's batch loss.
    fn phase2<L>(&self, t: usize, sc: &mut Scratch, loss: &L) -> Vec<Option<f64>>
    where
        L: Fn(usize, Range<usize>, &[f32], &mut [f32]) -> Option<f64> + Sync,
    {
        let b = self.b;
        let rows = self.batch_rows(t);
        sc.logits.clear();
        sc.logits.resize(b * self.step.outputs_total, 0.0);
        for share in &self.step.shares {
            let share = share.read().unwrap_or_else(|e| e.into_inner());
            for (z, s) in sc.logits.iter_mut().zip(share.iter()) {
                *z += s;
            }
        }
        let mut mine = self.step.dlogit_rows[t].write().unwrap_or_else(|e| e.into_inner());
        mine.clear();
        mine.resize(sc.logits.len(), 0.0);
        (0..self.shapes.len())
            .map(|k| {
                let m = self.shapes[k].outputs;
                let at = self.step.logit_offsets[k] * b;
                let span = at + rows.start * m..at + rows.end * m;
                loss(k, rows.clone(), &sc.logits[span.clone()], &mut mine[span])
            })
            .collect()
    }

    /// The whole loss gradient from every part's rows, part `t`'s parameter gradients and (with
    /// Adam) its update.
    fn phase3(&self, t: usize, own: &mut Owned, sc: &mut Scratch) {
        let part = &self.step.parts[t];
        let (b, d, w) = (self.b, self.dim, part.units.len());
        sc.dlogits.resize(sc.logits.len(), 0.0);
        for (s, theirs) in self.step.dlogit_rows.iter().enumerate() {
            let theirs = theirs.read().unwrap_or_else(|e| e.into_inner());
            let rows = self.batch_rows(s);
            for (k, shape) in self.shapes.iter().enumerate() {
                let at = self.step.logit_offsets[k] * b;
                let span = at + rows.start * shape.outputs..at + rows.end * shape.outputs;
                sc.dlogits[span.clone()].copy_from_slice(&theirs[span]);
            }
        }

        let Owned { params, grads, m: first_moments, v: second_moments } = own;
        sc.dhidden.clear();
        sc.dhidden.resize(b * w, 0.0);
        for (i, (k, rows)) in part.heads.iter().enumerate() {
            let m = self.shapes[*k].outputs;
            let q = self.step.logit_offsets[*k] * b;
            let dz = &sc.dlogits[q..q + b * m];
            let col = self.offsets[*k] + rows.start - part.units.start;
            // dW2 rows = H_rowsᵀ dZ_k
            gemm(
                Threads::Caller,
                rows.len(),
                b,
                m,
                &sc.hidden[col..],
                1,
                w,
                dz,
                m,
                1,
                grads[2 + i],
                m,
                1,
                0.0,
            );
            // dH_rows = dZ_k W2_rowsᵀ
            gemm(
                Threads::Caller,
                b,
                m,
                rows.len(),
                dz,
                m,
                1,
                params[2 + i],
                1,
                m,
                &mut sc.dhidden[col..],
                w,
                1,
                0.0,
            );
        }
        if t == 0 {
            let first_b2 = 2 + part.heads.len();
            for (k, db2) in grads[first_b2..].iter_mut().enumerate() {
                let q = self.step.logit_offsets[k] * b;
                column_sums(&sc.dlogits[q..q + b * db2.len()], db2);
            }
        }
        for (g, h) in sc.dhidden.iter_mut().zip(&sc.hidden) {
            if *h <= 0.0 {
                *g = 0.0;
            }
        }
        // dW1ᵀ rows = dAᵀ X
        gemm(Threads::Caller, w, b, d, &sc.dhidden, 1, w, self.x, d, 1, grads[0], d, 1, 0.0);
        column_sums(&sc.dhidden, grads[1]);
        if let Some(update) = &self.update {
            let moments = first_moments.iter_mut().zip(second_moments.iter_mut());
            for ((p, g), (m, v)) in params.iter_mut().zip(grads.iter()).zip(moments) {
                update.update(p, g, m, v);
            }
        }
    }
}

/// Each head's batch loss from the parts' shares of it (in part order).
fn sum_losses(parts: Vec<Vec<Option<f64>>>) -> Vec<Option<f64>> {
    let heads = parts.first().map_or(0, Vec::len);
    (0..heads)
        .map(|k| {
            parts.iter().fold(None, |sum, p| match (sum, p[k]) {
                (None, l) => l,
                (s, None) => s,
                (Some(a), Some(l)) => Some(a + l),
            })
        })
        .collect()
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

/// Splits `data` into each part's segments (which cover it without overlap).
fn split_segments<'a>(mut data: &'a mut [f32], parts: &[Part]) -> Vec<Vec<&'a mut [f32]>> {
    let mut order: Vec<(usize, usize, usize)> = parts
        .iter()
        .enumerate()
        .flat_map(|(t, p)| p.segments.iter().enumerate().map(move |(i, r)| (r.start, t, i)))
        .collect();
    order.sort_unstable();
    let mut out: Vec<Vec<Option<&'a mut [f32]>>> =
        parts.iter().map(|p| p.segments.iter().map(|_| None).collect()).collect();
    let mut at = 0;
    for (start, t, i) in order {
        let len = parts[t].segments[i].len();
        let rest = std::mem::take(&mut data);
        let (_, rest) = rest.split_at_mut(start - at);
        let (segment, rest) = rest.split_at_mut(len);
        out[t][i] = Some(segment);
        data = rest;
        at = start + len;
    }
    out.into_iter().map(|p| p.into_iter().map(|s| s.expect("every segment is split off")).collect()).collect()
}

/// A one-use barrier for the parts of a step: nobody leaves before all have arrived. Spins
/// (the parts run on otherwise idle pool threads), yielding after a while in case a thread was
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
