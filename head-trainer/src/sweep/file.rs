//! The sweep file: many label configurations in one TOML file, as a grid and/or a list.
//!
//! ```toml
//! embeddings = "cache/lite0"       # default cache (relative paths: to the sweep file)
//! labels = "data/labels.csv"       # label table
//!
//! [defaults]                       # any run.toml field
//! hidden = 128
//! train = { epochs = 15, batch_size = 128 }
//!
//! [grid]                           # cartesian product of these ([[grids]] for several)
//! column = ["fine", "coarse"]
//! top_k = [10, 20]
//! loss = ["class-weighted", "bce"]
//! embeddings = ["cache/lite0", "cache/lite2"]
//!
//! [[run]]                          # explicit runs, on top of the grid
//! name = "maps-vs-flags"
//! column = "fine"
//! labels = ["Maps", "Flags"]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{toml_error, RunConfig, RunOverrides};
use crate::error::{Result, TrainError};
use crate::labels::EmptyPolicy;
use crate::model::{LossKind, ModelKind};

/// Grid axes: each a list of values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Caches.
    #[serde(default)]
    pub embeddings: Vec<PathBuf>,
    /// Label columns.
    #[serde(default)]
    pub column: Vec<String>,
    /// Top-K values.
    #[serde(default)]
    pub top_k: Vec<usize>,
    /// Label lists.
    #[serde(default)]
    pub labels: Vec<Vec<String>>,
    /// Classifiers (`mlp`, `linear`).
    #[serde(default)]
    pub model: Vec<ModelKind>,
    /// Losses.
    #[serde(default)]
    pub loss: Vec<LossKind>,
    /// Hidden sizes.
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Seeds.
    #[serde(default)]
    pub seed: Vec<u64>,
    /// Empty-label policies.
    #[serde(default)]
    pub empty: Vec<EmptyPolicy>,
}

/// A sweep file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Default cache.
    #[serde(default)]
    pub embeddings: Option<PathBuf>,
    /// Label table.
    pub labels: PathBuf,
    /// Settings shared by every run (a partial run.toml).
    #[serde(default)]
    pub defaults: Option<toml::Table>,
    /// Cartesian grid.
    #[serde(default)]
    pub grid: Option<Grid>,
    /// More grids (`[[grids]]`), their runs added to the grid's.
    #[serde(default)]
    pub grids: Vec<Grid>,
    /// Explicit runs.
    #[serde(default)]
    pub run: Vec<RunOverrides>,
}

/// One expanded run of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRun {
    /// Unique name (its directory under the sweep's output).
    pub name: String,
    /// Its cache.
    pub embeddings: PathBuf,
    /// Its configuration.
    pub config: RunConfig,
}

impl SweepFile {
    /// Reads a sweep file; errors name the file, line and key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        toml::from_str(&text).map_err(|e| TrainError::Config(toml_error(path, &text, &e)))
    }

    /// Expands the grid and explicit runs into named runs, paths resolved against `base`.
    pub fn expand(&self, path: &Path) -> Result<Vec<SweepRun>> {
        let base = path.parent().unwrap_or(Path::new("."));
        let mut defaults = self.defaults.clone().unwrap_or_default();
        // the label column usually varies per run: let [defaults] leave it out
        let labels = defaults.entry("labels").or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = labels {
            t.entry("column").or_insert_with(|| "".into());
        }
        let defaults: RunConfig = defaults.try_into().map_err(|e: toml::de::Error| {
            TrainError::Config(format!("{}: [defaults]: {}", path.display(), e.message()))
        })?;
        let mut overrides = Vec::new();
        for g in self.grid.iter().chain(&self.grids) {
            overrides.extend(expand_grid(g));
        }
        overrides.extend(self.run.iter().cloned());
        if overrides.is_empty() {
            return Err(TrainError::Config(format!(
                "{}: no [grid] and no [[run]]: nothing to train",
                path.display()
            )));
        }
        let mut runs = Vec::with_capacity(overrides.len());
        let mut names = BTreeMap::new();
        for (i, o) in overrides.iter().enumerate() {
            let mut c = defaults.clone();
            let embeddings = o.embeddings.clone().or_else(|| self.embeddings.clone()).ok_or_else(|| {
                TrainError::Config(format!(
                    "{}: run {}: no `embeddings` (top level, grid or run)",
                    path.display(),
                    i + 1
                ))
            })?;
            o.apply_to(&mut c);
            if c.labels.column.is_empty() {
                return Err(TrainError::Config(format!(
                    "{}: run {}: no label `column` (set it in [defaults.labels], [grid] or the run)",
                    path.display(),
                    i + 1
                )));
            }
            if let Some(t) = &c.labels.taxonomy {
                c.labels.taxonomy = Some(base.join(t));
            }
            // named after the settings as written; trained as normalised
            let name = o.name.clone().unwrap_or_else(|| auto_name(o, &c));
            let c = c.normalized();
            valid_run_name(&name)
                .map_err(|m| TrainError::Config(format!("{}: run {}: {m}", path.display(), i + 1)))?;
            c.validate().map_err(|e| TrainError::Config(format!("{}: run `{name}`: {e}", path.display())))?;
            if let Some(prev) = names.insert(name.clone(), i) {
                return Err(TrainError::Config(format!(
                    "{}: runs {} and {} are both named `{name}`",
                    path.display(),
                    prev + 1,
                    i + 1
                )));
            }
            runs.push(SweepRun { name, embeddings: base.join(embeddings), config: c });
        }
        Ok(runs)
    }
}

