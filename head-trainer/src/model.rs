//! The topic head — Dense(H, ReLU) + Dense(M, sigmoid) — for one or many label configurations
//! at once.
//!
//! A [`HeadStack`] holds K heads over the same embeddings. Their first layers are stored as one
//! `(H_1 + … + H_K) x D` matrix (W1 transposed: one row per hidden unit), so one wide GEMM serves
//! every head on each batch, and a block of hidden units — what one thread of a training step
//! owns, see [`crate::step`] — is one contiguous block of rows. The second layers are separate
//! `H_k x M_k` matrices. A single `train` run is a stack of one. All parameters live in one flat
//! vector.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Loss of one head, on logits `z` with `p = sigmoid(z)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// Plain binary cross-entropy.
    Bce,
    /// BCE with positives of label j weighted n / (M · count_j) (the seed's balanced weights).
    ClassWeighted,
    /// BCE with positives of label j weighted neg_j / pos_j (the thesis' sample-weight loss).
    PosWeight,
    /// Focal loss with gamma = 2 (no alpha).
    Focal,
}

impl std::str::FromStr for LossKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bce" => Ok(Self::Bce),
            "class-weighted" => Ok(Self::ClassWeighted),
            "pos-weight" => Ok(Self::PosWeight),
            "focal" => Ok(Self::Focal),
            _ => Err(format!("`{s}` is not a loss (bce, class-weighted, pos-weight, focal)")),
        }
    }
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Bce => "bce",
            Self::ClassWeighted => "class-weighted",
            Self::PosWeight => "pos-weight",
            Self::Focal => "focal",
        })
    }
}

/// Focal loss exponent.
pub const FOCAL_GAMMA: f32 = 2.0;

/// Per-label loss weights of one head.
#[derive(Debug, Clone, PartialEq)]
pub struct LossWeights {
    /// The loss.
    pub kind: LossKind,
    /// Weight of positive targets, per label.
    pub pos: Vec<f32>,
}

impl LossWeights {
    /// Weights for `kind` from training counts: `n` training rows, `positives[j]` of label j.
    pub fn new(kind: LossKind, n: usize, positives: &[usize]) -> Self {
        let m = positives.len() as f32;
        let pos = positives
            .iter()
            .map(|&c| {
                let c = c.max(1) as f32;
                match kind {
                    LossKind::ClassWeighted => n as f32 / (m * c),
                    LossKind::PosWeight => (n as f32 - c).max(0.0) / c,
                    LossKind::Bce | LossKind::Focal => 1.0,
                }
            })
            .collect();
        Self { kind, pos }
    }

    /// Loss of one element and its derivative with respect to the logit.
    #[inline]
    pub fn loss_and_grad(&self, j: usize, z: f32, y: bool) -> (f32, f32) {
        // p, log p and log(1 - p) from one exp and one log1p, stably for any logit
        let e = (-z.abs()).exp();
        let l = e.ln_1p();
        let p = if z >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
        let log_p = -(l + (-z).max(0.0));
        let log_q = -(l + z.max(0.0));
        match self.kind {
            LossKind::Focal => {
                let g = FOCAL_GAMMA;
                if y {
                    let q = 1.0 - p;
                    (-q.powf(g) * log_p, g * p * q.powf(g) * log_p - q.powf(g + 1.0))
                } else {
                    (-p.powf(g) * log_q, -g * p.powf(g) * (1.0 - p) * log_q + p.powf(g + 1.0))
                }
            }
            _ => {
                if y {
                    let a = self.pos[j];
                    (-a * log_p, a * (p - 1.0))
                } else {
                    (-log_q, p)
                }
            }
        }
    }
}

/// Logistic function.
#[inline]
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Shape of one head in a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadShape {
    /// Hidden units.
    pub hidden: usize,
    /// Output labels.
    pub outputs: usize,
}

