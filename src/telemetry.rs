//! Logging and metrics setup.
//!
//! Logs go through `tracing` (human or JSON lines, level from `RUST_LOG`, default
//! `info`). Metrics are recorded with the `metrics` macros into a Prometheus recorder
//! whose handle lives in `AppState` and renders `GET /metrics`; no HTTP listener of the
//! exporter's own is started.

use crate::config::LogFormat;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Bucket bounds of `roomcast_message_path_seconds`: 10 µs to 1 s.
const MESSAGE_PATH_BUCKETS: [f64; 11] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
];
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

/// Installs the global `tracing` subscriber. Safe to call more than once (later calls
/// are ignored), so tests can call it per app.
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal: a log file or a pipe gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _already_set = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The Prometheus handle of this process.
///
/// The `metrics` macros record into one global recorder, so the recorder is installed
/// once per process and every app built in it (tests build many) shares its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // A histogram, not the exporter's default summary: buckets add up across
            // nodes, quantiles do not.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("roomcast_message_path_seconds".into()),
                    &MESSAGE_PATH_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}
