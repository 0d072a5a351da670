//! The JSON a run prints: what was asked, what happened, and the derived figures the
//! issue's table uses (connects/s, deliveries per server CPU-second, RSS per connection).

use crate::stats::{Percentiles, Stats};
use crate::Plan;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// Raw readings taken by the run around its phases.
#[derive(Default)]
pub struct Readings {
    /// Clients whose connection was attempted.
    pub attempted: u64,
    /// Wall time of the connect phase.
    pub connect_secs: f64,
    /// Server RSS before any client connected.
    pub rss_before: Option<u64>,
    /// Server RSS after connecting and holding.
    pub rss_after_connect: Option<u64>,
    /// Server RSS at the end of publishing.
    pub rss_after_publish: Option<u64>,
    /// Server CPU seconds spent during the connect phase.
    pub server_cpu_connect: Option<f64>,
    /// Generator CPU seconds during the connect phase.
    pub loadgen_cpu_connect: f64,
    /// When publishing started.
    pub publish_start: Option<Instant>,
    /// Planned publishing seconds.
    pub publish_secs: f64,
    /// Seconds spent waiting for outstanding deliveries after publishing.
    pub drain_secs: f64,
    /// Server CPU seconds from publish start to the end of the drain.
    pub server_cpu_publish: Option<f64>,
    /// Generator CPU seconds over the same window.
    pub loadgen_cpu_publish: f64,
    /// Wall seconds of that window.
    pub loadgen_wall_publish: f64,
    /// CPU seconds other processes used during the connect phase.
    pub other_cpu_connect: Option<f64>,
    /// CPU seconds other processes used during the publish window.
    pub other_cpu_publish: Option<f64>,
}

/// The whole report.
#[derive(Serialize)]
pub struct Report {
    label: String,
    url: String,
    plan: Plan,
    connections: Connections,
    messages: Messages,
    server: Server,
    loadgen: Loadgen,
    machine: Machine,
}

/// Work on the machine that was neither the server nor the generator, in cores.
#[derive(Serialize)]
struct Machine {
    other_cpu_util_connect: Option<f64>,
    other_cpu_util_publish: Option<f64>,
    /// True when other processes used over 10 % of a core in a measured phase: the
    /// run's figures are then suspect and `bench/run` says so.
    busy: bool,
}

#[derive(Serialize)]
struct Connections {
    attempted: u64,
    made: u64,
    failed: u64,
    failures: BTreeMap<String, u64>,
    connect_secs: f64,
    connects_per_sec: f64,
    handshake_us: Percentiles,
    disconnects_during_run: u64,
}

#[derive(Serialize)]
struct Messages {
    sent: u64,
    send_errors: u64,
    expected: u64,
    received: u64,
    lost: u64,
    loss_ratio: f64,
    out_of_order: u64,
    duplicates: u64,
    foreign: u64,
    server_errors: BTreeMap<String, u64>,
    offered_deliveries_per_sec: f64,
    deliveries_per_sec: f64,
    latency_us: Percentiles,
    drain_secs: f64,
}

#[derive(Serialize)]
struct Server {
    pids: Vec<u32>,
    rss_before_bytes: Option<u64>,
    rss_after_connect_bytes: Option<u64>,
    rss_after_publish_bytes: Option<u64>,
    /// (RSS after connecting − RSS before) / connections made.
    rss_per_conn_bytes: Option<f64>,
    cpu_connect_secs: Option<f64>,
    handshakes_per_cpu_sec: Option<f64>,
    cpu_publish_secs: Option<f64>,
    deliveries_per_cpu_sec: Option<f64>,
    cpu_secs_per_100k_deliveries: Option<f64>,
}

#[derive(Serialize)]
struct Loadgen {
    cpu_connect_secs: f64,
    cpu_util_connect: f64,
    cpu_publish_secs: f64,
    cpu_util_publish: f64,
    /// True when the generator used over 90 % of its core in a measured phase: the
    /// figures of that phase then describe the generator, not the server.
    saturated: bool,
}

