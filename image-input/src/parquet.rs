//! Parquet shards that hold image bytes: WIT as Wikimedia Research releases it (a Hugging Face
//! `datasets` Image column, `struct<bytes: binary, path: string>`, marked in the file's
//! `huggingface` schema metadata), img2dataset's Parquet output (a binary `jpg` column), or any
//! binary column.
//!
//! The image column is the one named by `--image-column`, else the first found of: a column the
//! `huggingface` metadata declares an `Image` (one named `image` if there are several), a struct
//! with a binary `bytes` field, a binary column named `jpg`, `png`, `webp`, `image`, `jpeg`. The
//! id column is `--id-column`, else the first of `image_url`, `key`, `url`, `id` present, else
//! none: the id is then `<shard>:<row>` (the shard's path under the input's folder, the row
//! 0-based in the file). Shards are read one row group at a time, projected to the image column
//! and in batches of [`BATCH_ROWS`] rows, so a 2 GB shard is never in memory whole.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Schema};
use feature_cache::arrow_text::{string_type, strings};
use feature_cache::{Origin, Progress, Shard};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::arrow::ProjectionMask;

use crate::catalog::{extension_of, CatalogEntry, Locator, Rejected};
use crate::decode::{FailureKind, ImageFailure};
use crate::error::{InputError, Result};
use crate::files::Listed;

/// Rows decoded at a time: bounds the memory a shard's reader holds.
pub const BATCH_ROWS: usize = 64;
/// Columns tried, in order, for the id.
pub const ID_COLUMNS: [&str; 4] = ["image_url", "key", "url", "id"];
/// Binary columns tried, in order, for the image.
pub const BINARY_IMAGE_COLUMNS: [&str; 5] = ["jpg", "png", "webp", "image", "jpeg"];

/// What the image column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImageKind {
    /// `struct<bytes: binary, path: string>` (fields by index).
    Struct { bytes: usize, path: Option<usize> },
    /// Binary.
    Binary,
}

/// The image column of a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageColumn {
    pub name: String,
    pub root: usize,
    pub kind: ImageKind,
}

/// One Parquet shard of an input.
#[derive(Debug)]
pub(crate) struct ParquetShard {
    pub path: PathBuf,
    pub image: ImageColumn,
    /// First row and row count of each row group.
    pub groups: Vec<(u64, usize)>,
}

/// Column choices of a Parquet input.
#[derive(Debug, Clone, Default)]
pub struct ParquetOptions {
    /// The image column (default: detected).
    pub image_column: Option<String>,
    /// The id column (default: `image_url`, `key`, `url`, `id`, else `<shard>:<row>`).
    pub id_column: Option<String>,
}

