//! Reading small tables (manifests, label tables) from CSV, JSONL or Parquet into rows of cells.
//!
//! Parquet tables come from every tool users have, and each picks its own Arrow representation
//! of the same strings: pyarrow Utf8, polars LargeUtf8 or Utf8View and LargeList, pandas
//! categoricals as Dictionary, DuckDB and Spark List. All of them are read: a cell is a string
//! (Utf8, LargeUtf8, Utf8View, a Dictionary of those, or an integer in decimal), a list of such
//! strings (List, LargeList, ListView, LargeListView, FixedSizeList), or null. A column of any
//! other type is not guessed at: using it is an error naming the column and its type.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch, RecordBatchReader};
use arrow_schema::DataType;
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
    /// Columns of a type no cell can hold, with that type: their cells are all `Null`, and
    /// [`Table::require`] or [`Table::check_supported`] refuses them.
    pub unsupported: HashMap<String, DataType>,
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

    /// Index of a required column (of a supported type), or an error listing the columns present.
    pub fn require(&self, name: &str) -> Result<usize> {
        let i = self.columns.iter().position(|c| c == name).ok_or_else(|| {
            CacheError::column(
                &self.path,
                name,
                format!("missing (columns present: {})", self.columns.join(", ")),
            )
        })?;
        self.check_supported(name)?;
        Ok(i)
    }

    /// An error naming the column and its type if its cells could not be read.
    pub fn check_supported(&self, name: &str) -> Result<()> {
        match self.unsupported.get(name) {
            None => Ok(()),
            Some(t) => Err(CacheError::column(
                &self.path,
                name,
                format!("type {t} is not supported here: expected strings (or integers) or lists of strings"),
            )),
        }
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
    Ok(Table { path: path.to_path_buf(), columns, unsupported: HashMap::new(), rows })
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
    Ok(Table { path: path.to_path_buf(), columns, unsupported: HashMap::new(), rows })
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
    let schema = reader.schema();
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let unsupported: HashMap<String, DataType> = schema
        .fields()
        .iter()
        .filter(|f| !cell_type_supported(f.data_type()))
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| CacheError::parquet(path, e))?;
        let base = rows.len();
        let decoded = (0..batch.num_columns()).map(|c| column_cells(&batch, c)).collect::<Vec<_>>();
        for r in 0..batch.num_rows() {
            rows.push((base + r + 1, decoded.iter().map(|col| col[r].clone()).collect()));
        }
    }
    Ok(Table { path: path.to_path_buf(), columns, unsupported, rows })
}

/// Whether values of `t` are strings for [`strings`]: the string types, integers, or a
/// dictionary of those.
pub fn string_type(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => true,
        t if t.is_integer() => true,
        DataType::Dictionary(_, values) => string_type(values),
        _ => false,
    }
}

/// Whether a column of type `t` has cells: strings, or lists of strings.
fn cell_type_supported(t: &DataType) -> bool {
    match t {
        DataType::List(item)
        | DataType::LargeList(item)
        | DataType::ListView(item)
        | DataType::LargeListView(item)
        | DataType::FixedSizeList(item, _) => string_type(item.data_type()),
        t => string_type(t),
    }
}

/// The cells of column `c` of `batch` (all `Null` for an unsupported type).
fn column_cells(batch: &RecordBatch, c: usize) -> Vec<Cell> {
    let col = batch.column(c);
    if let Some(values) = strings(col.as_ref()) {
        return values.into_iter().map(|v| v.map_or(Cell::Null, Cell::Text)).collect();
    }
    match list_values(col) {
        Some(lists) => lists
            .into_iter()
            .map(|l| match l.and_then(|items| strings(items.as_ref())) {
                Some(items) => Cell::List(items.into_iter().flatten().collect()),
                None => Cell::Null,
            })
            .collect(),
        None => vec![Cell::Null; col.len()],
    }
}

/// The values of a string-like array as strings: Utf8, LargeUtf8, Utf8View, integers (in
/// decimal), a Dictionary of those, or Null; `None` for any other type.
pub fn strings(a: &dyn Array) -> Option<Vec<Option<String>>> {
    fn collect<'a>(it: impl Iterator<Item = Option<&'a str>>) -> Vec<Option<String>> {
        it.map(|v| v.map(str::to_string)).collect()
    }
    macro_rules! integers {
        ($($t:ty),+) => {
            $(if let Some(v) = a.as_primitive_opt::<$t>() {
                return Some(v.iter().map(|x| x.map(|x| x.to_string())).collect());
            })+
        };
    }
    if let Some(s) = a.as_string_opt::<i32>() {
        return Some(collect(s.iter()));
    }
    if let Some(s) = a.as_string_opt::<i64>() {
        return Some(collect(s.iter()));
    }
    if let Some(s) = a.as_string_view_opt() {
        return Some(collect(s.iter()));
    }
    integers!(Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type);
    if let Some(d) = a.as_any_dictionary_opt() {
        let values = strings(d.values().as_ref())?;
        let keys = d.normalized_keys();
        return Some(
            (0..a.len())
                .map(|i| if a.is_null(i) { None } else { values.get(keys[i]).cloned().flatten() })
                .collect(),
        );
    }
    if *a.data_type() == DataType::Null {
        return Some(vec![None; a.len()]);
    }
    None
}

