//! Progress of long operations. An operation reports what it does (phase, bytes, tables) to
//! a [`Progress`]; where that goes is the front end's choice: a live line on a terminal
//! (nothing under `--json` or when stderr is not a terminal), a job record in the catalog
//! that another front end polls (see [`ProgressSink`]), or both. Cheap to clone and share
//! with tasks.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::{Deserialize, Serialize};

/// How far an operation is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressState {
    /// What it works on ("snapshot shop").
    pub prefix: String,
    /// What it is doing now ("tables 3/12", "media: 40 files").
    pub phase: String,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    pub tables_done: u64,
    pub tables_total: Option<u64>,
}

/// Where progress goes besides the terminal. `update` is called at most once per
/// [`SINK_INTERVAL`] while the operation runs, and once more when it finishes; it must
/// not block (hand the state to a task).
pub trait ProgressSink: Send + Sync {
    fn update(&self, state: &ProgressState);
}

/// How often a sink hears of progress at most.
pub const SINK_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<(ProgressState, Option<Instant>)>,
    sinks: Vec<Arc<dyn ProgressSink>>,
}

impl Progress {
    /// Shows progress on the terminal only if `wanted` and stderr is a terminal.
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
        Progress { bar, shared: Arc::new(Shared { state: Mutex::new(Default::default()), sinks: Vec::new() }) }
    }

    /// A progress that never shows.
    pub fn hidden() -> Progress {
        Progress::new(false)
    }

    /// This progress, also reported to `sink` (a job record, say).
    pub fn with_sink(&self, sink: Arc<dyn ProgressSink>) -> Progress {
        let mut sinks = self.shared.sinks.clone();
        sinks.push(sink);
        let state = self.shared.state.lock().expect("progress lock").0.clone();
        Progress { bar: self.bar.clone(), shared: Arc::new(Shared { state: Mutex::new((state, None)), sinks }) }
    }

    /// What it is now.
    pub fn state(&self) -> ProgressState {
        self.shared.state.lock().expect("progress lock").0.clone()
    }

    fn change(&self, force: bool, f: impl FnOnce(&mut ProgressState)) {
        if self.shared.sinks.is_empty() {
            f(&mut self.shared.state.lock().expect("progress lock").0);
            return;
        }
        let due = {
            let mut guard = self.shared.state.lock().expect("progress lock");
            f(&mut guard.0);
            let due = force || guard.1.is_none_or(|last| last.elapsed() >= SINK_INTERVAL);
            if due {
                guard.1 = Some(Instant::now());
            }
            due.then(|| guard.0.clone())
        };
        if let Some(state) = due {
            for sink in &self.shared.sinks {
                sink.update(&state);
            }
        }
    }

    /// What is being done ("snapshot shop").
    pub fn set_prefix(&self, prefix: impl Into<String>) {
        let prefix = prefix.into();
        self.bar.set_prefix(prefix.clone());
        self.change(false, |s| s.prefix = prefix);
    }

    /// The current phase ("tables 3/12", "media: 40 files").
    pub fn set_message(&self, message: impl Into<String>) {
        let message = message.into();
        self.bar.set_message(message.clone());
        self.change(false, |s| s.phase = message);
    }

    /// Tables done out of a total; shown as the phase "tables N/T".
    pub fn set_tables(&self, done: u64, total: u64) {
        let phase = format!("tables {done}/{total}");
        self.bar.set_message(phase.clone());
        self.change(false, |s| {
            s.phase = phase;
            s.tables_done = done;
            s.tables_total = Some(total);
        });
    }

    /// The bytes the whole operation moves, when known.
    pub fn set_total_bytes(&self, total: u64) {
        self.change(false, |s| s.bytes_total = Some(total));
    }

    pub fn add_bytes(&self, n: u64) {
        self.bar.inc(n);
        self.change(false, |s| s.bytes_done += n);
    }

    /// The end: the terminal line goes, sinks hear the last state.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
        self.change(true, |_| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<ProgressState>>);

    impl ProgressSink for Recorder {
        fn update(&self, state: &ProgressState) {
            self.0.lock().unwrap().push(state.clone());
        }
    }

    #[test]
    fn a_sink_hears_at_most_once_a_second_and_always_the_end() {
        let recorder = Arc::new(Recorder::default());
        let progress = Progress::hidden().with_sink(recorder.clone());
        progress.set_prefix("snapshot shop");
        for i in 1..=1000u64 {
            progress.add_bytes(10);
            progress.set_tables(i, 1000);
        }
        assert_eq!(recorder.0.lock().unwrap().len(), 1, "a burst of updates is one update");
        progress.finish();
        let seen = recorder.0.lock().unwrap().clone();
        let last = seen.last().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!((last.bytes_done, last.tables_done, last.tables_total), (10_000, 1000, Some(1000)));
        assert_eq!((last.prefix.as_str(), last.phase.as_str()), ("snapshot shop", "tables 1000/1000"));
        // Without a sink nothing is recorded anywhere but the state.
        let plain = Progress::hidden();
        plain.add_bytes(5);
        assert_eq!(plain.state().bytes_done, 5);
    }
}