fn binary_type(t: &DataType) -> bool {
    matches!(t, DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
}

/// The image column's kind if `t` can hold image bytes.
fn image_kind(t: &DataType) -> Option<ImageKind> {
    match t {
        t if binary_type(t) => Some(ImageKind::Binary),
        DataType::Struct(fields) => {
            let bytes = fields.iter().position(|f| f.name() == "bytes" && binary_type(f.data_type()))?;
            let path = fields.iter().position(|f| f.name() == "path" && string_type(f.data_type()));
            Some(ImageKind::Struct { bytes, path })
        }
        _ => None,
    }
}

/// Columns the file's `huggingface` metadata declares `Image` features.
fn hf_image_features(schema: &Schema) -> Vec<String> {
    let Some(json) = schema.metadata().get("huggingface") else { return Vec::new() };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else { return Vec::new() };
    let Some(features) = value.pointer("/info/features").and_then(|f| f.as_object()) else {
        return Vec::new();
    };
    features
        .iter()
        .filter(|(_, f)| f.get("_type").and_then(|t| t.as_str()) == Some("Image"))
        .map(|(name, _)| name.clone())
        .collect()
}

fn describe_columns(schema: &Schema) -> String {
    schema.fields().iter().map(|f| format!("{} ({})", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
}

/// The image column of a shard with `schema`, and why it was chosen.
pub(crate) fn image_column(
    path: &Path,
    schema: &Schema,
    explicit: Option<&str>,
) -> Result<(ImageColumn, String)> {
    let column = |name: &str, why: String| -> Result<(ImageColumn, String)> {
        let root = schema.index_of(name).map_err(|_| {
            InputError::column(path, name, format!("missing (columns present: {})", describe_columns(schema)))
        })?;
        let t = schema.field(root).data_type();
        let kind = image_kind(t).ok_or_else(|| {
            InputError::column(
                path,
                name,
                format!(
                    "type {t} holds no image bytes: expected binary or struct<bytes: binary, path: string>"
                ),
            )
        })?;
        Ok((ImageColumn { name: name.to_string(), root, kind }, why))
    };
    if let Some(name) = explicit {
        return column(name, "--image-column".into());
    }
    let pick = |candidates: Vec<String>, what: &str| -> Result<Option<(ImageColumn, String)>> {
        match candidates.as_slice() {
            [] => Ok(None),
            [one] => column(one, what.to_string()).map(Some),
            many if many.iter().any(|c| c == "image") => column("image", what.to_string()).map(Some),
            many => Err(InputError::Usage(format!(
                "{}: several image columns ({}): choose one with --image-column",
                path.display(),
                many.join(", ")
            ))),
        }
    };
    if let Some(found) = pick(hf_image_features(schema), "a Hugging Face datasets Image feature")? {
        return Ok(found);
    }
    let structs: Vec<String> = schema
        .fields()
        .iter()
        .filter(|f| matches!(image_kind(f.data_type()), Some(ImageKind::Struct { .. })))
        .map(|f| f.name().clone())
        .collect();
    if let Some(found) = pick(structs, "a struct with a binary `bytes` field")? {
        return Ok(found);
    }
    for name in BINARY_IMAGE_COLUMNS {
        if schema.field_with_name(name).is_ok_and(|f| binary_type(f.data_type())) {
            return column(name, format!("a binary column named `{name}`"));
        }
    }
    Err(InputError::Usage(format!(
        "{}: no column of image bytes found (columns: {}); name it with --image-column",
        path.display(),
        describe_columns(schema)
    )))
}

/// The id column of a shard with `schema` (`None`: ids are `<shard>:<row>`).
pub(crate) fn id_column(path: &Path, schema: &Schema, explicit: Option<&str>) -> Result<Option<String>> {
    let name = match explicit {
        Some(n) => {
            if schema.index_of(n).is_err() {
                return Err(InputError::column(
                    path,
                    n,
                    format!("missing (columns present: {})", describe_columns(schema)),
                ));
            }
            n.to_string()
        }
        None => match ID_COLUMNS.iter().find(|c| schema.index_of(c).is_ok()) {
            Some(c) => c.to_string(),
            None => return Ok(None),
        },
    };
    let t = schema.field_with_name(&name).expect("checked above").data_type();
    if !string_type(t) {
        return Err(InputError::column(
            path,
            &name,
            format!(
                "type {t} cannot be an id: expected strings or integers (choose another with --id-column)"
            ),
        ));
    }
    Ok(Some(name))
}

fn builder(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|e| InputError::io(path, e))?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| InputError::parquet(path, e))
}

/// Lists the images of `files` (in order) that belong to `shard`: row groups are dealt out to
/// shards in turn over all files, so each process reads only its own groups.
pub(crate) fn catalog(
    files: &[PathBuf],
    base: &Path,
    opts: &ParquetOptions,
    shard: Shard,
    progress: &dyn Progress,
) -> Result<(Vec<ParquetShard>, Listed, Vec<String>)> {
    let mut shards = Vec::new();
    let mut listed = Listed { entries: Vec::new(), rejected: Vec::new() };
    let mut notes = Vec::new();
    let mut position = 0usize;
    progress.start("listing Parquet shards", files.len() as u64, "files");
    for path in files {
        let b = builder(path)?;
        let schema = b.schema().clone();
        let (image, why) = image_column(path, &schema, opts.image_column.as_deref())?;
        let ids = id_column(path, &schema, opts.id_column.as_deref())?;
        if shards.is_empty() {
            notes.push(format!(
                "Parquet shards: images from column `{}` ({why}), ids from {}",
                image.name,
                ids.as_ref()
                    .map_or("`<shard>:<row>` (no id column)".to_string(), |c| format!("column `{c}`"))
            ));
        }
        let mut groups = Vec::new();
        let mut first = 0u64;
        for g in b.metadata().row_groups() {
            groups.push((first, g.num_rows() as usize));
            first += g.num_rows() as u64;
        }
        let mine: Vec<usize> = (0..groups.len()).filter(|g| shard.takes_position(position + g)).collect();
        position += groups.len();
        let index = shards.len();
        let name = path.strip_prefix(base).unwrap_or(path).to_string_lossy().replace('\\', "/");
        if !mine.is_empty() {
            let id_values = match &ids {
                Some(col) => Some(read_ids(path, &schema, col, &mine)?),
                None => None,
            };
            let mut values = id_values.into_iter().flatten();
            for &g in &mine {
                let (first_row, rows) = groups[g];
                for row in first_row..first_row + rows as u64 {
                    let origin = Origin::ParquetRow { shard: path.clone(), row };
                    let fallback = format!("{name}:{row}");
                    match (&ids, values.next()) {
                        (None, _) => listed.entries.push(entry(fallback, origin, index, g)),
                        (Some(_), Some(Some(id))) if !id.is_empty() => {
                            listed.entries.push(entry(id, origin, index, g))
                        }
                        (Some(col), _) => listed.rejected.push(Rejected {
                            id: fallback,
                            origin: Some(origin),
                            failure: ImageFailure::new(
                                FailureKind::BadName,
                                format!("id column `{col}` is null or empty"),
                            ),
                        }),
                    }
                }
            }
        }
        shards.push(ParquetShard { path: path.clone(), image, groups });
        progress.advance(1);
    }
    Ok((shards, listed, notes))
}

fn entry(id: String, origin: Origin, shard: usize, group: usize) -> CatalogEntry {
    let extension = extension_of(&id).filter(|e| e.len() <= 5);
    CatalogEntry { id, origin, extension, locator: Locator::ParquetRow { shard, group } }
}

/// The id column's values in row groups `groups`.
fn read_ids(path: &Path, schema: &Schema, column: &str, groups: &[usize]) -> Result<Vec<Option<String>>> {
    let b = builder(path)?;
    let root = schema.index_of(column).expect("checked by id_column");
    let mask = ProjectionMask::roots(b.parquet_schema(), [root]);
    let reader = b
        .with_projection(mask)
        .with_row_groups(groups.to_vec())
        .build()
        .map_err(|e| InputError::parquet(path, e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| InputError::parquet(path, format!("column `{column}`: {e}")))?;
        let values = strings(batch.column(0).as_ref()).ok_or_else(|| {
            InputError::column(path, column, format!("type {} cannot be an id", batch.column(0).data_type()))
        })?;
        out.extend(values);
    }
    Ok(out)
}

/// Reads the image bytes of `block` (entries of row group `group` of `shard`, in row order) and
/// gives each, with the extension of its recorded path if any, to `f` until it returns `false`.
pub(crate) fn stream_rows(
    shard: &ParquetShard,
    group: usize,
    block: &[CatalogEntry],
    f: &mut dyn FnMut(std::result::Result<Vec<u8>, ImageFailure>, Option<String>) -> bool,
) -> Result<()> {
    let path = &shard.path;
    let (first_row, rows) = shard.groups[group];
    let wanted: Vec<usize> = block
        .iter()
        .map(|e| match e.origin {
            Origin::ParquetRow { row, .. } => (row - first_row) as usize,
            _ => unreachable!("Parquet locators have Parquet origins"),
        })
        .collect();
    let mut selectors = Vec::new();
    let mut at = 0;
    for &r in &wanted {
        if r > at {
            selectors.push(RowSelector::skip(r - at));
        }
        selectors.push(RowSelector::select(1));
        at = r + 1;
    }
    if at < rows {
        selectors.push(RowSelector::skip(rows - at));
    }
    let b = builder(path)?;
    let mask = ProjectionMask::roots(b.parquet_schema(), [shard.image.root]);
    let where_ = || {
        format!(
            "row group {group} (rows {first_row}..{}), column `{}`",
            first_row + rows as u64,
            shard.image.name
        )
    };
    let reader = b
        .with_projection(mask)
        .with_row_groups(vec![group])
        .with_row_selection(RowSelection::from(selectors))
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| InputError::parquet(path, format!("{}: {e}", where_())))?;
    let mut given = 0;
    for batch in reader {
        let batch = batch.map_err(|e| InputError::parquet(path, format!("{}: {e}", where_())))?;
        let col = batch.column(0);
        for i in 0..batch.num_rows() {
            let (bytes, ext) = cell(col, &shard.image.kind, i);
            given += 1;
            if !f(bytes, ext) {
                return Ok(());
            }
        }
    }
    if given != wanted.len() {
        return Err(InputError::parquet(
            path,
            format!("{}: {} of {} requested rows were read", where_(), given, wanted.len()),
        ));
    }
    Ok(())
}

