//! What every embedding part declares about itself: the model's identity and the storage, as
//! `wit.*` key-value metadata, and the Arrow schema that goes with it.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::file::metadata::KeyValue;
use serde::{Deserialize, Serialize};

use crate::error::{CacheError, Result};

/// Version of this on-disk contract written by this build, stored as `wit.format_version`.
/// Version 2 added the `source*` columns and moved failure tables into `_failures/`.
pub const FORMAT_VERSION: u32 = 2;
/// Oldest version this build reads.
pub const MIN_FORMAT_VERSION: u32 = 1;
/// Prefix of every metadata key this crate writes.
pub const METADATA_PREFIX: &str = "wit.";

/// Storage type of the embedding values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingDtype {
    /// IEEE half precision: half the disk and memory, ample for ReLU6-bounded features.
    F16,
    /// IEEE single precision.
    F32,
}

/// How the last feature map becomes one vector per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Global average pooling over height and width (C values).
    Avg,
    /// The feature map flattened in height, width, channel order (h·w·C values), as Keras'
    /// `Flatten` on the seed's 2x2xC map of 64 px inputs.
    Flatten,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $(Self::$variant => $text),+ })
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s { $($text => Ok(Self::$variant),)+
                    _ => Err(format!("`{s}` is not one of: {}", [$($text),+].join(", "))) }
            }
        }
    };
}
text_enum!(EmbeddingDtype { F16 => "f16", F32 => "f32" });
text_enum!(Pooling { Avg => "avg", Flatten => "flatten" });

/// The identity of the embeddings in a cache, stored in each part's Parquet metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheMetadata {
    /// Model name, e.g. `efficientnet-lite0`.
    pub model: String,
    /// SHA-256 of the ONNX file that produced the embeddings.
    pub model_sha256: String,
    /// Values per embedding.
    pub dim: usize,
    /// How the feature map was pooled.
    pub pooling: Pooling,
    /// Side of the square network input in pixels.
    pub input_size: u32,
    /// Preprocessing, e.g. `center_crop(0.875)+bilinear;mean=127,127,127;std=128,128,128`.
    pub preprocessing: String,
    /// Storage type of the values.
    pub dtype: EmbeddingDtype,
    /// `extractor <version>` that wrote the part.
    pub tool_version: String,
}

impl CacheMetadata {
    const KEYS: [&'static str; 9] = [
        "format_version",
        "model",
        "model_sha256",
        "dim",
        "pooling",
        "input_size",
        "preprocessing",
        "dtype",
        "tool_version",
    ];

    /// `model@sha256-prefix`: what a head records to refuse embeddings of another model.
    pub fn model_identity(&self) -> String {
        let short = self.model_sha256.get(..12).unwrap_or(&self.model_sha256);
        format!("{}@{short}", self.model)
    }

    /// The Parquet key-value pairs of this metadata (at the current format version).
    pub fn to_key_values(&self) -> Vec<KeyValue> {
        let values = [
            FORMAT_VERSION.to_string(),
            self.model.clone(),
            self.model_sha256.clone(),
            self.dim.to_string(),
            self.pooling.to_string(),
            self.input_size.to_string(),
            self.preprocessing.clone(),
            self.dtype.to_string(),
            self.tool_version.clone(),
        ];
        Self::KEYS
            .iter()
            .zip(values)
            .map(|(k, v)| KeyValue::new(format!("{METADATA_PREFIX}{k}"), v))
            .collect()
    }

