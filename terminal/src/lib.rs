//! What the two binaries show on a terminal, in one place so both behave alike: [`Bar`], the
//! libraries' [`Progress`] drawn as a progress bar with rate and ETA, and [`emit`], standard
//! output that a reader going away (`| head`) ends quietly. The libraries never see either.

use std::io::Write;
use std::time::Duration;

use feature_cache::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar on standard error with rate and ETA; notes are printed above it (also when
/// the bar is hidden).
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar drawn on standard error, or hidden (`quiet`: notes are still printed).
    pub fn new(quiet: bool) -> Self {
        let target = if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.enable_steady_tick(Duration::from_millis(250));
        Self(bar)
    }

    /// Stops the bar and clears it from the terminal.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn start(&self, stage: &str, total: u64, unit: &str) {
        let template = format!(
            "{{spinner}} {stage} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit}  {{per_sec}}  ETA {{eta}}"
        );
        self.0.set_style(
            ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.reset_eta();
    }

    fn advance(&self, n: u64) {
        self.0.inc(n);
    }

    fn note(&self, message: &str) {
        self.0.suspend(|| eprintln!("note: {message}"));
    }
}

/// Writes `text` to standard output; a reader that went away (`| head`) ends the program
/// quietly with status 0. Any other error says it was writing to standard output.
pub fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(std::io::Error::new(e.kind(), format!("writing to standard output: {e}"))),
        Ok(()) => Ok(()),
    }
}