/// The bytes of row `i` of an image column, and the extension of its recorded path.
fn cell(
    col: &ArrayRef,
    kind: &ImageKind,
    i: usize,
) -> (std::result::Result<Vec<u8>, ImageFailure>, Option<String>) {
    let missing = |why: String| Err(ImageFailure::new(FailureKind::Missing, why));
    match kind {
        ImageKind::Binary => match binary_value(col.as_ref(), i) {
            Some(b) => (Ok(b), None),
            None => (missing("the image cell is null".into()), None),
        },
        ImageKind::Struct { bytes, path } => {
            let s = col.as_struct();
            if s.is_null(i) {
                return (missing("the image is null".into()), None);
            }
            let recorded = path.and_then(|p| strings(s.column(p).slice(i, 1).as_ref())?.pop().flatten());
            let ext = recorded.as_deref().and_then(extension_of);
            match binary_value(s.column(*bytes).as_ref(), i) {
                Some(b) => (Ok(b), ext),
                None => {
                    let why = match recorded {
                        Some(p) => format!("the row holds no image bytes, only the path `{p}` (not read)"),
                        None => "the image's bytes are null".into(),
                    };
                    (missing(why), ext)
                }
            }
        }
    }
}

/// Value `i` of a binary-like array, `None` when null.
fn binary_value(a: &dyn Array, i: usize) -> Option<Vec<u8>> {
    if a.is_null(i) {
        return None;
    }
    if let Some(b) = a.as_binary_opt::<i32>() {
        return Some(b.value(i).to_vec());
    }
    if let Some(b) = a.as_binary_opt::<i64>() {
        return Some(b.value(i).to_vec());
    }
    a.as_binary_view_opt().map(|b| b.value(i).to_vec())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow_schema::{Field, Fields};

    use super::*;

    fn hf_struct() -> DataType {
        DataType::Struct(Fields::from(vec![
            Field::new("bytes", DataType::Binary, true),
            Field::new("path", DataType::Utf8, true),
        ]))
    }

    #[test]
    fn the_image_column_is_detected_as_documented() {
        let p = Path::new("s.parquet");
        // WIT: the huggingface metadata names it
        let wit = Schema::new(vec![
            Field::new("image", hf_struct(), true),
            Field::new("image_url", DataType::Utf8, true),
            Field::new("embedding", DataType::List(Arc::new(Field::new("item", DataType::Float32, true))), true),
        ])
        .with_metadata(HashMap::from([(
            "huggingface".to_string(),
            r#"{"info": {"features": {"image": {"_type": "Image"}, "image_url": {"dtype": "string", "_type": "Value"}}}}"#
                .to_string(),
        )]));
        let (c, why) = image_column(p, &wit, None).unwrap();
        assert_eq!(
            (c.name.as_str(), c.kind, why.contains("Hugging Face")),
            ("image", ImageKind::Struct { bytes: 0, path: Some(1) }, true)
        );
        assert_eq!(id_column(p, &wit, None).unwrap().as_deref(), Some("image_url"));
        // img2dataset: key + jpg
        let i2d = Schema::new(vec![
            Field::new("key", DataType::Utf8, true),
            Field::new("url", DataType::Utf8, true),
            Field::new("jpg", DataType::Binary, true),
        ]);
        assert_eq!(image_column(p, &i2d, None).unwrap().0.name, "jpg");
        assert_eq!(id_column(p, &i2d, None).unwrap().as_deref(), Some("key"));
        // nothing usable: an error naming the columns and their types
        let none = Schema::new(vec![Field::new("caption", DataType::Utf8, true)]);
        let err = image_column(p, &none, None).unwrap_err().to_string();
        assert!(err.contains("no column of image bytes") && err.contains("caption (Utf8)"), "{err}");
        assert_eq!(id_column(p, &none, None).unwrap(), None);
        // an explicit column of the wrong type is named with its type
        let err = image_column(p, &i2d, Some("url")).unwrap_err().to_string();
        assert!(err.contains("column `url`: type Utf8 holds no image bytes"), "{err}");
        let floats = Schema::new(vec![Field::new("id", DataType::Float64, true)]);
        let err = id_column(p, &floats, None).unwrap_err().to_string();
        assert!(err.contains("column `id`: type Float64 cannot be an id"), "{err}");
    }
}