/// K heads over D-dimensional embeddings, parameters in one flat vector.
#[derive(Debug, Clone)]
pub struct HeadStack {
    /// Embedding dimension.
    pub dim: usize,
    /// Shapes of the heads.
    pub shapes: Vec<HeadShape>,
    /// Column offset of each head's block in the fused first layer.
    pub offsets: Vec<usize>,
    /// Total hidden units (width of the fused first layer).
    pub hidden_total: usize,
    /// All parameters: W1ᵀ (Htot x D), b1 (Htot), then per head W2_k (H_k x M_k), b2_k (M_k).
    pub params: Vec<f32>,
    w2_offsets: Vec<usize>,
}

impl HeadStack {
    /// Glorot-uniform weights and zero biases; head k is drawn from `Rng::new(seeds[k])` exactly
    /// as a stack of one with that seed would be, so fusing does not change a head's start.
    pub fn new(dim: usize, shapes: &[HeadShape], seeds: &[u64]) -> Self {
        assert_eq!(shapes.len(), seeds.len());
        let mut offsets = Vec::with_capacity(shapes.len());
        let mut hidden_total = 0;
        for s in shapes {
            offsets.push(hidden_total);
            hidden_total += s.hidden;
        }
        let mut w2_offsets = Vec::with_capacity(shapes.len());
        let mut len = dim * hidden_total + hidden_total;
        for s in shapes {
            w2_offsets.push(len);
            len += s.hidden * s.outputs + s.outputs;
        }
        let mut stack =
            Self { dim, shapes: shapes.to_vec(), offsets, hidden_total, params: vec![0.0; len], w2_offsets };
        for (k, (s, &seed)) in shapes.iter().zip(seeds).enumerate() {
            let mut rng = Rng::new(seed);
            let l1 = (6.0 / (dim + s.hidden) as f32).sqrt();
            // drawn in W1's row-major order (embedding dimension, then hidden unit)
            for r in 0..dim {
                for h in 0..s.hidden {
                    stack.params[(stack.offsets[k] + h) * dim + r] = rng.uniform(-l1, l1);
                }
            }
            let l2 = (6.0 / (s.hidden + s.outputs) as f32).sqrt();
            let w2 = stack.w2_offsets[k];
            for v in &mut stack.params[w2..w2 + s.hidden * s.outputs] {
                *v = rng.uniform(-l2, l2);
            }
        }
        stack
    }

    /// Number of heads.
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    /// Whether the stack has no heads.
    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// Range of the fused first-layer weights, W1ᵀ: `Htot x D`, row `h` the weights of hidden
    /// unit `h`.
    pub fn w1_range(&self) -> std::ops::Range<usize> {
        0..self.dim * self.hidden_total
    }

    /// Range of the fused first-layer biases.
    pub fn b1_range(&self) -> std::ops::Range<usize> {
        let s = self.dim * self.hidden_total;
        s..s + self.hidden_total
    }

    /// Range of head k's second-layer weights (H_k x M_k, row-major).
    pub fn w2_range(&self, k: usize) -> std::ops::Range<usize> {
        let s = self.w2_offsets[k];
        s..s + self.shapes[k].hidden * self.shapes[k].outputs
    }

    /// Range of head k's second-layer biases.
    pub fn b2_range(&self, k: usize) -> std::ops::Range<usize> {
        let s = self.w2_range(k).end;
        s..s + self.shapes[k].outputs
    }

    /// Head k as a standalone head (its block of the first layer and its second layer).
    pub fn head(&self, k: usize) -> Head {
        let s = self.shapes[k];
        let w1t = &self.params[self.offsets[k] * self.dim..(self.offsets[k] + s.hidden) * self.dim];
        let mut w1 = Vec::with_capacity(self.dim * s.hidden);
        for r in 0..self.dim {
            w1.extend((0..s.hidden).map(|h| w1t[h * self.dim + r]));
        }
        let b1 = self.b1_range().start + self.offsets[k];
        Head {
            dim: self.dim,
            shape: s,
            w1,
            b1: self.params[b1..b1 + s.hidden].to_vec(),
            w2: self.params[self.w2_range(k)].to_vec(),
            b2: self.params[self.b2_range(k)].to_vec(),
        }
    }

