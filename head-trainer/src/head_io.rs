//! A trained head on disk: `head.safetensors` (the weights) and `head.json` (what applying it
//! needs besides them). `predict`, `export` and the extractor's `--head` read heads through here.
//!
//! `head.safetensors`, float32, row-major: the MLP as `w1` (D x H), `b1` (H), `w2` (H x M),
//! `b2` (M); the linear probe as `w` (D x M), `b` (M).

use std::path::{Path, PathBuf};

use feature_cache::atomic::write_atomic;
use feature_cache::CacheMetadata;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::evaluate::Thresholds;
use crate::model::{Classifier, Head, HeadShape, LinearProbe, ModelKind};

/// File names in a run directory.
pub const HEAD_WEIGHTS: &str = "head.safetensors";
/// The head's description.
pub const HEAD_INFO: &str = "head.json";

/// The inputs a run was trained on, as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInputs {
    /// The embedding cache.
    pub embeddings: PathBuf,
    /// The label table.
    pub labels: PathBuf,
}

/// `head.json`: what applying a head needs besides its weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadInfo {
    /// Run name.
    pub name: String,
    /// Label names in output order.
    pub labels: Vec<String>,
    /// Thresholds tuned on validation.
    pub thresholds: Thresholds,
    /// The run's configuration.
    pub config: RunConfig,
    /// Identity of the embeddings it was trained on.
    pub embedding: CacheMetadata,
    /// Classifier kind (`mlp` for heads written before the linear probe existed).
    #[serde(default)]
    pub model: ModelKind,
    /// Shape (hidden 0 for the linear probe).
    pub shape: HeadShape,
    /// Best epoch (0 for the linear probe).
    pub best_epoch: usize,
    /// The inputs it was trained on (absent in heads written before they were recorded).
    #[serde(default)]
    pub inputs: Option<RunInputs>,
    /// Version of the tool that trained it.
    pub tool_version: String,
}

impl HeadInfo {
    /// Reads `head.json` of a run directory.
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(HEAD_INFO);
        let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| TrainError::Mismatch(format!("{}: {e}", path.display())))
    }

    /// An error unless `cache` holds embeddings of the model this head was trained on.
    pub fn check_embeddings(&self, cache: &CacheMetadata, what: &Path) -> Result<()> {
        match self.embedding.mismatch(cache) {
            None => Ok(()),
            Some((field, have, want)) => Err(TrainError::Mismatch(format!(
                "{}: embeddings have {field} = {want}, but head `{}` was trained on {field} = {have} ({}); \
                 extract them with the head's model",
                what.display(),
                self.name,
                self.embedding.model_identity()
            ))),
        }
    }
}

/// A head read from a run directory: its description and weights.
#[derive(Debug, Clone)]
pub struct TrainedRun {
    /// `head.json`.
    pub info: HeadInfo,
    /// The weights.
    pub head: Classifier,
}

impl TrainedRun {
    /// Reads the head of the run directory `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let info = HeadInfo::load(dir)?;
        let head = load_head(&dir.join(HEAD_WEIGHTS), info.model)?;
        if head.shape().outputs != info.labels.len() {
            return Err(TrainError::Mismatch(format!(
                "{}: {} outputs for {} labels in {HEAD_INFO}",
                dir.display(),
                head.shape().outputs,
                info.labels.len()
            )));
        }
        Ok(Self { info, head })
    }
}

/// Writes `head.safetensors` atomically.
pub fn save_head(head: &Classifier, path: &Path) -> Result<()> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let tensors: Vec<(&str, Vec<usize>, Vec<u8>)> = match head {
        Classifier::Mlp(h) => {
            let (d, hd, m) = (h.dim, h.shape.hidden, h.shape.outputs);
            vec![
                ("w1", vec![d, hd], bytes(&h.w1)),
                ("b1", vec![hd], bytes(&h.b1)),
                ("w2", vec![hd, m], bytes(&h.w2)),
                ("b2", vec![m], bytes(&h.b2)),
            ]
        }
        Classifier::Linear(l) => {
            vec![("w", vec![l.dim, l.outputs], bytes(&l.w)), ("b", vec![l.outputs], bytes(&l.b))]
        }
    };
    let mut views = Vec::new();
    for (name, shape, buf) in &tensors {
        let view =
            TensorView::new(Dtype::F32, shape.clone(), buf).map_err(|e| TrainError::Data(e.to_string()))?;
        views.push((name.to_string(), view));
    }
    let out = safetensors::serialize(views, None).map_err(|e| TrainError::Data(e.to_string()))?;
    write_atomic(path, &out)?;
    Ok(())
}

/// Reads a classifier written by [`save_head`].
pub fn load_head(path: &Path, kind: ModelKind) -> Result<Classifier> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| TrainError::Mismatch(format!("{}: {e}", path.display())))?;
    let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let t = st
            .tensor(name)
            .map_err(|e| TrainError::Mismatch(format!("{}: tensor {name}: {e}", path.display())))?;
        let v = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok((t.shape().to_vec(), v))
    };
    let inconsistent = || TrainError::Mismatch(format!("{}: inconsistent tensor shapes", path.display()));
    match kind {
        ModelKind::Mlp => {
            let (s1, w1) = get("w1")?;
            let (_, b1) = get("b1")?;
            let (s2, w2) = get("w2")?;
            let (_, b2) = get("b2")?;
            if s1.len() != 2 || s2.len() != 2 || s1[1] != s2[0] || b1.len() != s1[1] || b2.len() != s2[1] {
                return Err(inconsistent());
            }
            let shape = HeadShape { hidden: s1[1], outputs: s2[1] };
            Ok(Classifier::Mlp(Head { dim: s1[0], shape, w1, b1, w2, b2 }))
        }
        ModelKind::Linear => {
            let (s, w) = get("w")?;
            let (sb, b) = get("b")?;
            if s.len() != 2 || sb != [s[1]] {
                return Err(inconsistent());
            }
            Ok(Classifier::Linear(LinearProbe { dim: s[0], outputs: s[1], w, b }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_round_trip_through_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        let mlp = Classifier::Mlp(Head {
            dim: 3,
            shape: HeadShape { hidden: 2, outputs: 1 },
            w1: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            b1: vec![0.5, -0.5],
            w2: vec![7.0, 8.0],
            b2: vec![9.0],
        });
        let probe = Classifier::Linear(LinearProbe {
            dim: 2,
            outputs: 2,
            w: vec![1.0, 2.0, 3.0, 4.0],
            b: vec![-1.0, 1.0],
        });
        for (c, kind) in [(mlp, ModelKind::Mlp), (probe, ModelKind::Linear)] {
            let p = dir.path().join(format!("{kind}.safetensors"));
            save_head(&c, &p).unwrap();
            assert_eq!(load_head(&p, kind).unwrap(), c);
        }
        let err = load_head(&dir.path().join("mlp.safetensors"), ModelKind::Linear).unwrap_err().to_string();
        assert!(err.contains("tensor w"), "{err}");
    }
}
