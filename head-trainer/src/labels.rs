//! Label configurations: which labels a head predicts, built from a label column of a
//! [`LabelTable`], with taxonomy ancestor expansion, top-K / explicit list / min-count selection
//! and a policy for images left without labels.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use feature_cache::LabelTable;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};

/// What happens to an image none of whose labels is selected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmptyPolicy {
    /// Leave it out of training and evaluation (the seed's choice).
    #[default]
    Drop,
    /// Keep it as a negative for every label.
    Negative,
}

impl std::str::FromStr for EmptyPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "drop" => Ok(Self::Drop),
            "negative" => Ok(Self::Negative),
            _ => Err(format!("`{s}` is not an empty-label policy (drop, negative)")),
        }
    }
}

/// How to derive the label set of a head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelConfig {
    /// Label column of the label table, e.g. `fine`, `coarse`, `ores`.
    pub column: String,
    /// Keep the K most frequent labels (by training-split count; ties by name).
    #[serde(default)]
    pub top_k: Option<usize>,
    /// Keep exactly these labels (an unknown one is an error listing close matches).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
    /// Drop labels with fewer training images than this.
    #[serde(default = "one")]
    pub min_count: usize,
    /// Taxonomy file (child -> parents, JSON or TOML): each image also gets all ancestors of its
    /// labels, e.g. Animals -> Nature -> STEM.
    #[serde(default)]
    pub taxonomy: Option<PathBuf>,
    /// Images left with no selected label.
    #[serde(default)]
    pub empty: EmptyPolicy,
}

fn one() -> usize {
    1
}

impl LabelConfig {
    /// A configuration using every label of `column`.
    pub fn all(column: &str) -> Self {
        Self {
            column: column.into(),
            top_k: None,
            labels: None,
            min_count: 1,
            taxonomy: None,
            empty: EmptyPolicy::Drop,
        }
    }
}

/// A taxonomy: label -> its direct parents.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Taxonomy {
    /// Direct parents of each label.
    pub parents: BTreeMap<String, Vec<String>>,
}

impl Taxonomy {
    /// Reads a JSON or TOML map `{ "Animals": ["Nature"], "Nature": ["STEM"] }`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let parents: BTreeMap<String, Vec<String>> = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?
        } else {
            serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?
        };
        let tax = Self { parents };
        tax.check_acyclic(path)?;
        Ok(tax)
    }

    fn check_acyclic(&self, path: &Path) -> Result<()> {
        for start in self.parents.keys() {
            let mut stack = vec![(start.clone(), vec![start.clone()])];
            while let Some((node, trail)) = stack.pop() {
                for p in self.parents.get(&node).into_iter().flatten() {
                    if p == start {
                        return Err(TrainError::Config(format!(
                            "{}: taxonomy cycle {} -> {p}",
                            path.display(),
                            trail.join(" -> ")
                        )));
                    }
                    if trail.len() < 64 {
                        let mut t = trail.clone();
                        t.push(p.clone());
                        stack.push((p.clone(), t));
                    }
                }
            }
        }
        Ok(())
    }

    /// `labels` plus all their ancestors.
    pub fn expand(&self, labels: &[String]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<&str> = labels.iter().map(String::as_str).collect();
        while let Some(l) = stack.pop() {
            if out.insert(l.to_string()) {
                stack.extend(self.parents.get(l).into_iter().flatten().map(String::as_str));
            }
        }
        out
    }
}

/// The labels of a head and each image's targets.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSpace {
    /// Label names, in output order (descending training frequency).
    pub names: Vec<String>,
    /// Training-split count of each label (before selection of images).
    pub train_counts: Vec<usize>,
    /// Per labelled row of the table: the selected label indices, or `None` when the row is
    /// dropped by [`EmptyPolicy::Drop`].
    pub targets: Vec<Option<Vec<u16>>>,
}