    /// Copies head k's parameters from `other` (a stack of the same shapes): how the best
    /// epoch of each head is kept.
    pub fn copy_head_from(&mut self, other: &HeadStack, k: usize) {
        let h = self.shapes[k].hidden;
        let w1t = self.offsets[k] * self.dim..(self.offsets[k] + h) * self.dim;
        self.params[w1t.clone()].copy_from_slice(&other.params[w1t]);
        let b1 = self.b1_range().start + self.offsets[k];
        self.params[b1..b1 + h].copy_from_slice(&other.params[b1..b1 + h]);
        let (w2, b2) = (self.w2_range(k), self.b2_range(k));
        self.params[w2.start..b2.end].copy_from_slice(&other.params[w2.start..b2.end]);
    }

    /// Logits of head `k` for a batch `x` (`b x D`) into `logits` (`b x M_k`), computing only
    /// that head's products — the same ones whatever other heads the stack holds. `hidden` is
    /// scratch.
    pub fn forward_head(&self, k: usize, x: &[f32], b: usize, hidden: &mut Vec<f32>, logits: &mut Vec<f32>) {
        let (d, s) = (self.dim, self.shapes[k]);
        let (h, m) = (s.hidden, s.outputs);
        hidden.resize(b * h, 0.0);
        let b1 = self.b1_range().start + self.offsets[k];
        for row in hidden.chunks_exact_mut(h.max(1)) {
            row.copy_from_slice(&self.params[b1..b1 + h]);
        }
        let w1t = &self.params[self.offsets[k] * d..(self.offsets[k] + h) * d];
        gemm(Threads::Pool, b, d, h, x, d, 1, w1t, 1, d, hidden, h, 1, 1.0);
        for v in hidden.iter_mut() {
            *v = v.max(0.0);
        }
        logits.resize(b * m, 0.0);
        let b2 = &self.params[self.b2_range(k)];
        for row in logits.chunks_exact_mut(m.max(1)) {
            row.copy_from_slice(b2);
        }
        gemm(Threads::Pool, b, h, m, hidden, h, 1, &self.params[self.w2_range(k)], m, 1, logits, m, 1, 1.0);
    }

    /// Logits of every head for a batch `x` (`b x D`): `logits[k]` is `b x M_k`.
    pub fn forward(&self, x: &[f32], b: usize, hidden: &mut Vec<f32>, logits: &mut [Vec<f32>]) {
        for (k, out) in logits.iter_mut().enumerate().take(self.len()) {
            self.forward_head(k, x, b, hidden, out);
        }
    }
}

/// One trained head, standalone (what `head.safetensors` holds).
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// Embedding dimension.
    pub dim: usize,
    /// Hidden units and outputs.
    pub shape: HeadShape,
    /// D x H, row-major.
    pub w1: Vec<f32>,
    /// H.
    pub b1: Vec<f32>,
    /// H x M, row-major.
    pub w2: Vec<f32>,
    /// M.
    pub b2: Vec<f32>,
}

impl Head {
    /// Probabilities for `n` rows of `x` (n x D), in row-major n x M.
    pub fn predict(&self, x: &[f32], n: usize) -> Vec<f32> {
        let (h, m) = (self.shape.hidden, self.shape.outputs);
        let mut hidden = vec![0.0; n * h];
        for row in hidden.chunks_exact_mut(h) {
            row.copy_from_slice(&self.b1);
        }
        gemm(Threads::Pool, n, self.dim, h, x, self.dim, 1, &self.w1, h, 1, &mut hidden, h, 1, 1.0);
        hidden.iter_mut().for_each(|v| *v = v.max(0.0));
        let mut out = vec![0.0; n * m];
        for row in out.chunks_exact_mut(m) {
            row.copy_from_slice(&self.b2);
        }
        gemm(Threads::Pool, n, h, m, &hidden, h, 1, &self.w2, m, 1, &mut out, m, 1, 1.0);
        out.iter_mut().for_each(|v| *v = sigmoid(*v));
        out
    }
}

