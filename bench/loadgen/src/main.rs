//! roomcast's load generator: simulated Socket.IO clients (WebSocket or long-polling)
//! that authenticate with `auth: {apiKey}`, join rooms, publish stamped messages at fixed
//! rates, and report connections, handshake times, loss, reordering, latency and the
//! server's CPU and memory as one JSON document.
//!
//! One thread (pinned to its own core by `bench/run`): every tally is a plain `RefCell`,
//! and the generator's own CPU use is reported so a saturated load side is never mistaken
//! for a slow server.
//!
//! Modules: [`proto`] packets and payload stamps, [`net`] sockets and limits, [`ws`] and
//! [`polling`] the two transports, [`client`] what a client does whatever its transport,
//! [`stats`] the tallies, [`procfs`] CPU and memory readings, [`report`] the JSON.

mod client;
mod net;
mod polling;
mod procfs;
mod proto;
mod report;
mod stats;
mod ws;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use client::{Ctx, Phase, PublishPlan, Role};
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Scenario presets (issue 5); every number can be overridden by its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Idle: 100 rooms × 100 connections, 100 handshakes in flight, then hold.
    S1,
    /// Fan-out: 1 room × 1,000 subscribers, 10 publishers, 100 msg/s in all.
    S2,
    /// Many rooms: 1,000 rooms × 10 subscribers, 1 publisher per room at 1 msg/s.
    S3,
    /// Chat: 100 rooms × 50 clients, each publishing 0.2 msg/s.
    S4,
    /// Long-polling: 10 rooms × 100 polling clients, 10 broadcasts/s per room.
    S5,
}

/// Client transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Transport {
    /// Direct WebSocket.
    Websocket,
    /// HTTP long-polling only.
    Polling,
}

#[derive(Parser, Debug)]
#[command(about = "Socket.IO load generator for roomcast's benchmarks (loopback only)")]
struct Args {
    /// Scenario preset.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Server base URL (IPv4 loopback only). Repeat it for the nodes of a cluster:
    /// client `i` (room-major order) connects to URL `i mod n`, so every room spans them.
    #[arg(long = "url", default_value = "http://127.0.0.1:3000")]
    urls: Vec<String>,
    /// Label copied into the report (e.g. the server's name).
    #[arg(long, default_value = "")]
    label: String,
    /// Number of rooms.
    #[arg(long)]
    rooms: Option<usize>,
    /// Clients per room (publishers included).
    #[arg(long)]
    per_room: Option<usize>,
    /// Publishers per room.
    #[arg(long)]
    publishers: Option<usize>,
    /// Messages per second per room, split evenly over its publishers.
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of publishing.
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds to hold the connections after connecting, before publishing (S1 reads
    /// the server's RSS at the end of it).
    #[arg(long)]
    hold: Option<f64>,
    /// Handshakes in flight while connecting.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Client transport.
    #[arg(long, value_enum)]
    transport: Option<Transport>,
    /// Message payload bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// File with one API key per line; room `r` uses line `r`. Without it, room `r`'s
    /// key is `<room-prefix><r>` (what the peer servers take as a room name).
    #[arg(long)]
    keys_file: Option<PathBuf>,
    /// Key prefix when there is no keys file.
    #[arg(long, default_value = "room-")]
    room_prefix: String,
    /// Server process to read RSS and CPU time from; repeat it for a cluster's nodes
    /// (their figures are summed).
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// Loopback source addresses to spread client sockets over (127.0.0.2 onwards).
    #[arg(long, default_value_t = 16)]
    sources: usize,
    /// Seconds one handshake may take before it counts as failed.
    #[arg(long, default_value_t = 10.0)]
    handshake_timeout: f64,
    /// Longest the whole connect phase may take, in seconds.
    #[arg(long, default_value_t = 180.0)]
    connect_deadline: f64,
    /// Longest to wait after publishing for outstanding deliveries, in seconds.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// Also write the JSON report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The resolved shape of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    scenario: String,
    transport: Transport,
    rooms: usize,
    per_room: usize,
    publishers_per_room: usize,
    rate_per_room: f64,
    duration_secs: f64,
    hold_secs: f64,
    concurrency: usize,
    payload_bytes: usize,
    sources: usize,
}

impl Plan {
    fn from_args(args: &Args) -> anyhow::Result<Self> {
        use Scenario::*;
        // (rooms, per_room, publishers, rate/room, duration, hold, transport)
        let (rooms, per_room, publishers, rate, duration, hold, transport) = match args.scenario {
            S1 => (100, 100, 0, 0.0, 0.0, 10.0, Transport::Websocket),
            S2 => (1, 1000, 10, 100.0, 10.0, 2.0, Transport::Websocket),
            S3 => (1000, 10, 1, 1.0, 20.0, 2.0, Transport::Websocket),
            S4 => (100, 50, 50, 10.0, 20.0, 2.0, Transport::Websocket),
            S5 => (10, 100, 1, 10.0, 20.0, 2.0, Transport::Polling),
        };
        let plan = Self {
            scenario: format!("{:?}", args.scenario).to_lowercase(),
            transport: args.transport.unwrap_or(transport),
            rooms: args.rooms.unwrap_or(rooms),
            per_room: args.per_room.unwrap_or(per_room),
            publishers_per_room: args.publishers.unwrap_or(publishers),
            rate_per_room: args.rate.unwrap_or(rate),
            duration_secs: args.duration.unwrap_or(duration),
            hold_secs: args.hold.unwrap_or(hold),
            concurrency: args.concurrency.unwrap_or(100).max(1),
            payload_bytes: args.size,
            sources: args.sources.clamp(1, 250),
        };
        if plan.rooms == 0 || plan.per_room == 0 {
            bail!("--rooms and --per-room must be at least 1");
        }
        if plan.publishers_per_room > plan.per_room {
            bail!("--publishers cannot exceed --per-room");
        }
        if plan.publishers_per_room > 0 && plan.rate_per_room <= 0.0 && plan.duration_secs > 0.0 {
            bail!("publishers need --rate > 0");
        }
        // Bounded in time whatever the flags say.
        if plan.duration_secs > 600.0 || plan.hold_secs > 600.0 {
            bail!("--duration and --hold are capped at 600 s");
        }
        Ok(plan)
    }

