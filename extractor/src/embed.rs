//! Running the ONNX model on batches of preprocessed images.

use std::fmt;
use std::str::FromStr;

use feature_cache::Pooling;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{RunOptions, Session};
use ort::value::TensorRef;

use crate::error::{ExtractError, Result};
use crate::model::{feature_map_side, ModelManifest};
use crate::runtime;

/// Where inference runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// CUDA if it can be initialised, else CPU (with a message saying why).
    Auto,
    /// CPU only.
    Cpu,
    /// CUDA or fail.
    Cuda,
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            _ => Err(format!("`{s}` is not a device (auto, cpu, cuda)")),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Auto => "auto",
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
        })
    }
}

/// How to build an [`Embedder`].
#[derive(Debug, Clone)]
pub struct EmbedderConfig {
    /// Requested device.
    pub device: Device,
    /// ONNX Runtime intra-op threads on CPU (0 = ONNX Runtime's default).
    pub threads: usize,
    /// Pooling of the last feature map.
    pub pooling: Pooling,
    /// Square input side in pixels.
    pub input_size: u32,
}

/// A loaded model that turns uint8 NHWC batches into embeddings.
pub struct Embedder {
    session: Session,
    input_name: String,
    output_name: String,
    pooling: Pooling,
    input_size: u32,
    dim: usize,
    device: Device,
    /// Messages about the device choice (e.g. why CUDA was not used).
    pub notes: Vec<String>,
}

impl Embedder {
    /// Loads `manifest`'s model on the configured device.
    pub fn new(manifest: &ModelManifest, cfg: &EmbedderConfig) -> Result<Self> {
        let rt = runtime::init()?;
        let mut notes = Vec::new();
        let (session, device) = match cfg.device {
            Device::Cpu => (cpu_session(rt, manifest, cfg.threads)?, Device::Cpu),
            Device::Cuda => (cuda_session(rt, manifest)?, Device::Cuda),
            Device::Auto => match cuda_session(rt, manifest) {
                Ok(s) => (s, Device::Cuda),
                Err(e) => {
                    notes.push(format!("CUDA not used ({}); running on CPU", first_line(&e.to_string())));
                    (cpu_session(rt, manifest, cfg.threads)?, Device::Cpu)
                }
            },
        };
        let side = feature_map_side(cfg.input_size) as usize;
        let (output_name, dim) = match cfg.pooling {
            Pooling::Avg => (manifest.outputs.embedding.name.clone(), manifest.embedding_dim),
            Pooling::Flatten => {
                (manifest.outputs.feature_map.name.clone(), manifest.embedding_dim * side * side)
            }
        };
        Ok(Self {
            session,
            input_name: manifest.input.name.clone(),
            output_name,
            pooling: cfg.pooling,
            input_size: cfg.input_size,
            dim,
            device,
            notes,
        })
    }

    /// Values per embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The device in use.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Embeds `batch` images given as `batch x size x size x 3` uint8 RGB; returns
    /// `batch x dim` values.
    pub fn embed(&mut self, pixels: &[u8], batch: usize) -> Result<Vec<f32>> {
        let s = self.input_size as usize;
        if pixels.len() != batch * s * s * 3 {
            return Err(ExtractError::Usage(format!(
                "batch of {batch} needs {} bytes, got {}",
                batch * s * s * 3,
                pixels.len()
            )));
        }
        let input = TensorRef::from_array_view(([batch, s, s, 3], pixels))?;
        let options = RunOptions::new()?
            .with_outputs(ort::session::OutputSelector::no_default().with(self.output_name.clone()));
        let outputs =
            self.session.run_with_options(ort::inputs![self.input_name.as_str() => input], &options)?;
        let (shape, values) = outputs[self.output_name.as_str()].try_extract_tensor::<f32>()?;
        match self.pooling {
            Pooling::Avg => Ok(values.to_vec()),
            Pooling::Flatten => {
                // [B, C, h, w] -> per image (h, w, C), Keras' Flatten order of an NHWC map
                let (c, h, w) = (shape[1] as usize, shape[2] as usize, shape[3] as usize);
                let mut out = vec![0f32; batch * c * h * w];
                for b in 0..batch {
                    let src = &values[b * c * h * w..(b + 1) * c * h * w];
                    let dst = &mut out[b * c * h * w..(b + 1) * c * h * w];
                    for ch in 0..c {
                        for p in 0..h * w {
                            dst[p * c + ch] = src[ch * h * w + p];
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

fn cpu_session(rt: &runtime::Runtime, m: &ModelManifest, threads: usize) -> Result<Session> {
    // Decoding runs on the same cores while a batch is inferred: ONNX Runtime's threads must
    // sleep, not spin, between their work items, or they steal the decoders' CPU.
    let mut b = Session::builder(&rt.env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_intra_op_spinning(false)?
        .with_inter_op_spinning(false)?;
    if threads > 0 {
        b = b.with_intra_threads(threads)?;
    }
    Ok(b.commit_from_file(&m.onnx_path)?)
}

fn cuda_session(rt: &runtime::Runtime, m: &ModelManifest) -> Result<Session> {
    let cuda = ort::ep::CUDA::default().build().error_on_failure();
    let mut b = Session::builder(&rt.env)?
        .with_optimization_level(GraphOptimizationLevel::Level3)?
        .with_execution_providers([cuda])?;
    Ok(b.commit_from_file(&m.onnx_path)?)
}
