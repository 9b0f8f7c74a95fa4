//! `head-trainer export`: a run's head as one ONNX model, for serving stacks that run ONNX.
//!
//! * Alone: input `embedding` (float32 `[batch, D]`, what the cache stores) → output
//!   `probabilities` (float32 `[batch, M]`).
//! * With `--backbone`: the backbone's graph (input `pixels`, uint8 NHWC RGB, cropped and
//!   resized as its manifest says; normalisation happens inside) with the head appended →
//!   outputs `probabilities` and `embedding`. The backbone must be the model whose embeddings
//!   the head was trained on (its ONNX file's SHA-256), or the export is refused.
//!
//! The head sees what it was trained on: for an f16 cache, the embedding is rounded to f16 and
//! back (two `Cast`s) before the head; for `flatten` pooling the feature map is transposed to
//! (h, w, C) and flattened, as the cache stores it. Label names, thresholds (F1-optimal and
//! max-recall-at-precision per label), the head's `head.json`, the embedding identity and the
//! input's preprocessing go into the model's metadata (`wit.*` keys).
//!
//! Written with the `onnx-protobuf` crate (rust-protobuf over ONNX's own `onnx.proto`): a Rust
//! export needs no Python at serving time, and rust-protobuf keeps every field of the backbone
//! it does not know, so the backbone's graph passes through whole.

use std::collections::HashSet;
use std::path::Path;

use feature_cache::atomic::write_atomic;
use feature_cache::model_manifest::{ModelManifest, ResizePolicy};
use feature_cache::{EmbeddingDtype, Pooling};
use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::Dimension;
use onnx_protobuf::type_proto::Tensor as TensorType;
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::{EnumOrUnknown, MessageField};
use serde_json::json;

use crate::error::{Result, TrainError};
use crate::head_io::{HeadInfo, TrainedRun};
use crate::model::Classifier;

/// Output of every exported model: one probability per label.
pub const PROBABILITIES: &str = "probabilities";
/// Input of a head-alone model, and second output of a model with its backbone.
pub const EMBEDDING: &str = "embedding";
/// ONNX IR and opset of a head-alone model.
const IR_VERSION: i64 = 8;
const OPSET: i64 = 17;

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// Bytes of the model.
    pub bytes: usize,
    /// Its input and outputs.
    pub inputs: Vec<String>,
    /// Its outputs.
    pub outputs: Vec<String>,
}

fn bad(message: impl Into<String>) -> TrainError {
    TrainError::Mismatch(message.into())
}

fn tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.into();
    t.dims = dims.iter().map(|&d| d as i64).collect();
    t.data_type = DataType::FLOAT as i32;
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = EnumOrUnknown::new(AttributeType::INT);
    a.i = value;
    a
}

fn ints_attribute(name: &str, values: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = EnumOrUnknown::new(AttributeType::INTS);
    a.ints = values.to_vec();
    a
}

fn node(op: &str, inputs: &[&str], output: &str, attributes: Vec<AttributeProto>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = format!("head/{op}/{output}");
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = vec![output.into()];
    n.attribute = attributes;
    n
}

/// A float32 tensor value `[batch, dim]`.
fn float_matrix(name: &str, dim: Option<usize>) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    let mut batch = Dimension::new();
    batch.set_dim_param("batch".into());
    shape.dim.push(batch);
    let mut d = Dimension::new();
    match dim {
        Some(n) => d.set_dim_value(n as i64),
        None => d.set_dim_param("features".into()),
    }
    shape.dim.push(d);
    let mut t = TensorType::new();
    t.elem_type = DataType::FLOAT as i32;
    t.shape = MessageField::some(shape);
    let mut ty = TypeProto::new();
    ty.set_tensor_type(t);
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = MessageField::some(ty);
    v
}

