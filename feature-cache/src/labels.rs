//! Label tables: `id` plus one or more list-of-string label columns, one per taxonomy
//! (e.g. `fine`, `coarse`, `ores`, `custom`).
//!
//! In Parquet and JSONL a label column holds lists of strings; in CSV/TSV it holds the labels
//! joined by `|` (e.g. `Animals|Nature`). An optional `split` column (train/val/test) overrides the
//! hash split; a `path` column is ignored, so a manifest with labels serves as both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{CacheError, Result};
use crate::split::Split;
use crate::table::{Cell, Table};

/// Separator of labels inside one CSV cell.
pub const CSV_LABEL_SEPARATOR: char = '|';
const NON_LABEL_COLUMNS: [&str; 3] = ["id", "path", "split"];

/// Labels of images, by id, in one or more label columns.
#[derive(Debug, Clone)]
pub struct LabelTable {
    /// The file it was read from.
    pub path: PathBuf,
    /// Ids, in file order.
    pub ids: Vec<String>,
    /// Names of the label columns, in file order.
    pub columns: Vec<String>,
    labels: HashMap<String, Vec<Vec<String>>>,
    /// Label columns whose type holds no labels, with the error to give when one is used.
    unusable: HashMap<String, String>,
    /// Explicit split per row, when the table has a `split` column.
    pub splits: Option<Vec<Option<Split>>>,
    index: HashMap<String, usize>,
}

impl LabelTable {
    /// Reads a label table (`.csv`, `.tsv`, `.jsonl`, `.parquet`).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let table = Table::read(path.as_ref())?;
        let id_col = table.require("id")?;
        let label_cols: Vec<(usize, String)> = table
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !NON_LABEL_COLUMNS.contains(&c.as_str()))
            .map(|(i, c)| (i, c.clone()))
            .collect();
        if label_cols.is_empty() {
            return Err(CacheError::Invalid(format!(
                "{}: no label columns (columns present: {})",
                table.path.display(),
                table.columns.join(", ")
            )));
        }
        let split_col = table.columns.iter().position(|c| c == "split");
        if split_col.is_some() {
            table.check_supported("split")?;
        }
        let unusable: HashMap<String, String> = label_cols
            .iter()
            .filter_map(|(_, c)| Some((c.clone(), table.check_supported(c).err()?.to_string())))
            .collect();
        let mut out = Self {
            path: table.path.clone(),
            ids: Vec::with_capacity(table.rows.len()),
            columns: label_cols.iter().map(|(_, c)| c.clone()).collect(),
            labels: label_cols.iter().map(|(_, c)| (c.clone(), Vec::new())).collect(),
            splits: split_col.map(|_| Vec::new()),
            index: HashMap::with_capacity(table.rows.len()),
            unusable,
        };
        for (row, cells) in &table.rows {
            let id = table.text(*row, "id", &cells[id_col])?.to_string();
            if let Some(first) = out.index.insert(id.clone(), out.ids.len()) {
                let first_row = table.rows[first].0;
                return Err(CacheError::DuplicateId { path: out.path, id, first: first_row, second: *row });
            }
            out.ids.push(id);
            for (col, name) in &label_cols {
                let labels = match &cells[*col] {
                    Cell::Null => Vec::new(),
                    Cell::List(items) => {
                        items.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
                    }
                    Cell::Text(s) => s
                        .split(CSV_LABEL_SEPARATOR)
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                };
                out.labels.get_mut(name).expect("column registered above").push(labels);
            }
            if let (Some(c), Some(splits)) = (split_col, out.splits.as_mut()) {
                let split = match &cells[c] {
                    Cell::Null => None,
                    Cell::Text(s) if s.trim().is_empty() => None,
                    Cell::Text(s) => {
                        Some(s.parse::<Split>().map_err(|m| CacheError::row(&table.path, *row, m))?)
                    }
                    Cell::List(_) => return Err(CacheError::row(&table.path, *row, "`split` is a list")),
                };
                splits.push(split);
            }
        }
        Ok(out)
    }

    /// The label lists of `column`, aligned with [`LabelTable::ids`].
    pub fn column(&self, column: &str) -> Result<&[Vec<String>]> {
        if let Some(message) = self.unusable.get(column) {
            return Err(CacheError::Invalid(message.clone()));
        }
        self.labels.get(column).map(Vec::as_slice).ok_or_else(|| {
            CacheError::column(
                &self.path,
                column,
                format!("no such label column (have: {})", self.columns.join(", ")),
            )
        })
    }

    /// Row of `id`, if labelled.
    pub fn row_of(&self, id: &str) -> Option<usize> {
        self.index.get(id).copied()
    }

    /// Number of labelled images.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
