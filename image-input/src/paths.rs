//! The files an input argument names: a file, a directory, a glob (`wit/*.parquet`) or a brace
//! pattern (`shards/{00000..00329}.tar`).

use std::path::{Path, PathBuf};

use crate::error::{InputError, Result};

/// What an input argument names on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Named {
    /// An existing directory.
    Dir(PathBuf),
    /// Files, in the order the argument gives them (sorted for a glob), and the folder ids of
    /// Parquet rows are made relative to.
    Files { files: Vec<PathBuf>, base: PathBuf },
}

fn has_braces(s: &str) -> bool {
    s.contains('{') && s.contains('}') && (s.contains("..") || s.contains(','))
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The folder before the first pattern character of `pattern`.
fn fixed_base(pattern: &str) -> PathBuf {
    let cut = pattern.find(['*', '?', '[', '{']).unwrap_or(pattern.len());
    let prefix = &pattern[..cut];
    match prefix.rfind('/') {
        Some(i) => PathBuf::from(if i == 0 { "/" } else { &prefix[..i] }),
        None => PathBuf::from("."),
    }
}

/// Resolves an input argument.
pub(crate) fn resolve(input: &str) -> Result<Named> {
    let path = Path::new(input);
    if path.is_dir() {
        return Ok(Named::Dir(path.to_path_buf()));
    }
    if path.exists() {
        let base =
            path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        return Ok(Named::Files { files: vec![path.to_path_buf()], base });
    }
    let files: Vec<PathBuf> = if has_braces(input) {
        let expanded = bracoxide::explode(input)
            .map_err(|e| InputError::Usage(format!("{input}: not a valid brace pattern ({e:?})")))?;
        let files: Vec<PathBuf> = expanded.into_iter().map(PathBuf::from).collect();
        let missing: Vec<String> =
            files.iter().filter(|f| !f.exists()).map(|f| f.display().to_string()).collect();
        if !missing.is_empty() {
            return Err(InputError::Usage(format!(
                "{input}: {} of {} files do not exist (first: {})",
                missing.len(),
                files.len(),
                missing[0]
            )));
        }
        files
    } else if has_glob(input) {
        let mut files = Vec::new();
        for entry in glob::glob(input).map_err(|e| InputError::Usage(format!("{input}: {e}")))? {
            files.push(entry.map_err(|e| {
                let path = e.path().to_path_buf();
                InputError::io(path, e.into())
            })?);
        }
        files.retain(|f| f.is_file());
        files.sort();
        if files.is_empty() {
            return Err(InputError::Usage(format!("{input}: the pattern matches no file")));
        }
        files
    } else {
        return Err(InputError::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
    };
    Ok(Named::Files { files, base: fixed_base(input) })
}

/// The regular, non-hidden files at the top of `dir`, sorted.
pub(crate) fn top_level_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| InputError::io(dir, e))? {
        let entry = entry.map_err(|e| InputError::io(dir, e))?;
        if entry.file_name().as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brace_patterns_globs_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        for i in [0, 1, 2, 10] {
            std::fs::write(dir.path().join(format!("{i:05}.tar")), b"").unwrap();
        }
        let Named::Files { files, base } = resolve(&format!("{d}/{{00000..00002}}.tar")).unwrap() else {
            panic!()
        };
        assert_eq!(files.len(), 3);
        assert_eq!(base, dir.path());
        assert!(files[2].ends_with("00002.tar"));
        let err = resolve(&format!("{d}/{{00000..00004}}.tar")).unwrap_err().to_string();
        assert!(err.contains("2 of 5 files do not exist") && err.contains("00003.tar"), "{err}");
        let Named::Files { files, .. } = resolve(&format!("{d}/*.tar")).unwrap() else { panic!() };
        assert_eq!(files.len(), 4);
        assert!(files[3].ends_with("00010.tar"));
        assert_eq!(resolve(d).unwrap(), Named::Dir(dir.path().to_path_buf()));
        let one = format!("{d}/00001.tar");
        assert!(matches!(resolve(&one).unwrap(), Named::Files { files, .. } if files.len() == 1));
        assert!(resolve(&format!("{d}/nope.tar")).is_err());
        assert!(resolve(&format!("{d}/*.parquet")).unwrap_err().to_string().contains("matches no file"));
    }

    #[test]
    fn base_of_patterns() {
        assert_eq!(fixed_base("shards/{00000..00329}.tar"), PathBuf::from("shards"));
        assert_eq!(fixed_base("/data/wit/part-*.parquet"), PathBuf::from("/data/wit"));
        assert_eq!(fixed_base("*.tar"), PathBuf::from("."));
    }
}
