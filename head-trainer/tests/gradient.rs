//! Finite-difference check of the analytic gradients of every loss, through a fused stack of
//! two heads of different shapes.

use head_trainer::model::{HeadShape, HeadStack, LossKind, LossWeights};
use head_trainer::rng::Rng;

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

#[test]
fn analytic_gradients_match_finite_differences() {
    for kind in [LossKind::Bce, LossKind::ClassWeighted, LossKind::PosWeight, LossKind::Focal] {
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

        let (mut hidden, mut logits) = (Vec::new(), vec![Vec::new(); 2]);
        stack.forward(&x, b, &mut hidden, &mut logits);
        let dlogits: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let m = s.outputs;
                (0..b * m)
                    .map(|i| w[k].loss_and_grad(i % m, logits[k][i], y[k][i]).1 / (b * m) as f32)
                    .collect()
            })
            .collect();
        let mut grad = vec![0.0; stack.params.len()];
        stack.backward(&x, b, &hidden, &dlogits, &mut Vec::new(), &mut grad);

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
        assert!(worst < 2e-2, "{kind}: worst relative gradient error {worst}");
    }
}

#[test]
fn fused_heads_start_like_single_heads() {
    let shapes = [HeadShape { hidden: 3, outputs: 2 }, HeadShape { hidden: 5, outputs: 4 }];
    let fused = HeadStack::new(6, &shapes, &[11, 22]);
    let alone = HeadStack::new(6, &shapes[1..], &[22]);
    assert_eq!(fused.head(1), alone.head(0));
}