impl Report {
    /// Derives the report from a run's tallies and readings.
    pub fn build(
        label: &str,
        url: &str,
        pids: &[u32],
        plan: Plan,
        stats: &Stats,
        r: &Readings,
    ) -> Self {
        let made = stats.connected;
        let expected = stats.expected();
        let unique = stats.received - stats.duplicates;
        let lost = expected.saturating_sub(unique);
        let sent: u64 = stats.sent.iter().sum();
        let delivery_window = match (r.publish_start, stats.last_delivery) {
            (Some(start), Some(last)) if last > start => last.duration_since(start).as_secs_f64(),
            _ => 0.0,
        };
        let per_sec = |n: f64, secs: f64| if secs > 0.0 { n / secs } else { 0.0 };
        let cpu_util_connect = per_sec(r.loadgen_cpu_connect, r.connect_secs);
        let cpu_util_publish = per_sec(r.loadgen_cpu_publish, r.loadgen_wall_publish);
        let rss_per_conn = match (r.rss_after_connect, r.rss_before) {
            (Some(after), Some(before)) if made > 0 => {
                Some((after as f64 - before as f64) / made as f64)
            }
            _ => None,
        };
        let cpu_publish = r.server_cpu_publish;
        Self {
            label: label.to_owned(),
            url: url.to_owned(),
            connections: Connections {
                attempted: r.attempted,
                made,
                failed: stats.failed(),
                failures: stats.failures.clone(),
                connect_secs: r.connect_secs,
                connects_per_sec: per_sec(made as f64, r.connect_secs),
                handshake_us: Percentiles::of(&stats.handshake_us),
                disconnects_during_run: stats.disconnects,
            },
            messages: Messages {
                sent,
                send_errors: stats.send_errors,
                expected,
                received: stats.received,
                lost,
                loss_ratio: if expected > 0 {
                    lost as f64 / expected as f64
                } else {
                    0.0
                },
                out_of_order: stats.out_of_order,
                duplicates: stats.duplicates,
                foreign: stats.foreign,
                server_errors: stats.server_errors.clone(),
                offered_deliveries_per_sec: per_sec(expected as f64, r.publish_secs),
                deliveries_per_sec: per_sec(unique as f64, delivery_window),
                latency_us: Percentiles::of(&stats.latency_us),
                drain_secs: r.drain_secs,
            },
            server: Server {
                pids: pids.to_vec(),
                rss_before_bytes: r.rss_before,
                rss_after_connect_bytes: r.rss_after_connect,
                rss_after_publish_bytes: r.rss_after_publish,
                rss_per_conn_bytes: rss_per_conn,
                cpu_connect_secs: r.server_cpu_connect,
                handshakes_per_cpu_sec: r
                    .server_cpu_connect
                    .filter(|c| *c > 0.0)
                    .map(|c| made as f64 / c),
                cpu_publish_secs: cpu_publish,
                deliveries_per_cpu_sec: cpu_publish.filter(|c| *c > 0.0).map(|c| unique as f64 / c),
                cpu_secs_per_100k_deliveries: cpu_publish
                    .filter(|_| unique > 0)
                    .map(|c| c * 100_000.0 / unique as f64),
            },
            loadgen: Loadgen {
                cpu_connect_secs: r.loadgen_cpu_connect,
                cpu_util_connect,
                cpu_publish_secs: r.loadgen_cpu_publish,
                cpu_util_publish,
                saturated: cpu_util_connect > 0.9 || cpu_util_publish > 0.9,
            },
            machine: {
                let connect = r.other_cpu_connect.map(|c| per_sec(c, r.connect_secs));
                let publish = r
                    .other_cpu_publish
                    .map(|c| per_sec(c, r.loadgen_wall_publish));
                Machine {
                    other_cpu_util_connect: connect,
                    other_cpu_util_publish: publish,
                    busy: connect.unwrap_or(0.0) > 0.1 || publish.unwrap_or(0.0) > 0.1,
                }
            },
            plan,
        }
    }
}
