//! Where images ship and how their bytes become pixels — for the extractor, and for reports that
//! show images again. Never links ONNX Runtime.
//!
//! Every input kind is read through one abstraction: [`Catalog::open`] lists an input's images
//! (id and [`feature_cache::Origin`], without reading their bytes), and [`Catalog::stream`]
//! yields each as a [`SourceImage`] — id, origin, bytes. [`decode::decode_bytes`] then turns
//! bytes into RGB, never knowing where they came from.
//!
//! | input | images | id |
//! |---|---|---|
//! | a directory of images | every regular file below it ([`files`]) | path relative to it |
//! | a manifest table (`.csv`, `.tsv`, `.jsonl`, `.parquet` with `id`, `path`) | its rows | `id` |
//! | Parquet shards (a file, a directory of `.parquet`, a glob) | rows of an image-bytes column ([`parquet`]) | `image_url`, `key`, `url`, `id`, or `<shard>:<row>` |
//! | webdataset tar shards (a file, a directory of `.tar`, `shards/{00000..00329}.tar`) | samples ([`tar`]) | the sample key |
//!
//! An id listed twice keeps its first image; the others are recorded as `duplicate-id`.
//! With a shard of a job, loose files are split by a hash of the id, Parquet shards by row
//! group and tar shards by file, so that each process reads only its own part of the input.

pub mod catalog;
pub mod decode;
pub mod error;
pub mod files;
mod origins;
pub mod parquet;
mod paths;
pub mod read;
pub mod tar;
pub mod thumbnail;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use feature_cache::{Progress, Shard};

pub use catalog::{Catalog, CatalogEntry, Rejected, SourceImage};
pub use decode::{decode_bytes, DecodeOptions, DecodedImage, FailureKind, ImageFailure};
pub use error::{InputError, Result};
pub use parquet::ParquetOptions;

use crate::catalog::{reject_duplicate_ids, ShardFile};
use crate::paths::{resolve, top_level_files, Named};

/// What an input is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A directory tree of image files.
    Files,
    /// A table of ids and paths.
    Manifest,
    /// Parquet shards holding image bytes.
    Parquet,
    /// webdataset tar shards.
    Tar,
}

impl InputKind {
    /// Every kind, as the command line spells them.
    pub const NAMES: [&'static str; 4] = ["files", "manifest", "parquet", "tar"];
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputKind::Files => "files",
            InputKind::Manifest => "manifest",
            InputKind::Parquet => "parquet",
            InputKind::Tar => "tar",
        })
    }
}

impl FromStr for InputKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "files" => Ok(Self::Files),
            "manifest" => Ok(Self::Manifest),
            "parquet" => Ok(Self::Parquet),
            "tar" => Ok(Self::Tar),
            _ => Err(format!("`{s}` is not an input kind ({})", Self::NAMES.join(", "))),
        }
    }
}

/// How to read an input.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// The kind, when not detected (see [`detect`]).
    pub kind: Option<InputKind>,
    /// Columns of Parquet shards.
    pub parquet: ParquetOptions,
}

fn extension(p: &Path) -> String {
    p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase()
}

/// Whether the Parquet file at `path` is a manifest table (`id` and `path` columns, no image
/// column detected) rather than a shard of image bytes.
fn parquet_is_manifest(path: &Path, opts: &ParquetOptions) -> Result<bool> {
    let file = std::fs::File::open(path).map_err(|e| InputError::io(path, e))?;
    let b = ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| InputError::parquet(path, e))?;
    let schema = b.schema();
    let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    Ok(opts.image_column.is_none()
        && feature_cache::manifest::is_manifest_table(&columns)
        && parquet::image_column(path, schema, None).is_err())
}