/// The items of each row of a list-like array (`None` for another type).
fn list_values(a: &ArrayRef) -> Option<Vec<Option<ArrayRef>>> {
    let rows = |value: &dyn Fn(usize) -> ArrayRef| -> Vec<Option<ArrayRef>> {
        (0..a.len()).map(|i| (!a.is_null(i)).then(|| value(i))).collect()
    };
    if let Some(l) = a.as_list_opt::<i32>() {
        return Some(rows(&|i| l.value(i)));
    }
    if let Some(l) = a.as_list_opt::<i64>() {
        return Some(rows(&|i| l.value(i)));
    }
    if let Some(l) = a.as_list_view_opt::<i32>() {
        return Some(rows(&|i| l.value(i)));
    }
    if let Some(l) = a.as_list_view_opt::<i64>() {
        return Some(rows(&|i| l.value(i)));
    }
    if let Some(l) = a.as_fixed_size_list_opt() {
        return Some(rows(&|i| l.value(i)));
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{LargeListBuilder, LargeStringBuilder, ListBuilder, StringDictionaryBuilder};
    use arrow_array::types::Int8Type;
    use arrow_array::{Float64Array, LargeStringArray, StringArray, StringViewArray, UInt64Array};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn cells(a: ArrayRef) -> Vec<Cell> {
        let schema = Arc::new(Schema::new(vec![Field::new("c", a.data_type().clone(), true)]));
        column_cells(&RecordBatch::try_new(schema, vec![a]).unwrap(), 0)
    }

    fn text(s: &str) -> Cell {
        Cell::Text(s.into())
    }

    #[test]
    fn every_string_representation_reads_the_same() {
        let expected = vec![text("Maps"), Cell::Null, text("Flags")];
        let mut dict = StringDictionaryBuilder::<Int8Type>::new();
        dict.append_value("Maps");
        dict.append_null();
        dict.append_value("Flags");
        for a in [
            Arc::new(StringArray::from(vec![Some("Maps"), None, Some("Flags")])) as ArrayRef,
            Arc::new(LargeStringArray::from(vec![Some("Maps"), None, Some("Flags")])),
            Arc::new(StringViewArray::from(vec![Some("Maps"), None, Some("Flags")])),
            Arc::new(dict.finish()),
        ] {
            let t = a.data_type().clone();
            assert!(cell_type_supported(&t), "{t}");
            assert_eq!(cells(a), expected, "{t}");
        }
        assert_eq!(cells(Arc::new(UInt64Array::from(vec![7, 42]))), [text("7"), text("42")]);
    }

    #[test]
    fn every_list_representation_reads_the_same() {
        let expected =
            vec![Cell::List(vec!["Animals".into(), "Nature".into()]), Cell::Null, Cell::List(vec![])];
        let mut list = ListBuilder::new(arrow_array::builder::StringBuilder::new());
        let mut large = LargeListBuilder::new(LargeStringBuilder::new());
        for row in [Some(vec!["Animals", "Nature"]), None, Some(vec![])] {
            match row {
                Some(items) => {
                    for s in &items {
                        list.values().append_value(s);
                        large.values().append_value(s);
                    }
                    list.append(true);
                    large.append(true);
                }
                None => {
                    list.append(false);
                    large.append(false);
                }
            }
        }
        let list = Arc::new(list.finish()) as ArrayRef;
        let large = Arc::new(large.finish()) as ArrayRef;
        let view: ArrayRef = Arc::new(arrow_array::ListViewArray::from(list.as_list::<i32>().clone()));
        for a in [list, large, view] {
            let t = a.data_type().clone();
            assert!(cell_type_supported(&t), "{t}");
            assert_eq!(cells(a), expected, "{t}");
        }
    }

    #[test]
    fn other_types_are_unsupported_not_empty() {
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![0.5]));
        assert!(!cell_type_supported(floats.data_type()));
        let table = Table {
            path: "t.parquet".into(),
            columns: vec!["id".into(), "score".into()],
            unsupported: [("score".to_string(), DataType::Float64)].into(),
            rows: vec![],
        };
        let err = table.require("score").unwrap_err().to_string();
        assert!(err.contains("t.parquet: column `score`: type Float64 is not supported"), "{err}");
        assert!(table.check_supported("id").is_ok());
    }
}
