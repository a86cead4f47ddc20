//! Progress of long operations: a live line on a terminal (bytes, tables, rate), nothing at
//! all under `--json` or when stderr is not a terminal. Cheap to clone and share with tasks.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Shows progress only if `wanted` and stderr is a terminal.
    pub fn new(wanted: bool) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if wanted && std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {msg} {bytes} ({binary_bytes_per_sec}) [{elapsed}]")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        Progress { bar }
    }

    /// A progress that never shows.
    pub fn hidden() -> Progress {
        Progress::new(false)
    }

    /// What is being done ("snapshot shop").
    pub fn set_prefix(&self, prefix: impl Into<String>) {
        self.bar.set_prefix(prefix.into());
    }

    /// Steps done out of a total ("tables 3/12").
    pub fn set_message(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    pub fn add_bytes(&self, n: u64) {
        self.bar.inc(n);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