/// Appends the head to `graph`, reading the embedding from `input` (its nodes and initializers
/// are named `head/…`; its output is [`PROBABILITIES`]).
fn append_head(graph: &mut GraphProto, input: &str, info: &HeadInfo, head: &Classifier) {
    let mut x = input.to_string();
    if info.embedding.dtype == EmbeddingDtype::F16 {
        // what the cache stores, and so what the head was trained on
        graph.node.push(node(
            "Cast",
            &[&x],
            "head/embedding_f16",
            vec![int_attribute("to", DataType::FLOAT16 as i64)],
        ));
        graph.node.push(node(
            "Cast",
            &["head/embedding_f16"],
            "head/embedding_as_stored",
            vec![int_attribute("to", DataType::FLOAT as i64)],
        ));
        x = "head/embedding_as_stored".into();
    }
    let dense =
        |graph: &mut GraphProto, x: &str, w: (&str, &[usize], &[f32]), b: (&str, &[f32]), out: &str| {
            graph.initializer.push(tensor(w.0, w.1, w.2));
            graph.initializer.push(tensor(b.0, &[b.1.len()], b.1));
            let product = format!("{out}/product");
            graph.node.push(node("MatMul", &[x, w.0], &product, vec![]));
            graph.node.push(node("Add", &[&product, b.0], out, vec![]));
        };
    match head {
        Classifier::Mlp(h) => {
            let (d, hd, m) = (h.dim, h.shape.hidden, h.shape.outputs);
            dense(graph, &x, ("head/w1", &[d, hd], &h.w1), ("head/b1", &h.b1), "head/hidden_linear");
            graph.node.push(node("Relu", &["head/hidden_linear"], "head/hidden", vec![]));
            dense(graph, "head/hidden", ("head/w2", &[hd, m], &h.w2), ("head/b2", &h.b2), "head/logits");
        }
        Classifier::Linear(l) => {
            dense(graph, &x, ("head/w", &[l.dim, l.outputs], &l.w), ("head/b", &l.b), "head/logits");
        }
    }
    graph.node.push(node("Sigmoid", &["head/logits"], PROBABILITIES, vec![]));
}

/// Removes nodes whose outputs nothing uses (the backbone's ImageNet logits, say) and the
/// initializers no node reads any more.
fn prune(graph: &mut GraphProto) {
    loop {
        let mut used: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
        used.extend(graph.node.iter().flat_map(|n| n.input.iter().cloned()));
        let before = graph.node.len();
        graph.node.retain(|n| n.output.iter().any(|o| used.contains(o)));
        if graph.node.len() == before {
            graph.initializer.retain(|t| used.contains(&t.name));
            return;
        }
    }
}

/// Renames tensor `from` to `to` everywhere in `graph`.
fn rename(graph: &mut GraphProto, from: &str, to: &str) {
    for n in &mut graph.node {
        for s in n.input.iter_mut().chain(n.output.iter_mut()) {
            if s == from {
                *s = to.into();
            }
        }
    }
    for v in graph.output.iter_mut().chain(graph.value_info.iter_mut()) {
        if v.name == from {
            v.name = to.into();
        }
    }
}

fn entry(key: &str, value: String) -> StringStringEntryProto {
    let mut e = StringStringEntryProto::new();
    e.key = key.into();
    e.value = value;
    e
}