impl LabelSpace {
    /// Builds the label space of `cfg` over `table`; `in_train(row)` says which table rows are
    /// in the training split (label frequencies are counted there only).
    pub fn build(table: &LabelTable, cfg: &LabelConfig, in_train: &dyn Fn(usize) -> bool) -> Result<Self> {
        let column = table.column(&cfg.column)?;
        let taxonomy = cfg.taxonomy.as_deref().map(Taxonomy::load).transpose()?;
        let expanded: Vec<BTreeSet<String>> = column
            .iter()
            .map(|labels| match &taxonomy {
                Some(t) => t.expand(labels),
                None => labels.iter().cloned().collect(),
            })
            .collect();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut all: BTreeSet<&str> = BTreeSet::new();
        for (row, labels) in expanded.iter().enumerate() {
            for l in labels {
                all.insert(l);
                if in_train(row) {
                    *counts.entry(l).or_insert(0) += 1;
                }
            }
        }
        let mut names: Vec<String> = match &cfg.labels {
            Some(list) => {
                for l in list {
                    if !all.contains(l.as_str()) {
                        return Err(TrainError::Labels(unknown_label(l, &cfg.column, &all)));
                    }
                }
                list.clone()
            }
            None => all.iter().map(|s| s.to_string()).collect(),
        };
        let count = |n: &str| counts.get(n).copied().unwrap_or(0);
        if cfg.labels.is_some() {
            // an explicit list is kept whole or refused: never shortened behind the user's back
            let short: Vec<String> = names
                .iter()
                .filter(|n| count(n) < cfg.min_count.max(1))
                .map(|n| format!("{n} ({} training images)", count(n)))
                .collect();
            if !short.is_empty() {
                return Err(TrainError::Labels(format!(
                    "column `{}`: {} of the listed labels have fewer than {} training images: {}; \
                     lower min_count or leave them out (a label needs at least one training image)",
                    cfg.column,
                    short.len(),
                    cfg.min_count.max(1),
                    short.join(", ")
                )));
            }
        }
        names.retain(|n| count(n) >= cfg.min_count.max(1));
        names.sort_by(|a, b| counts[b.as_str()].cmp(&counts[a.as_str()]).then(a.cmp(b)));
        if let Some(k) = cfg.top_k {
            names.truncate(k);
        }
        if names.is_empty() {
            return Err(TrainError::Labels(format!(
                "column `{}`: no label has at least {} training images",
                cfg.column, cfg.min_count
            )));
        }
        if names.len() > u16::MAX as usize {
            return Err(TrainError::Labels(format!("{} labels: at most 65535 supported", names.len())));
        }
        let index: HashMap<&str, u16> =
            names.iter().enumerate().map(|(i, n)| (n.as_str(), i as u16)).collect();
        let targets = expanded
            .iter()
            .map(|labels| {
                let mut t: Vec<u16> = labels.iter().filter_map(|l| index.get(l.as_str()).copied()).collect();
                t.sort_unstable();
                match (t.is_empty(), cfg.empty) {
                    (true, EmptyPolicy::Drop) => None,
                    _ => Some(t),
                }
            })
            .collect();
        let train_counts = names.iter().map(|n| counts[n.as_str()]).collect();
        Ok(Self { names, train_counts, targets })
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// "unknown label X in column C; did you mean: A, B?" with the closest existing labels.
pub fn unknown_label(label: &str, column: &str, known: &BTreeSet<&str>) -> String {
    let mut scored: Vec<(f64, &str)> = known
        .iter()
        .map(|k| (strsim::jaro_winkler(&label.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(s, _)| *s > 0.7)
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let close: Vec<&str> = scored.iter().take(5).map(|(_, k)| *k).collect();
    if close.is_empty() {
        format!("unknown label `{label}` in column `{column}` (it has {} labels)", known.len())
    } else {
        format!("unknown label `{label}` in column `{column}`; did you mean: {}?", close.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A label table from CSV text (`id,tags` with `|`-joined labels).
    fn table(rows: &[(&str, &str)]) -> (tempfile::TempDir, LabelTable) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.csv");
        let mut csv = String::from("id,tags\n");
        for (id, tags) in rows {
            csv.push_str(&format!("{id},{tags}\n"));
        }
        std::fs::write(&path, csv).unwrap();
        let t = LabelTable::load(&path).unwrap();
        (dir, t)
    }

    fn taxonomy(pairs: &[(&str, &[&str])]) -> Taxonomy {
        Taxonomy {
            parents: pairs
                .iter()
                .map(|(c, p)| (c.to_string(), p.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn taxonomy_expands_to_every_ancestor_and_refuses_cycles() {
        let t = taxonomy(&[
            ("Cats", &["Animals"]),
            ("Animals", &["Nature"]),
            ("Nature", &["STEM"]),
            ("Maps", &["Places"]),
        ]);
        let got: Vec<String> = t.expand(&["Cats".into(), "Maps".into()]).into_iter().collect();
        assert_eq!(got, ["Animals", "Cats", "Maps", "Nature", "Places", "STEM"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.json");
        std::fs::write(&path, r#"{"A": ["B"], "B": ["C"], "C": ["A"]}"#).unwrap();
        let err = Taxonomy::load(&path).unwrap_err().to_string();
        assert!(err.contains("taxonomy cycle") && err.contains("A -> B -> C -> A"), "{err}");
    }

    #[test]
    fn min_count_top_k_and_the_empty_policies() {
        let (_d, t) = table(&[("1", "a|b"), ("2", "a"), ("3", "a|c"), ("4", "b"), ("5", "")]);
        let all = |_: usize| true;
        let mut cfg = LabelConfig::all("tags");
        cfg.min_count = 2;
        let s = LabelSpace::build(&t, &cfg, &all).unwrap();
        assert_eq!((s.names.clone(), s.train_counts.clone()), (vec!["a".into(), "b".into()], vec![3, 2]));
        // row 5 has no label, row 3 keeps only `a`
        assert_eq!(s.targets, [Some(vec![0, 1]), Some(vec![0]), Some(vec![0]), Some(vec![1]), None]);
        cfg.empty = EmptyPolicy::Negative;
        assert_eq!(LabelSpace::build(&t, &cfg, &all).unwrap().targets[4], Some(vec![]));
        cfg.min_count = 1;
        cfg.top_k = Some(1);
        assert_eq!(LabelSpace::build(&t, &cfg, &all).unwrap().names, ["a"]);
        // counts come from the training rows only
        let first_two = |row: usize| row < 2;
        cfg.top_k = None;
        assert_eq!(LabelSpace::build(&t, &cfg, &first_two).unwrap().names, ["a", "b"]);
    }

    #[test]
    fn an_explicit_list_is_kept_whole_or_refused() {
        let (_d, t) = table(&[("1", "a|b"), ("2", "a"), ("3", "c")]);
        let mut cfg = LabelConfig::all("tags");
        cfg.labels = Some(vec!["b".into(), "a".into()]);
        assert_eq!(LabelSpace::build(&t, &cfg, &|_| true).unwrap().names, ["a", "b"]);
        cfg.min_count = 2;
        let err = LabelSpace::build(&t, &cfg, &|_| true).unwrap_err().to_string();
        assert!(err.contains("b (1 training images)") && err.contains("lower min_count"), "{err}");
        // `c` exists but has no training image here
        cfg.min_count = 1;
        cfg.labels = Some(vec!["a".into(), "c".into()]);
        let err = LabelSpace::build(&t, &cfg, &|row| row < 2).unwrap_err().to_string();
        assert!(err.contains("c (0 training images)"), "{err}");
        cfg.labels = Some(vec!["cats".into()]);
        let err = LabelSpace::build(&t, &cfg, &|_| true).unwrap_err().to_string();
        assert!(err.contains("unknown label `cats`"), "{err}");
    }
}