/// Which classifier a run fits on the embeddings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Dense(H, ReLU) + Dense(M, sigmoid), trained with Adam (the seed's head).
    #[default]
    Mlp,
    /// One L2-regularised logistic regression per label (linfa, L-BFGS): the linear-probe
    /// baseline.
    Linear,
}

impl std::str::FromStr for ModelKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mlp" => Ok(Self::Mlp),
            "linear" => Ok(Self::Linear),
            _ => Err(format!("`{s}` is not a model (mlp, linear)")),
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Mlp => "mlp",
            Self::Linear => "linear",
        })
    }
}

/// A linear probe: `sigmoid(x·W + b)` per label.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearProbe {
    /// Embedding dimension.
    pub dim: usize,
    /// Output labels.
    pub outputs: usize,
    /// D x M, row-major.
    pub w: Vec<f32>,
    /// M.
    pub b: Vec<f32>,
}

impl LinearProbe {
    /// Probabilities for `n` rows of `x` (n x D), in row-major n x M.
    pub fn predict(&self, x: &[f32], n: usize) -> Vec<f32> {
        let m = self.outputs;
        let mut out = vec![0.0; n * m];
        for row in out.chunks_exact_mut(m) {
            row.copy_from_slice(&self.b);
        }
        gemm(Threads::Pool, n, self.dim, m, x, self.dim, 1, &self.w, m, 1, &mut out, m, 1, 1.0);
        out.iter_mut().for_each(|v| *v = sigmoid(*v));
        out
    }
}

/// A trained classifier of either kind: what a run directory holds and `predict` applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Classifier {
    /// The MLP head.
    Mlp(Head),
    /// The linear probe.
    Linear(LinearProbe),
}

impl Classifier {
    /// Probabilities for `n` rows of `x` (n x D), in row-major n x M.
    pub fn predict(&self, x: &[f32], n: usize) -> Vec<f32> {
        match self {
            Self::Mlp(h) => h.predict(x, n),
            Self::Linear(l) => l.predict(x, n),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> ModelKind {
        match self {
            Self::Mlp(_) => ModelKind::Mlp,
            Self::Linear(_) => ModelKind::Linear,
        }
    }

    /// Hidden units (0 for the linear probe) and outputs.
    pub fn shape(&self) -> HeadShape {
        match self {
            Self::Mlp(h) => h.shape,
            Self::Linear(l) => HeadShape { hidden: 0, outputs: l.outputs },
        }
    }

    /// Embedding dimension it takes.
    pub fn dim(&self) -> usize {
        match self {
            Self::Mlp(h) => h.dim,
            Self::Linear(l) => l.dim,
        }
    }
}

/// Where a [`gemm`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// On the calling thread only (what each thread of a training step uses).
    Caller,
    /// Split over the current rayon pool when the product is large enough.
    Pool,
}

/// `C = A·B + beta·C` on strided views (element (i, j) of A at `i·rsa + j·csa`), with the `gemm`
/// crate's kernels, on the calling thread or the current rayon pool.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    threads: Threads,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    rsa: usize,
    csa: usize,
    b: &[f32],
    rsb: usize,
    csb: usize,
    c: &mut [f32],
    rsc: usize,
    csc: usize,
    beta: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    if k > 0 {
        assert!(a.len() > last(m, k, rsa, csa), "gemm: A too small");
        assert!(b.len() > last(k, n, rsb, csb), "gemm: B too small");
    }
    assert!(c.len() > last(m, n, rsc, csc), "gemm: C too small");
    let parallelism = match threads {
        Threads::Caller => gemm::Parallelism::None,
        Threads::Pool => gemm::Parallelism::Rayon(0),
    };
    // SAFETY: the asserts above keep every index the kernel touches inside the slices, and C
    // does not alias A or B (it is a distinct &mut). The crate computes
    // dst = alpha·dst + beta·lhs·rhs and reads dst only when asked to.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            csc as isize,
            rsc as isize,
            beta != 0.0,
            a.as_ptr(),
            csa as isize,
            rsa as isize,
            b.as_ptr(),
            csb as isize,
            rsb as isize,
            beta,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Adam with Keras' defaults and TensorFlow's update rule:
/// `lr_t = lr·sqrt(1-β2^t)/(1-β1^t)`, `θ -= lr_t·m/(sqrt(v)+ε)`. Each head of a stack counts its
/// own steps `t`: a head trains on its own batches, and a step it sits out changes nothing of it.
#[derive(Debug, Clone)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// First-moment decay.
    pub beta1: f32,
    /// Second-moment decay.
    pub beta2: f32,
    /// Epsilon.
    pub eps: f32,
    m: Vec<f32>,
    v: Vec<f32>,
    steps: Vec<i32>,
}

