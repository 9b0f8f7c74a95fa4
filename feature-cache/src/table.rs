//! Reading small tables (manifests, label tables) from CSV, JSONL or Parquet into rows of cells.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use arrow_array::{Array, LargeStringArray, ListArray, RecordBatch, RecordBatchReader, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{CacheError, Result};

/// One cell: a string, a list of strings, or nothing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Null,
    Text(String),
    List(Vec<String>),
}

/// Rows of named cells, with each row's 1-based number in the file.
pub(crate) struct Table {
    pub path: PathBuf,
    pub columns: Vec<String>,
    pub rows: Vec<(usize, Vec<Cell>)>,
}

impl Table {
    /// Reads `path` by its extension: `.csv`, `.tsv`, `.jsonl`/`.ndjson`, `.parquet`.
    pub fn read(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "csv" => read_csv(path, b','),
            "tsv" => read_csv(path, b'\t'),
            "jsonl" | "ndjson" => read_jsonl(path),
            "parquet" => read_parquet(path),
            _ => Err(CacheError::Invalid(format!(
                "{}: unknown table format `.{ext}` (use .csv, .tsv, .jsonl or .parquet)",
                path.display()
            ))),
        }
    }

    /// Index of a required column, or an error listing the columns present.
    pub fn require(&self, name: &str) -> Result<usize> {
        self.columns.iter().position(|c| c == name).ok_or_else(|| {
            CacheError::column(
                &self.path,
                name,
                format!("missing (columns present: {})", self.columns.join(", ")),
            )
        })
    }

    /// The non-empty string in `cell`, or an error naming row and column.
    pub fn text<'a>(&self, row: usize, column: &str, cell: &'a Cell) -> Result<&'a str> {
        match cell {
            Cell::Text(s) if !s.is_empty() => Ok(s),
            Cell::Text(_) | Cell::Null => {
                Err(CacheError::row(&self.path, row, format!("`{column}` is empty")))
            }
            Cell::List(_) => {
                Err(CacheError::row(&self.path, row, format!("`{column}` is a list, expected a string")))
            }
        }
    }
}

fn read_csv(path: &Path, delimiter: u8) -> Result<Table> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(false)
        .from_path(path)
        .map_err(|e| csv_error(path, e))?;
    let columns: Vec<String> =
        reader.headers().map_err(|e| csv_error(path, e))?.iter().map(|h| h.trim().to_string()).collect();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| match e.position() {
            Some(p) => CacheError::row(path, p.line().saturating_sub(1) as usize, e.to_string()),
            None => csv_error(path, e),
        })?;
        rows.push((i + 1, record.iter().map(|v| Cell::Text(v.to_string())).collect()));
    }
    Ok(Table { path: path.to_path_buf(), columns, rows })
}

fn csv_error(path: &Path, e: csv::Error) -> CacheError {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => CacheError::io(path, io),
        other => CacheError::parquet(path, format!("{other:?}")),
    }
}

fn read_jsonl(path: &Path) -> Result<Table> {
    let file = File::open(path).map_err(|e| CacheError::io(path, e))?;
    let mut columns: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| CacheError::row(path, i + 1, e.to_string()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| CacheError::row(path, i + 1, format!("invalid JSON: {e}")))?;
        let serde_json::Value::Object(obj) = value else {
            return Err(CacheError::row(path, i + 1, "not a JSON object"));
        };
        let mut cells = vec![Cell::Null; columns.len()];
        for (key, v) in obj {
            let col = *index.entry(key.clone()).or_insert_with(|| {
                columns.push(key.clone());
                columns.len() - 1
            });
            if cells.len() <= col {
                cells.resize(col + 1, Cell::Null);
            }
            cells[col] = json_cell(&v).map_err(|m| CacheError::row(path, i + 1, format!("`{key}`: {m}")))?;
        }
        rows.push((i + 1, cells));
    }
    for (_, cells) in &mut rows {
        cells.resize(columns.len(), Cell::Null);
    }
    Ok(Table { path: path.to_path_buf(), columns, rows })
}

fn json_cell(v: &serde_json::Value) -> std::result::Result<Cell, String> {
    use serde_json::Value;
    Ok(match v {
        Value::Null => Cell::Null,
        Value::String(s) => Cell::Text(s.clone()),
        Value::Number(n) => Cell::Text(n.to_string()),
        Value::Bool(b) => Cell::Text(b.to_string()),
        Value::Array(items) => Cell::List(
            items
                .iter()
                .map(|x| {
                    x.as_str().map(str::to_string).ok_or_else(|| format!("list item {x} is not a string"))
                })
                .collect::<std::result::Result<_, _>>()?,
        ),
        Value::Object(_) => return Err("nested objects are not supported".into()),
    })
}

fn read_parquet(path: &Path) -> Result<Table> {
    let file = File::open(path).map_err(|e| CacheError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| CacheError::parquet(path, e))?;
    let columns: Vec<String> = reader.schema().fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| CacheError::parquet(path, e))?;
        let base = rows.len();
        let decoded =
            (0..batch.num_columns()).map(|c| column_cells(path, &batch, c)).collect::<Result<Vec<_>>>()?;
        for r in 0..batch.num_rows() {
            rows.push((base + r + 1, decoded.iter().map(|col| col[r].clone()).collect()));
        }
    }
    Ok(Table { path: path.to_path_buf(), columns, rows })
}

fn column_cells(path: &Path, batch: &RecordBatch, c: usize) -> Result<Vec<Cell>> {
    let col = batch.column(c);
    let name = batch.schema().field(c).name().clone();
    let strings = |a: &dyn Array| -> Option<Vec<Option<String>>> {
        if let Some(s) = a.as_any().downcast_ref::<StringArray>() {
            Some(s.iter().map(|v| v.map(str::to_string)).collect())
        } else {
            a.as_any()
                .downcast_ref::<LargeStringArray>()
                .map(|s| s.iter().map(|v| v.map(str::to_string)).collect())
        }
    };
    if let Some(values) = strings(col.as_ref()) {
        return Ok(values.into_iter().map(|v| v.map_or(Cell::Null, Cell::Text)).collect());
    }
    if let Some(list) = col.as_any().downcast_ref::<ListArray>() {
        let mut out = Vec::with_capacity(list.len());
        for i in 0..list.len() {
            if list.is_null(i) {
                out.push(Cell::Null);
                continue;
            }
            let items = strings(list.value(i).as_ref())
                .ok_or_else(|| CacheError::column(path, &name, "list items are not strings"))?;
            out.push(Cell::List(items.into_iter().flatten().collect()));
        }
        return Ok(out);
    }
    // Other types (numbers, booleans): their display form.
    let formatter = arrow_cast_display(col.as_ref());
    Ok((0..col.len()).map(|i| if col.is_null(i) { Cell::Null } else { Cell::Text(formatter(i)) }).collect())
}

fn arrow_cast_display(a: &dyn Array) -> impl Fn(usize) -> String + '_ {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type, UInt32Type};
    move |i| {
        if let Some(v) = a.as_primitive_opt::<Int64Type>() {
            v.value(i).to_string()
        } else if let Some(v) = a.as_primitive_opt::<Int32Type>() {
            v.value(i).to_string()
        } else if let Some(v) = a.as_primitive_opt::<UInt32Type>() {
            v.value(i).to_string()
        } else if let Some(v) = a.as_boolean_opt() {
            v.value(i).to_string()
        } else {
            String::new()
        }
    }
}
