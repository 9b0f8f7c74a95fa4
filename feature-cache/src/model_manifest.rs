//! Model manifests (`models/<name>.json`, written by the converters): what a backbone's ONNX
//! file takes and gives (input tensor, size, resize policy, normalisation inside the graph,
//! outputs), and how a `--model` argument finds one. Shared by the extractor (which runs the
//! model) and the head-trainer (which exports a head with its backbone).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{CacheError, Result};

/// How an image becomes the square network input.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum ResizePolicy {
    /// Centre square of `crop_fraction` x the short side, resized to the input size (TF/timm eval).
    CenterCrop {
        /// Fraction of the short side kept (e.g. 224/256 = 0.875).
        crop_fraction: f64,
    },
    /// The whole image resized to the input size, aspect ratio not kept (the seed's preprocessing).
    Stretch,
}

impl ResizePolicy {
    /// Short text for cache metadata and reports.
    pub fn describe(&self) -> String {
        match self {
            ResizePolicy::CenterCrop { crop_fraction } => format!("center_crop({crop_fraction:.4})"),
            ResizePolicy::Stretch => "stretch".into(),
        }
    }
}

/// Input section of a manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct InputSpec {
    /// Input tensor name (uint8 NHWC RGB).
    pub name: String,
    /// Default square input side in pixels.
    pub size: u32,
    /// Resize policy.
    pub resize: ResizePolicy,
    /// Per-channel mean applied inside the graph (0..255 scale).
    pub mean: Vec<f32>,
    /// Per-channel std applied inside the graph.
    pub std: Vec<f32>,
}

/// One named output.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputSpec {
    /// Tensor name in the graph.
    pub name: String,
}

/// Outputs section of a manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputsSpec {
    /// Pooled embedding `[batch, C]`.
    pub embedding: OutputSpec,
    /// Last feature map `[batch, C, h, w]`.
    pub feature_map: OutputSpec,
}

/// A model manifest, with the path of its ONNX file resolved.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelManifest {
    /// Model name, e.g. `efficientnet-lite0`.
    pub name: String,
    /// Family, e.g. `efficientnet-lite`, `timm`.
    pub family: String,
    /// Where the weights come from.
    pub weights: String,
    /// ONNX file name, relative to the manifest.
    pub onnx: String,
    /// SHA-256 of the ONNX file.
    pub sha256: String,
    /// Input description.
    pub input: InputSpec,
    /// Output names.
    pub outputs: OutputsSpec,
    /// Channels of the pooled embedding.
    pub embedding_dim: usize,
    /// Absolute path of the ONNX file (filled in by [`ModelManifest::load`]).
    #[serde(skip)]
    pub onnx_path: PathBuf,
}

impl ModelManifest {
    /// Reads a manifest file and checks that its ONNX file exists and matches its SHA-256.
    pub fn load(path: &Path) -> Result<Self> {
        let err = |message: String| CacheError::Model { model: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read manifest: {e}")))?;
        let mut m: ModelManifest =
            serde_json::from_str(&text).map_err(|e| err(format!("invalid manifest: {e}")))?;
        m.onnx_path = path.parent().unwrap_or(Path::new(".")).join(&m.onnx);
        let bytes = std::fs::read(&m.onnx_path)
            .map_err(|e| err(format!("ONNX file {}: {e} (run scripts/setup)", m.onnx_path.display())))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != m.sha256 {
            return Err(err(format!(
                "{} has sha256 {sha}, the manifest says {}: re-run the converter",
                m.onnx_path.display(),
                m.sha256
            )));
        }
        Ok(m)
    }

    /// Resolves `--model`: a manifest path, an ONNX path (manifest beside it), or a name looked
    /// up in `WIT_MODELS_DIR`, the project's `models/` (from the executable) or `./models`.
    pub fn resolve(model: &str) -> Result<Self> {
        let p = Path::new(model);
        if p.extension().is_some_and(|e| e == "json") {
            return Self::load(p);
        }
        if p.extension().is_some_and(|e| e == "onnx") {
            return Self::load(&p.with_extension("json"));
        }
        let dirs = model_dirs();
        for dir in &dirs {
            let candidate = dir.join(format!("{model}.json"));
            if candidate.is_file() {
                return Self::load(&candidate);
            }
        }
        let available: Vec<String> = dirs
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|rd| rd.flatten())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string))
            .collect();
        Err(CacheError::Model {
            model: model.to_string(),
            message: format!(
                "no manifest found in {}; available: {}. Run scripts/setup to convert the Lite models, \
                 or models/export_timm.py for B0/B2",
                dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
                if available.is_empty() { "none".to_string() } else { available.join(", ") }
            ),
        })
    }

    /// Preprocessing description stored in cache metadata.
    pub fn preprocessing(&self, resize: ResizePolicy) -> String {
        let join = |v: &[f32]| v.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(",");
        format!(
            "{}+bilinear;rgb;mean={};std={}",
            resize.describe(),
            join(&self.input.mean),
            join(&self.input.std)
        )
    }
}

fn model_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("WIT_MODELS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(exe) = std::env::current_exe() {
        dirs.extend(exe.ancestors().skip(1).take(4).map(|a| a.join("models")).filter(|d| d.is_dir()));
    }
    dirs.push(PathBuf::from("models"));
    dirs.dedup();
    dirs
}

/// Side of the last feature map for a square input of `size` px: five stride-2 stages with
/// TF "SAME" padding, each `ceil(x / 2)`.
pub fn feature_map_side(size: u32) -> u32 {
    (0..5).fold(size, |x, _| x.div_ceil(2))
}