    /// Parses the `wit.*` pairs of the file at `path`; returns the metadata and the part's
    /// format version.
    pub fn from_key_values(path: &Path, kv: Option<&Vec<KeyValue>>) -> Result<(Self, u32)> {
        let map: HashMap<&str, &str> = kv
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.key.strip_prefix(METADATA_PREFIX)?, e.value.as_deref()?)))
            .collect();
        let meta_err = |key: &str, message: String| CacheError::Metadata {
            path: path.to_path_buf(),
            key: format!("{METADATA_PREFIX}{key}"),
            message,
        };
        let get = |key: &str| {
            map.get(key).map(|v| v.to_string()).ok_or_else(|| {
                meta_err(key, "missing: not an embedding cache written by the extractor".into())
            })
        };
        let parse = |key: &str| -> Result<u64> {
            get(key)?.parse().map_err(|e| meta_err(key, format!("not a number: {e}")))
        };
        let version = parse("format_version")?;
        if !(u64::from(MIN_FORMAT_VERSION)..=u64::from(FORMAT_VERSION)).contains(&version) {
            return Err(meta_err(
                "format_version",
                format!(
                    "version {version}; this build reads versions {MIN_FORMAT_VERSION} to {FORMAT_VERSION}"
                ),
            ));
        }
        let meta = Self {
            model: get("model")?,
            model_sha256: get("model_sha256")?,
            dim: parse("dim")? as usize,
            pooling: get("pooling")?.parse().map_err(|e| meta_err("pooling", e))?,
            input_size: parse("input_size")? as u32,
            preprocessing: get("preprocessing")?,
            dtype: get("dtype")?.parse().map_err(|e| meta_err("dtype", e))?,
            tool_version: get("tool_version")?,
        };
        Ok((meta, version as u32))
    }

    /// The first field in which two parts' embeddings are not interchangeable, with both values.
    pub fn mismatch(&self, other: &Self) -> Option<(&'static str, String, String)> {
        let fields = [
            ("model", self.model.clone(), other.model.clone()),
            ("model_sha256", self.model_sha256.clone(), other.model_sha256.clone()),
            ("dim", self.dim.to_string(), other.dim.to_string()),
            ("pooling", self.pooling.to_string(), other.pooling.to_string()),
            ("input_size", self.input_size.to_string(), other.input_size.to_string()),
            ("preprocessing", self.preprocessing.clone(), other.preprocessing.clone()),
        ];
        fields.into_iter().find(|(_, a, b)| a != b)
    }

    /// The Arrow type of the embedding values.
    pub fn value_type(&self) -> DataType {
        match self.dtype {
            EmbeddingDtype::F16 => DataType::Float16,
            EmbeddingDtype::F32 => DataType::Float32,
        }
    }

    /// The Arrow schema of a part written now (which carries this metadata as schema metadata,
    /// where pyarrow and polars look for it).
    pub fn schema(&self) -> SchemaRef {
        let item = Arc::new(Field::new("item", self.value_type(), false));
        let fields = vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("embedding", DataType::FixedSizeList(item, self.dim as i32), false),
            Field::new("width", DataType::UInt32, false),
            Field::new("height", DataType::UInt32, false),
            Field::new("source", DataType::Utf8, true),
            Field::new("source_row", DataType::UInt64, true),
            Field::new("source_member", DataType::Utf8, true),
        ];
        let metadata: HashMap<String, String> =
            self.to_key_values().into_iter().filter_map(|kv| Some((kv.key, kv.value?))).collect();
        Arc::new(Schema::new_with_metadata(fields, metadata))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> CacheMetadata {
        CacheMetadata {
            model: "efficientnet-lite0".into(),
            model_sha256: "0123456789abcdef".repeat(4),
            dim: 1280,
            pooling: Pooling::Avg,
            input_size: 224,
            preprocessing: "center_crop(0.8750)+bilinear".into(),
            dtype: EmbeddingDtype::F16,
            tool_version: "extractor 0.1.0".into(),
        }
    }

    #[test]
    fn key_values_round_trip_and_older_versions_are_read() {
        let path = Path::new("emb.parquet");
        let kv = meta().to_key_values();
        assert_eq!(CacheMetadata::from_key_values(path, Some(&kv)).unwrap(), (meta(), FORMAT_VERSION));
        let mut v1 = kv.clone();
        v1[0] = KeyValue::new("wit.format_version".into(), "1".to_string());
        assert_eq!(CacheMetadata::from_key_values(path, Some(&v1)).unwrap().1, 1);
        v1[0] = KeyValue::new("wit.format_version".into(), "3".to_string());
        let err = CacheMetadata::from_key_values(path, Some(&v1)).unwrap_err().to_string();
        assert!(err.contains("version 3; this build reads versions 1 to 2"), "{err}");
        assert_eq!(meta().model_identity(), "efficientnet-lite0@0123456789ab");
    }

    #[test]
    fn mismatch_names_the_first_differing_field() {
        let mut other = meta();
        assert_eq!(meta().mismatch(&other), None);
        other.tool_version = "extractor 9".into();
        other.dtype = EmbeddingDtype::F32;
        assert_eq!(meta().mismatch(&other), None, "storage and writer do not change the embeddings");
        other.input_size = 260;
        assert_eq!(meta().mismatch(&other), Some(("input_size", "224".into(), "260".into())));
    }
}