/// The kind of an input: a directory whose top-level files are all `.parquet` (or all `.tar`)
/// holds shards, any other directory image files; a `.tar` file (or pattern) is tar shards; a
/// `.parquet` file is a manifest if it has `id` and `path` columns and no image column, else a
/// shard; `.csv`, `.tsv`, `.jsonl`, `.ndjson` are manifests.
pub fn detect(input: &str, opts: &InputOptions) -> Result<InputKind> {
    if let Some(kind) = opts.kind {
        return Ok(kind);
    }
    let by_extension = |files: &[PathBuf]| -> Result<InputKind> {
        let exts: Vec<String> = files.iter().map(|f| extension(f)).collect();
        let all = |e: &str| !exts.is_empty() && exts.iter().all(|x| x == e);
        if all("tar") {
            Ok(InputKind::Tar)
        } else if all("parquet") {
            if files.len() == 1 && parquet_is_manifest(&files[0], &opts.parquet)? {
                Ok(InputKind::Manifest)
            } else {
                Ok(InputKind::Parquet)
            }
        } else if files.len() == 1 && ["csv", "tsv", "jsonl", "ndjson"].contains(&exts[0].as_str()) {
            Ok(InputKind::Manifest)
        } else {
            Err(InputError::Usage(format!(
                "{input}: cannot tell what kind of input this is (a directory of images, a manifest \
                 .csv/.tsv/.jsonl/.parquet, .parquet or .tar shards); say it with --input-kind"
            )))
        }
    };
    match resolve(input)? {
        Named::Dir(dir) => {
            let top = top_level_files(&dir)?;
            let all = |e: &str| !top.is_empty() && top.iter().all(|f| extension(f) == e);
            Ok(if all("parquet") {
                InputKind::Parquet
            } else if all("tar") {
                InputKind::Tar
            } else {
                InputKind::Files
            })
        }
        Named::Files { files, .. } => by_extension(&files),
    }
}

impl Catalog {
    /// Lists the images of `input` (see the crate documentation) in `shard`; `progress` hears
    /// how listing shards goes.
    pub fn open(input: &str, opts: &InputOptions, shard: Shard, progress: &dyn Progress) -> Result<Catalog> {
        let kind = detect(input, opts)?;
        let named = resolve(input)?;
        let shard_files = |named: Named, ext: &str| -> Result<(Vec<PathBuf>, PathBuf)> {
            match named {
                Named::Dir(dir) => {
                    let files: Vec<PathBuf> =
                        top_level_files(&dir)?.into_iter().filter(|f| extension(f) == ext).collect();
                    if files.is_empty() {
                        return Err(InputError::Usage(format!(
                            "{}: no .{ext} files at its top level",
                            dir.display()
                        )));
                    }
                    Ok((files, dir))
                }
                Named::Files { files, base } => Ok((files, base)),
            }
        };
        let mut notes = Vec::new();
        let (mut listed, shards) = match kind {
            InputKind::Files => {
                let root = match named {
                    Named::Dir(d) => d,
                    Named::Files { .. } => {
                        return Err(InputError::Usage(format!(
                            "{input}: --input-kind files needs a directory"
                        )))
                    }
                };
                (files::walk(&root, shard)?, Vec::new())
            }
            InputKind::Manifest => {
                let path = match named {
                    Named::Files { files, .. } if files.len() == 1 => files[0].clone(),
                    _ => return Err(InputError::Usage(format!("{input}: a manifest is one table file"))),
                };
                (files::manifest(&path, shard)?, Vec::new())
            }
            InputKind::Parquet => {
                let (files, base) = shard_files(named, "parquet")?;
                let (shards, listed, n) = parquet::catalog(&files, &base, &opts.parquet, shard, progress)?;
                notes.extend(n);
                (listed, shards.into_iter().map(ShardFile::Parquet).collect())
            }
            InputKind::Tar => {
                let (files, _) = shard_files(named, "tar")?;
                notes.push(format!("tar shards: {} files, ids are the sample keys", files.len()));
                let (files, listed) = tar::catalog(&files, shard, progress)?;
                (listed, files.into_iter().map(ShardFile::Tar).collect())
            }
        };
        reject_duplicate_ids(&mut listed.entries, &mut listed.rejected);
        catalog::unique_rejected_ids(&listed.entries, &mut listed.rejected);
        Ok(Catalog { kind, entries: listed.entries, rejected: listed.rejected, notes, shards })
    }
}
