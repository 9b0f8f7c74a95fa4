//! The embedding cache: Parquet parts of one embedding per image.
//!
//! Schema of every part written now (format 2):
//!
//! | column          | Arrow type                              | meaning                              |
//! |-----------------|-----------------------------------------|--------------------------------------|
//! | `id`            | Utf8, not null, unique in the cache     | the image's id                       |
//! | `embedding`     | FixedSizeList<Float16 \| Float32, dim>  | the penultimate-layer embedding      |
//! | `width`         | UInt32                                  | original image width in pixels       |
//! | `height`        | UInt32                                  | original image height in pixels      |
//! | `source`        | Utf8, nullable                          | the image file, or its shard         |
//! | `source_row`    | UInt64, nullable                        | row of a Parquet shard (0-based)     |
//! | `source_member` | Utf8, nullable                          | member of a tar shard                |
//!
//! Format 1 parts (no `source*` columns) are still read. The file's key-value metadata holds the
//! model's identity under `wit.*` keys ([`CacheMetadata`]). A cache is a directory whose
//! top-level `*.parquet` files are its parts (the extractor writes one per `--part-size` images
//! and shard); everything else — failure tables in `_failures/`, temporaries and locks (hidden) —
//! is kept out of that set, so pyarrow, pandas, polars and DuckDB read the directory (or
//! `dir/*.parquet`) as one table. [`EmbeddingCache`] reads the parts as one table and refuses
//! parts of different models, dims, pooling or preprocessing.

mod metadata;
mod reader;
mod writer;

pub use metadata::{
    CacheMetadata, EmbeddingDtype, Pooling, FORMAT_VERSION, METADATA_PREFIX, MIN_FORMAT_VERSION,
};
pub(crate) use reader::opt_str;
pub use reader::{
    check_unique_ids, round_to_storage, widen_f16, EmbeddingCache, EmbeddingMatrix, EmbeddingPart,
    EmbeddingValues, RowGroupRef,
};
pub use writer::{part_properties, EmbeddingWriter, ROWS_PER_GROUP};
