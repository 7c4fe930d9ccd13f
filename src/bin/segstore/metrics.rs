//! `-v` prints what the command cost: the metrics segstore recorded while it ran
//! (`segstore::observe::METRICS`), one line each on stderr.

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// Installs a recorder for this process; `None` if one is installed already.
pub fn record() -> Option<Snapshotter> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().ok().map(|()| snapshotter)
}

/// The recorded metrics, as `name{label=value} = value` lines in name order; counters
/// that stayed at zero are left out.
pub fn lines(snapshotter: &Snapshotter) -> Vec<String> {
    let mut lines: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = if labels.is_empty() {
                key.name().to_owned()
            } else {
                format!("{}{{{}}}", key.name(), labels.join(","))
            };
            match value {
                DebugValue::Counter(0) => None,
                DebugValue::Counter(n) => Some(format!("{name} = {n}")),
                DebugValue::Gauge(g) => Some(format!("{name} = {}", g.into_inner())),
                DebugValue::Histogram(samples) => {
                    let sum: f64 = samples.iter().map(|s| s.into_inner()).sum();
                    Some(format!("{name} = {} samples, sum {sum:.3}", samples.len()))
                }
            }
        })
        .collect();
    lines.sort();
    lines
}