/// The model of the run in `run_dir`, alone or with the backbone `backbone` (a model name or
/// manifest path, as `extractor --model` takes).
pub fn export_model(run_dir: &Path, backbone: Option<&str>) -> Result<ModelProto> {
    let run = TrainedRun::load(run_dir)?;
    let info = &run.info;
    let emb = &info.embedding;
    let thresholds = json!({
        "f1": info.thresholds.f1,
        "precision": info.thresholds.precision,
        "min_precision": info.thresholds.min_precision,
    });
    let mut meta = vec![
        entry("wit.labels", json!(info.labels).to_string()),
        entry("wit.thresholds", thresholds.to_string()),
        entry("wit.head", serde_json::to_string(info).map_err(|e| TrainError::Data(e.to_string()))?),
        entry("wit.embedding", serde_json::to_string(emb).map_err(|e| TrainError::Data(e.to_string()))?),
    ];
    let mut model = match backbone {
        None => {
            let mut graph = GraphProto::new();
            graph.name = format!("{} head", info.name);
            graph.input.push(float_matrix(EMBEDDING, Some(emb.dim)));
            append_head(&mut graph, EMBEDDING, info, &run.head);
            graph.output.push(float_matrix(PROBABILITIES, Some(info.labels.len())));
            let mut m = ModelProto::new();
            m.ir_version = IR_VERSION;
            let mut opset = OperatorSetIdProto::new();
            opset.version = OPSET;
            m.opset_import.push(opset);
            m.graph = MessageField::some(graph);
            meta.push(entry(
                "wit.input",
                json!({"name": EMBEDDING, "dtype": "float32", "dim": emb.dim,
                       "what": format!("{} embeddings as the cache stores them ({})", emb.model_identity(), emb.pooling)})
                .to_string(),
            ));
            meta.push(entry("wit.outputs", json!([PROBABILITIES]).to_string()));
            m
        }
        Some(name) => {
            let manifest = ModelManifest::resolve(name)?;
            if manifest.sha256 != emb.model_sha256 {
                return Err(bad(format!(
                    "backbone {} ({}@{}) is not the model head `{}` was trained on ({}): export it with that one",
                    name,
                    manifest.name,
                    manifest.sha256.get(..12).unwrap_or(&manifest.sha256),
                    info.name,
                    emb.model_identity()
                )));
            }
            let bytes =
                std::fs::read(&manifest.onnx_path).map_err(|e| TrainError::io(&manifest.onnx_path, e))?;
            let mut m = ModelProto::parse_from_bytes(&bytes)
                .map_err(|e| bad(format!("{}: not an ONNX model: {e}", manifest.onnx_path.display())))?;
            let graph =
                m.graph.as_mut().ok_or_else(|| bad(format!("{}: no graph", manifest.onnx_path.display())))?;
            let embedding = match emb.pooling {
                Pooling::Avg => manifest.outputs.embedding.name.clone(),
                Pooling::Flatten => {
                    // the cache stores the feature map in (h, w, C) order, flattened
                    let map = manifest.outputs.feature_map.name.clone();
                    graph.node.push(node(
                        "Transpose",
                        &[&map],
                        "head/feature_map_hwc",
                        vec![ints_attribute("perm", &[0, 2, 3, 1])],
                    ));
                    graph.node.push(node(
                        "Flatten",
                        &["head/feature_map_hwc"],
                        "head/flattened",
                        vec![int_attribute("axis", 1)],
                    ));
                    "head/flattened".to_string()
                }
            };
            if embedding != EMBEDDING {
                // the name `embedding` is the second output's
                rename(graph, EMBEDDING, "backbone/pooled_embedding");
            }
            let embedding = if embedding == EMBEDDING { EMBEDDING.to_string() } else { embedding };
            append_head(graph, &embedding, info, &run.head);
            if embedding != EMBEDDING {
                graph.node.push(node("Identity", &[&embedding], EMBEDDING, vec![]));
            }
            graph.output.clear();
            graph.output.push(float_matrix(PROBABILITIES, Some(info.labels.len())));
            graph.output.push(float_matrix(EMBEDDING, Some(emb.dim)));
            prune(graph);
            graph.name = format!("{} with {}", info.name, manifest.name);
            let resize = if emb.preprocessing.starts_with("stretch") {
                ResizePolicy::Stretch
            } else {
                manifest.input.resize
            };
            let resize = match resize {
                ResizePolicy::CenterCrop { crop_fraction } => {
                    json!({"policy": "center_crop", "crop_fraction": crop_fraction, "interpolation": "bilinear (antialiased)"})
                }
                ResizePolicy::Stretch => {
                    json!({"policy": "stretch", "interpolation": "bilinear (antialiased)"})
                }
            };
            meta.push(entry("wit.backbone", emb.model_identity()));
            meta.push(entry(
                "wit.input",
                json!({"name": manifest.input.name, "layout": "NHWC", "dtype": "uint8", "channels": "RGB",
                       "size": emb.input_size, "resize": resize,
                       "normalisation": format!("inside the graph: (x - {:?}) / {:?}", manifest.input.mean, manifest.input.std),
                       "preprocessing": emb.preprocessing})
                .to_string(),
            ));
            meta.push(entry("wit.outputs", json!([PROBABILITIES, EMBEDDING]).to_string()));
            m
        }
    };
    model.producer_name = "wiki-image-topics head-trainer".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    model.doc_string = format!(
        "wiki-image-topics head `{}`: {} topic labels ({}), trained on {} embeddings. Metadata wit.labels, \
         wit.thresholds, wit.input say how to use it.",
        info.name,
        info.labels.len(),
        info.labels.join(", "),
        emb.model_identity()
    );
    model.metadata_props.extend(meta);
    Ok(model)
}

/// Writes the exported model of `run_dir` to `out` (atomically).
pub fn export(run_dir: &Path, backbone: Option<&str>, out: &Path) -> Result<Exported> {
    let model = export_model(run_dir, backbone)?;
    let bytes =
        model.write_to_bytes().map_err(|e| TrainError::Data(format!("serialising the model: {e}")))?;
    write_atomic(out, &bytes)?;
    let graph = model.graph.as_ref().expect("an exported model has a graph");
    Ok(Exported {
        bytes: bytes.len(),
        inputs: graph.input.iter().map(|i| i.name.clone()).collect(),
        outputs: graph.output.iter().map(|o| o.name.clone()).collect(),
    })
}
