//! Run configurations (`run.toml`): everything that defines one trained head.

use std::path::{Path, PathBuf};

use feature_cache::SplitSpec;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::labels::{EmptyPolicy, LabelConfig};
use crate::linear::ProbeSettings;
use crate::model::{LossKind, ModelKind};
use crate::train::TrainSettings;

/// One head's configuration, as `run.toml` holds it and `head.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Label configuration.
    pub labels: LabelConfig,
    /// Classifier: `mlp` (the head) or `linear` (the linear-probe baseline).
    #[serde(default)]
    pub model: ModelKind,
    /// Hidden units of the first dense layer.
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Loss.
    #[serde(default = "default_loss")]
    pub loss: LossKind,
    /// Seed of the initial weights.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Optimisation settings.
    #[serde(default)]
    pub train: TrainSettings,
    /// Settings of the linear probe (`model = "linear"`).
    #[serde(default)]
    pub probe: ProbeSettings,
    /// Hash split (ignored for rows whose label table sets `split`).
    #[serde(default)]
    pub split: SplitSpec,
}

fn default_hidden() -> usize {
    128
}

fn default_loss() -> LossKind {
    LossKind::ClassWeighted
}

fn default_seed() -> u64 {
    42
}

impl RunConfig {
    /// Defaults for a label column.
    pub fn for_column(column: &str) -> Self {
        Self {
            labels: LabelConfig::all(column),
            model: ModelKind::default(),
            hidden: default_hidden(),
            loss: default_loss(),
            seed: default_seed(),
            train: TrainSettings::default(),
            probe: ProbeSettings::default(),
            split: SplitSpec::default(),
        }
    }

    /// Reads a TOML run configuration; errors name the file, line and key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        toml::from_str(&text).map_err(|e| TrainError::Config(toml_error(path, &text, &e)))
    }
}

/// "file:line: message" for a TOML error.
pub fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> String {
    let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    match line {
        Some(l) => format!("{}:{l}: {}", path.display(), e.message()),
        None => format!("{}: {}", path.display(), e.message()),
    }
}

/// The settings a grid axis or an explicit run may set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOverrides {
    /// Run name (explicit runs; grid runs are named after their values).
    #[serde(default)]
    pub name: Option<String>,
    /// Embedding cache.
    #[serde(default)]
    pub embeddings: Option<PathBuf>,
    /// Label column.
    #[serde(default)]
    pub column: Option<String>,
    /// Top-K labels.
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Explicit label list.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Minimum training count.
    #[serde(default)]
    pub min_count: Option<usize>,
    /// Taxonomy file.
    #[serde(default)]
    pub taxonomy: Option<PathBuf>,
    /// Empty-label policy.
    #[serde(default)]
    pub empty: Option<EmptyPolicy>,
    /// Classifier.
    #[serde(default)]
    pub model: Option<ModelKind>,
    /// Loss.
    #[serde(default)]
    pub loss: Option<LossKind>,
    /// Hidden units.
    #[serde(default)]
    pub hidden: Option<usize>,
    /// Seed of weights and batch order.
    #[serde(default)]
    pub seed: Option<u64>,
}

impl RunOverrides {
    /// Sets every field given here on `c` (a seed sets both the weights' and the batch order's).
    pub fn apply_to(&self, c: &mut RunConfig) {
        if let Some(v) = &self.column {
            c.labels.column = v.clone();
        }
        if self.top_k.is_some() {
            c.labels.top_k = self.top_k;
        }
        if self.labels.is_some() {
            c.labels.labels = self.labels.clone();
        }
        if let Some(v) = self.min_count {
            c.labels.min_count = v;
        }
        if self.taxonomy.is_some() {
            c.labels.taxonomy = self.taxonomy.clone();
        }
        if let Some(v) = self.empty {
            c.labels.empty = v;
        }
        if let Some(v) = self.model {
            c.model = v;
        }
        if let Some(v) = self.loss {
            c.loss = v;
        }
        if let Some(v) = self.hidden {
            c.hidden = v;
        }
        if let Some(v) = self.seed {
            c.seed = v;
            c.train.seed = v;
        }
    }
}