impl Adam {
    /// Adam for `n` parameters of `heads` heads (lr given, β 0.9/0.999, ε 1e-7 unless changed).
    pub fn new(n: usize, lr: f32, heads: usize) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            m: vec![0.0; n],
            v: vec![0.0; n],
            steps: vec![0; heads],
        }
    }

    /// Starts head `k`'s next update: advances its step count and returns the coefficients, to
    /// be applied with [`AdamStep::update`] to each of its parameters and their moments (see
    /// [`Adam::moments_mut`]).
    pub fn begin_step(&mut self, k: usize) -> AdamStep {
        self.steps[k] += 1;
        let t = self.steps[k];
        let (b1, b2) = (self.beta1, self.beta2);
        let lr_t = self.lr * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
        AdamStep { beta1: b1, beta2: b2, lr_t, eps: self.eps }
    }

    /// Steps taken by head `k`.
    pub fn steps(&self, k: usize) -> i32 {
        self.steps[k]
    }

    /// The first and second moments, one per parameter, in the parameters' order.
    pub fn moments_mut(&mut self) -> (&mut [f32], &mut [f32]) {
        (&mut self.m, &mut self.v)
    }
}

/// The coefficients of one Adam update.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    beta1: f32,
    beta2: f32,
    lr_t: f32,
    eps: f32,
}

impl AdamStep {
    /// Updates parameters `p` from gradients `g` and their moments `m`, `v` (equal lengths);
    /// elementwise, so any split of the parameters gives the same bits.
    pub fn update(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        adam_update(p, g, m, v, [self.beta1, self.beta2, self.lr_t, self.eps])
    }
}

/// The Adam update of one chunk; on x86-64 with AVX2 the same code compiled 8 lanes wide (no
/// FMA contraction, so the result is bit-identical to the portable path).
fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: [f32; 4]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { adam_update_avx2(p, g, m, v, k) };
    }
    adam_update_portable(p, g, m, v, k)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn adam_update_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: [f32; 4]) {
    adam_update_portable(p, g, m, v, k)
}

#[inline(always)]
fn adam_update_portable(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: [f32; 4]) {
    let [b1, b2, lr_t, eps] = k;
    let n = p.len().min(g.len()).min(m.len()).min(v.len());
    let (p, g, m, v) = (&mut p[..n], &g[..n], &mut m[..n], &mut v[..n]);
    for i in 0..n {
        m[i] = b1 * m[i] + (1.0 - b1) * g[i];
        v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
        p[i] -= lr_t * m[i] / (v[i].sqrt() + eps);
    }
}