    fn total(&self) -> usize {
        self.rooms * self.per_room
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let plan = Plan::from_args(&args)?;
    let targets = args
        .urls
        .iter()
        .map(|url| net::Target::parse(url))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let keys = load_keys(&args, plan.rooms)?;
    let nofile = net::raise_nofile();
    // Each client holds one socket (two for polling) plus a few for the process itself.
    let sockets = plan.total()
        * if plan.transport == Transport::Polling {
            2
        } else {
            1
        };
    if (sockets as u64) + 64 > nofile {
        bail!("{sockets} sockets need more than the open-file limit ({nofile})");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&runtime, run(&args, plan, targets, keys))?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.out {
        std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{json}");
    Ok(())
}

fn load_keys(args: &Args, rooms: usize) -> anyhow::Result<Vec<String>> {
    let Some(path) = &args.keys_file else {
        return Ok((0..rooms)
            .map(|r| format!("{}{r}", args.room_prefix))
            .collect());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if keys.len() < rooms {
        bail!(
            "{} has {} keys, the run needs {rooms}",
            path.display(),
            keys.len()
        );
    }
    Ok(keys.into_iter().take(rooms).collect())
}

/// Clients in room-major order; the first `publishers_per_room` of each room publish,
/// spread evenly over the period so a room's publishers do not fire on the same tick.
fn roles(plan: &Plan, keys: &[String]) -> Vec<Role> {
    let mut roles = Vec::with_capacity(plan.total());
    let mut publisher_id = 0u32;
    let per_publisher_rate = if plan.publishers_per_room > 0 {
        plan.rate_per_room / plan.publishers_per_room as f64
    } else {
        0.0
    };
    let period = if per_publisher_rate > 0.0 {
        Duration::from_secs_f64(1.0 / per_publisher_rate)
    } else {
        Duration::ZERO
    };
    let total_publishers = (plan.rooms * plan.publishers_per_room).max(1) as u32;
    for (room, key) in keys.iter().enumerate().take(plan.rooms) {
        for j in 0..plan.per_room {
            let publisher = (j < plan.publishers_per_room && !period.is_zero()).then(|| {
                let id = publisher_id;
                publisher_id += 1;
                PublishPlan {
                    id,
                    period,
                    offset: period.mul_f64(f64::from(id) / f64::from(total_publishers)),
                }
            });
            roles.push(Role {
                idx: roles.len(),
                room,
                key: key.clone(),
                publisher,
            });
        }
    }
    roles
}

/// Whatever a transport's handshake hands over to its run loop.
enum Connected {
    Ws(ws::Ws),
    Polling(polling::PollClient),
}

async fn run(
    args: &Args,
    plan: Plan,
    targets: Vec<net::Target>,
    keys: Vec<String>,
) -> anyhow::Result<report::Report> {
    let (phase_tx, phase_rx) = watch::channel(Phase::Idle);
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctx = Rc::new(Ctx {
        targets,
        sources: plan.sources,
        payload_size: plan.payload_bytes,
        base: Instant::now(),
        handshake_timeout: Duration::from_secs_f64(args.handshake_timeout),
        stats: RefCell::new(stats::Stats::new(plan.rooms)),
        phase: phase_rx,
        stop: stop_rx,
    });
    let pids = args.server_pids.as_slice();
    let mut readings = report::Readings {
        rss_before: procfs::sum(pids, procfs::rss_bytes),
        ..Default::default()
    };

    // Connect: `concurrency` workers each take the next client, so exactly that many
    // handshakes are in flight; a connected client gets its own task and the worker moves on.
    let roles = Rc::new(roles(&plan, &keys));
    let next = Rc::new(Cell::new(0usize));
    let cpu0 = procfs::sum(pids, procfs::cpu_secs);
    let self0 = procfs::self_cpu();
    let busy0 = procfs::machine_busy_secs();
    let connect_started = Instant::now();
    let connect_deadline = connect_started + Duration::from_secs_f64(args.connect_deadline);
    let mut workers = Vec::new();
    for _ in 0..plan.concurrency.min(plan.total()) {
        let (ctx, roles, next) = (ctx.clone(), roles.clone(), next.clone());
        let transport = plan.transport;
        workers.push(tokio::task::spawn_local(async move {
            loop {
                let i = next.get();
                if i >= roles.len() || Instant::now() >= connect_deadline {
                    break;
                }
                next.set(i + 1);
                let role = roles[i].clone();
                let result = match transport {
                    Transport::Websocket => ws::handshake(&ctx, &role)
                        .await
                        .map(|(c, t)| (Connected::Ws(c), t)),
                    Transport::Polling => polling::handshake(&ctx, &role)
                        .await
                        .map(|(c, t)| (Connected::Polling(c), t)),
                };
                match result {
                    Ok((conn, took)) => {
                        {
                            let mut stats = ctx.stats.borrow_mut();
                            stats.connected += 1;
                            stats.members[role.room] += 1;
                            let _ = stats.handshake_us.record((took.as_micros() as u64).max(1));
                        }
                        let ctx = ctx.clone();
                        match conn {
                            Connected::Ws(c) => tokio::task::spawn_local(ws::run(ctx, role, c)),
                            Connected::Polling(c) => {
                                tokio::task::spawn_local(polling::run(ctx, role, c))
                            }
                        };
                    }
                    Err(reason) => ctx.stats.borrow_mut().fail(reason),
                }
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    readings.connect_secs = connect_started.elapsed().as_secs_f64();
    readings.server_cpu_connect = diff(procfs::sum(pids, procfs::cpu_secs), cpu0);
    readings.loadgen_cpu_connect = (procfs::self_cpu() - self0).as_secs_f64();
    readings.other_cpu_connect = other_cpu(
        busy0,
        readings.server_cpu_connect,
        readings.loadgen_cpu_connect,
    );
    readings.attempted = next.get().min(roles.len()) as u64;

    // Hold, then read memory with every connection idle.
    tokio::time::sleep(Duration::from_secs_f64(plan.hold_secs)).await;
    readings.rss_after_connect = procfs::sum(pids, procfs::rss_bytes);

    // Publish on a fixed schedule, then wait for outstanding deliveries.
    let has_publishers = roles.iter().any(|r| r.publisher.is_some());
    if has_publishers && plan.duration_secs > 0.0 {
        let cpu0 = procfs::sum(pids, procfs::cpu_secs);
        let self0 = procfs::self_cpu();
        let busy0 = procfs::machine_busy_secs();
        let start = Instant::now() + Duration::from_millis(20);
        let end = start + Duration::from_secs_f64(plan.duration_secs);
        phase_tx.send_replace(Phase::Publishing { start, end });
        tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
        let publish_end = Instant::now();
        readings.rss_after_publish = procfs::sum(pids, procfs::rss_bytes);
        let drain_deadline = publish_end + Duration::from_secs_f64(args.drain);
        loop {
            let (received, expected, sends_due) = {
                let s = ctx.stats.borrow();
                (s.received - s.duplicates, s.expected(), s.sends_due)
            };
            // A send due just before the end can still be in flight: wait for it too.
            if (sends_due == 0 && received >= expected) || Instant::now() >= drain_deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        readings.drain_secs = publish_end.elapsed().as_secs_f64();
        readings.publish_secs = plan.duration_secs;
        readings.publish_start = Some(start);
        readings.server_cpu_publish = diff(procfs::sum(pids, procfs::cpu_secs), cpu0);
        readings.loadgen_cpu_publish = (procfs::self_cpu() - self0).as_secs_f64();
        readings.loadgen_wall_publish = start.elapsed().as_secs_f64();
        readings.other_cpu_publish = other_cpu(
            busy0,
            readings.server_cpu_publish,
            readings.loadgen_cpu_publish,
        );
    }
    phase_tx.send_replace(Phase::Idle);
    stop_tx.send_replace(true);
    // Let the client tasks see the stop and close their sockets.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stats = ctx.stats.borrow();
    Ok(report::Report::build(
        &args.label,
        &args.urls.join(" "),
        pids,
        plan,
        &stats,
        &readings,
    ))
}

/// Machine CPU seconds since `busy0` that were neither the server's nor ours.
fn other_cpu(busy0: Option<f64>, server: Option<f64>, own: f64) -> Option<f64> {
    Some((procfs::machine_busy_secs()? - busy0? - server? - own).max(0.0))
}

fn diff(after: Option<f64>, before: Option<f64>) -> Option<f64> {
    Some(after? - before?)
}
