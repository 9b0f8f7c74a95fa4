//! Finding and loading ONNX Runtime's shared library (the `ort` crate's `load-dynamic` mode).
//!
//! Search order: `ORT_DYLIB_PATH`; the project's `.venv` (PyPI `onnxruntime` or `onnxruntime-gpu`
//! wheel) found from the executable's location or the working directory; an active `VIRTUAL_ENV`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{ExtractError, Result};

/// Library file name prefix of ONNX Runtime on this platform.
const LIB_PREFIX: &str = if cfg!(target_os = "macos") { "libonnxruntime." } else { "libonnxruntime.so" };

/// A loaded ONNX Runtime.
pub struct Runtime {
    /// The shared library it was loaded from.
    pub library: PathBuf,
    /// The process-wide environment sessions are created in.
    pub env: ort::environment::Environment,
}

static LOADED: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// Candidate library paths, best first.
pub fn candidates() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/{release,debug}/extractor (or .../deps/test-binary) -> project root
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().take(3).map(Path::to_path_buf));
    }
    let mut venvs: Vec<PathBuf> = roots.iter().map(|r| r.join(".venv")).collect();
    if let Some(v) = std::env::var_os("VIRTUAL_ENV") {
        venvs.push(PathBuf::from(v));
    }
    let mut found = Vec::new();
    for venv in venvs {
        let Ok(libs) = std::fs::read_dir(venv.join("lib")) else { continue };
        for py in libs.flatten() {
            let capi = py.path().join("site-packages/onnxruntime/capi");
            let Ok(files) = std::fs::read_dir(&capi) else { continue };
            let mut libs: Vec<PathBuf> = files
                .flatten()
                .map(|f| f.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(LIB_PREFIX)))
                .collect();
            // the versioned file (libonnxruntime.so.1.31.1) sorts after the bare name
            libs.sort();
            found.extend(libs.into_iter().rev());
        }
    }
    found.dedup();
    found
}

/// Loads ONNX Runtime once per process.
pub fn init() -> Result<&'static Runtime> {
    LOADED
        .get_or_init(|| {
            // an empty ORT_DYLIB_PATH (`export ORT_DYLIB_PATH=$X` with X unset) counts as unset
            let path = match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
                Some(p) => {
                    let p = PathBuf::from(p);
                    if !p.is_file() {
                        return Err(format!(
                            "ORT_DYLIB_PATH={} does not exist: point it at libonnxruntime.so.1.31.x, or unset \
                             it to use the project's .venv (scripts/setup installs onnxruntime there)",
                            p.display()
                        ));
                    }
                    p
                }
                None => candidates().into_iter().next().ok_or_else(|| {
                    "ONNX Runtime not found: run scripts/setup (it installs the onnxruntime 1.31.1 wheel \
                     into .venv), or set ORT_DYLIB_PATH=/path/to/libonnxruntime.so.1.31.1"
                        .to_string()
                })?,
            };
            let builder = ort::init_from(&path).map_err(|e| {
                format!(
                    "cannot load ONNX Runtime from {}: {e}. Set ORT_DYLIB_PATH to a libonnxruntime 1.31.x",
                    path.display()
                )
            })?;
            let env = builder
                .with_name("wiki-image-topics")
                .build()
                .map_err(|e| format!("ONNX Runtime from {}: {e}", path.display()))?;
            Ok(Runtime { library: path, env })
        })
        .as_ref()
        .map_err(|e| ExtractError::Runtime(e.clone()))
}
