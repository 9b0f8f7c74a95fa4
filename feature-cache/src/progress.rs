//! How long work reports its progress: a small trait the libraries call and the binaries
//! implement (a progress bar with rate and ETA, a log line, or nothing).

/// Receives the progress of long work. Every method has a do-nothing default.
pub trait Progress: Sync {
    /// A stage of work begins: `total` units (images, batches …) of `unit`, position 0.
    fn start(&self, stage: &str, total: u64, unit: &str) {
        let _ = (stage, total, unit);
    }

    /// `n` more units are done.
    fn advance(&self, n: u64) {
        let _ = n;
    }

    /// Something the user should know now: a warning, a choice made on their behalf.
    fn note(&self, message: &str) {
        let _ = message;
    }
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Records every call, as a test of a library would.
    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl Progress for Log {
        fn start(&self, stage: &str, total: u64, unit: &str) {
            self.0.lock().unwrap().push(format!("start {stage} {total} {unit}"));
        }
        fn note(&self, message: &str) {
            self.0.lock().unwrap().push(format!("note {message}"));
        }
    }

    #[test]
    fn defaults_do_nothing_and_overrides_are_called() {
        let log = Log::default();
        let p: &dyn Progress = &log;
        p.start("embedding", 10, "images");
        p.advance(3);
        p.note("CUDA not used");
        assert_eq!(*log.0.lock().unwrap(), ["start embedding 10 images", "note CUDA not used"]);
        Silent.advance(1);
    }
}