/// A run name is a directory name of the sweep: no separator, not hidden, not empty.
fn valid_run_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) || name == ".." {
        return Err(format!(
            "`{name}` cannot name a run directory (no `/`, not empty, not starting with `.`)"
        ));
    }
    Ok(())
}

impl SweepRun {
    /// Runs sharing this key train in one stack: the same cache and batch settings (epochs,
    /// batch size, learning rate, seed) and split. Fields are separated, so no two settings can
    /// spell the same key.
    pub fn group_key(&self) -> String {
        let t = &self.config.train;
        let s = &self.config.split;
        serde_json::json!([
            self.embeddings,
            t.epochs,
            t.batch_size,
            t.learning_rate,
            t.seed,
            t.min_precision,
            s.val,
            s.test,
            s.salt
        ])
        .to_string()
    }
}

fn expand_grid(g: &Grid) -> Vec<RunOverrides> {
    let mut out = vec![RunOverrides::default()];
    fn axis<T: Clone>(
        out: Vec<RunOverrides>,
        values: &[T],
        set: impl Fn(&mut RunOverrides, T),
    ) -> Vec<RunOverrides> {
        if values.is_empty() {
            return out;
        }
        out.into_iter()
            .flat_map(|o| {
                values
                    .iter()
                    .map(|v| {
                        let mut o = o.clone();
                        set(&mut o, v.clone());
                        o
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
    out = axis(out, &g.embeddings, |o, v| o.embeddings = Some(v));
    out = axis(out, &g.column, |o, v| o.column = Some(v));
    out = axis(out, &g.top_k, |o, v| o.top_k = Some(v));
    out = axis(out, &g.labels, |o, v| o.labels = Some(v));
    out = axis(out, &g.model, |o, v| o.model = Some(v));
    out = axis(out, &g.loss, |o, v| o.loss = Some(v));
    out = axis(out, &g.hidden, |o, v| o.hidden = Some(v));
    out = axis(out, &g.seed, |o, v| o.seed = Some(v));
    axis(out, &g.empty, |o, v| o.empty = Some(v))
}

fn auto_name(o: &RunOverrides, c: &RunConfig) -> String {
    let mut parts = Vec::new();
    if let Some(e) = &o.embeddings {
        parts.push(e.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    }
    parts.push(c.labels.column.clone());
    match (&c.labels.labels, c.labels.top_k) {
        (Some(l), _) => parts.push(format!("{}labels", l.len())),
        (None, Some(k)) => parts.push(format!("top{k}")),
        (None, None) => parts.push("all".into()),
    }
    if o.model.is_some() {
        parts.push(c.model.to_string());
    }
    if o.loss.is_some() {
        parts.push(c.loss.to_string());
    }
    if o.hidden.is_some() {
        parts.push(format!("h{}", c.hidden));
    }
    if o.seed.is_some() {
        parts.push(format!("seed{}", c.seed));
    }
    if o.empty.is_some() {
        parts.push(format!("{:?}", c.labels.empty).to_lowercase());
    }
    parts.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(text: &str) -> Result<Vec<SweepRun>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sweep.toml");
        std::fs::write(&path, text).unwrap();
        SweepFile::load(&path)?.expand(&path)
    }

    #[test]
    fn grids_and_runs_expand_with_names() {
        let runs = expand(
            "embeddings = \"c\"\nlabels = \"l.csv\"\n[grid]\ncolumn = [\"fine\", \"coarse\"]\ntop_k = [10, 20]\n\
             [[run]]\nname = \"maps\"\ncolumn = \"fine\"\nlabels = [\"Maps\"]\n",
        )
        .unwrap();
        let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["fine-top10", "fine-top20", "coarse-top10", "coarse-top20", "maps"]);
        assert_eq!(runs[4].config.labels.labels.as_deref(), Some(&["Maps".to_string()][..]));
    }

    #[test]
    fn bad_runs_are_refused_naming_the_run() {
        let err =
            expand("embeddings = \"c\"\nlabels = \"l.csv\"\n[grid]\ncolumn = [\"fine\"]\nhidden = [0]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("run `fine-all-h0`") && err.contains("hidden = 0"), "{err}");
        let err = expand("embeddings = \"c\"\nlabels = \"l.csv\"\n[[run]]\nname = \"a/b\"\ncolumn = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot name a run directory"), "{err}");
    }

    #[test]
    fn group_keys_keep_settings_apart() {
        let runs = expand(
            "embeddings = \"c\"\nlabels = \"l.csv\"\n[[run]]\nname = \"a\"\ncolumn = \"x\"\n[[run]]\nname = \"b\"\ncolumn = \"x\"\n",
        )
        .unwrap();
        let (mut a, mut b) = (runs[0].clone(), runs[1].clone());
        assert_eq!(a.group_key(), b.group_key());
        // test 0.2 with salt "5x" against test 0.25 with salt "x": concatenated, both were "0.25x"
        a.config.split.test = 0.2;
        a.config.split.salt = "5x".into();
        b.config.split.test = 0.25;
        b.config.split.salt = "x".into();
        assert_ne!(a.group_key(), b.group_key());
    }
}
