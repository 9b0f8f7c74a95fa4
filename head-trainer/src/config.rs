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

    /// The configuration as it is trained: the linear probe has no hidden layer and fits the
    /// unweighted logistic loss (BCE, plus its L2 penalty), whatever `hidden` and `loss` said —
    /// so `head.json` and the sweep summary state what was fitted.
    pub fn normalized(mut self) -> Self {
        if self.model == ModelKind::Linear {
            self.hidden = 0;
            self.loss = LossKind::Bce;
        }
        self
    }

    /// Refuses settings no head can be trained with, naming the setting.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.model == ModelKind::Mlp && self.hidden == 0 {
            return bad(
                "hidden = 0: the MLP head needs at least one hidden unit (or use model = \"linear\")".into(),
            );
        }
        if self.labels.top_k == Some(0) {
            return bad("top_k = 0 selects no label: give at least 1, or leave it out for every label".into());
        }
        if let Some(list) = &self.labels.labels {
            if list.is_empty() {
                return bad("labels = []: name at least one label".into());
            }
        }
        let t = &self.train;
        if t.epochs == 0 || t.batch_size == 0 {
            return bad(format!(
                "epochs = {} and batch_size = {} must both be at least 1",
                t.epochs, t.batch_size
            ));
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            return bad(format!("learning_rate = {}: must be a positive number", t.learning_rate));
        }
        if !(t.min_precision > 0.0 && t.min_precision <= 1.0) {
            return bad(format!("min_precision = {}: must be in (0, 1]", t.min_precision));
        }
        if !(self.probe.alpha.is_finite() && self.probe.alpha > 0.0) || self.probe.max_iterations == 0 {
            return bad(format!(
                "probe alpha = {} and max_iterations = {} must be positive",
                self.probe.alpha, self.probe.max_iterations
            ));
        }
        Ok(self.split.validate()?)
    }

    /// The settings in which `other` differs from this configuration, as `key: this -> other`
    /// (a taxonomy counts as the same when its file holds the same bytes).
    pub fn differences(&self, other: &RunConfig) -> Vec<String> {
        let (a, mut b) = (self.clone(), other.clone());
        if let (Some(x), Some(y)) = (&a.labels.taxonomy, &b.labels.taxonomy) {
            if x != y && std::fs::read(x).ok().is_some_and(|bytes| Some(bytes) == std::fs::read(y).ok()) {
                b.labels.taxonomy = a.labels.taxonomy.clone();
            }
        }
        let (va, vb) =
            (serde_json::to_value(&a).unwrap_or_default(), serde_json::to_value(&b).unwrap_or_default());
        let mut out = Vec::new();
        diff_values("", &va, &vb, &mut out);
        out
    }
}

/// Leaf-by-leaf differences of two JSON values, `path: a -> b`.
fn diff_values(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                diff_values(&p, x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} -> {b}")),
        _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_no_head_can_train_with_are_refused_by_name() {
        let ok = RunConfig::for_column("fine");
        assert!(ok.validate().is_ok());
        type Change = fn(&mut RunConfig);
        let cases: [(&str, Change); 5] = [
            ("hidden = 0", |c| c.hidden = 0),
            ("top_k = 0", |c| c.labels.top_k = Some(0)),
            ("labels = []", |c| c.labels.labels = Some(vec![])),
            ("epochs = 0", |c| c.train.epochs = 0),
            ("learning_rate = -1", |c| c.train.learning_rate = -1.0),
        ];
        for (expected, change) in cases {
            let mut c = ok.clone();
            change(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
        let mut linear = ok.clone();
        linear.model = ModelKind::Linear;
        let linear = linear.normalized();
        assert_eq!((linear.hidden, linear.loss), (0, LossKind::Bce), "what the probe fits");
        assert!(linear.validate().is_ok(), "the linear probe has no hidden layer");
    }

    #[test]
    fn differences_name_each_changed_setting() {
        let a = RunConfig::for_column("fine");
        let mut b = a.clone();
        assert!(a.differences(&b).is_empty());
        b.train.epochs = 20;
        b.labels.top_k = Some(10);
        assert_eq!(a.differences(&b), ["labels.top_k: null -> 10", "train.epochs: 15 -> 20"]);
    }

    #[test]
    fn a_taxonomy_at_another_path_with_the_same_content_is_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y, z) = (dir.path().join("x.json"), dir.path().join("y.json"), dir.path().join("z.json"));
        std::fs::write(&x, r#"{"Cats": ["Animals"]}"#).unwrap();
        std::fs::write(&y, r#"{"Cats": ["Animals"]}"#).unwrap();
        std::fs::write(&z, r#"{"Cats": ["Pets"]}"#).unwrap();
        let mut a = RunConfig::for_column("fine");
        a.labels.taxonomy = Some(x);
        let mut b = a.clone();
        b.labels.taxonomy = Some(y);
        assert!(a.differences(&b).is_empty());
        b.labels.taxonomy = Some(z);
        assert_eq!(a.differences(&b).len(), 1);
    }
}
