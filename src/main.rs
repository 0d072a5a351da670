//! The `roomcast` binary: parses flags, sets up logging, binds the listener and turns
//! SIGTERM/SIGINT into the app's shutdown future. Everything else lives in the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use roomcast::app::App;
use roomcast::config::Config;
use roomcast::store::Store;
use std::io::Write;
use tokio::net::TcpSocket;

/// jemalloc instead of glibc's malloc, for two measured reasons (`bench/README.md`):
/// - **Memory.** Each Argon2id hash takes a 19 MiB block on a blocking-pool thread.
///   glibc kept such blocks in each thread's arena after the hash was done: an idle
///   server held 285 MB after 8 parallel logins and 363 MB after 96 (11 MB before).
///   jemalloc serves blocks that large from an arena it purges at once: 14 MB.
/// - **Speed.** Long-polling allocates per HTTP request; S5's polling CPU per delivery
///   fell 11 % (user time 19 %). RSS per idle connection is unchanged (3.3–3.4 KB).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Connections the kernel may queue before we accept them (connection storms at startup
/// or after a node failover).
const LISTEN_BACKLOG: u32 = 1024;

#[derive(Parser)]
#[command(
    name = "roomcast",
    version,
    about = "Self-hostable, multi-tenant realtime messaging over Socket.IO"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the dashboard, REST API and Socket.IO (the default).
    Serve(Config),
    /// Apply database migrations and exit.
    Migrate(Config),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // `#[tokio::main]` polls its future on the main thread, which is not one of the
    // runtime's workers. An accept loop there costs two thread wake-ups per connection
    // (the worker's I/O driver wakes the main thread to accept; the spawned connection
    // wakes a worker), so the server runs as a task on the workers instead.
    match tokio::spawn(run(cli)).await {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(error)) => {
            // One line with the whole cause chain; operators do not need a backtrace.
            eprintln!("roomcast: {error:#}");
            std::process::ExitCode::FAILURE
        }
        Err(panicked) => {
            eprintln!("roomcast: {panicked}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (config, migrate_only) = match cli.command {
        None => (cli.config, false),
        Some(Command::Serve(config)) => (config, false),
        Some(Command::Migrate(config)) => (config, true),
    };
    roomcast::telemetry::init_tracing(config.log_format);
    config.validate()?;
    if migrate_only {
        let store = Store::connect(&config.database_url).await?;
        store.migrate().await?;
        store.close().await;
        tracing::info!("migrations applied");
        return Ok(());
    }

    let open_file_limit = raise_open_file_limit();
    let bind = config.bind;
    let log_format = config.log_format;
    let app = App::build(config).await?;
    let socket = if bind.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("creating the listening socket")?;
    socket.set_reuseaddr(true).context("setting SO_REUSEADDR")?;
    socket
        .bind(bind)
        .with_context(|| format!("binding {bind}"))?;
    let listener = socket.listen(LISTEN_BACKLOG).context("listening")?;
    if let Some(limit) = open_file_limit {
        reserve_descriptor_table(&listener, limit);
    }
    let address = listener.local_addr().context("reading the bound address")?;
    // Tests and scripts read this exact line to learn the port when binding port 0. With
    // JSON logs, stdout carries JSON lines only: the address is in the `listening` event.
    if log_format == roomcast::config::LogFormat::Human {
        // A closed stdout (`roomcast | head -1`) must not stop the server: the line is
        // for whoever reads it, and the log has the address too.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on http://{address}").and_then(|()| stdout.flush());
    }
    tracing::info!(url = %format!("http://{address}"), "listening");

    app.serve(listener, shutdown_signal()).await?;
    Ok(())
}

/// Below this many open files a node is small enough that operators should hear about it.
const FEW_OPEN_FILES: u64 = 4096;

/// Lifts the soft open-file limit to the hard one: every client connection is a file, and
/// a shell's usual soft limit (1,024) would refuse connections long before the machine
/// runs out of anything. Go's runtime and nginx (`worker_rlimit_nofile`) do the same.
/// Returns the soft limit in force afterwards, when it could be read.
fn raise_open_file_limit() -> Option<u64> {
    let before = rlimit::Resource::NOFILE.get().map(|(soft, _)| soft);
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            if before.is_ok_and(|soft| soft < limit) {
                tracing::info!(limit, "raised the open-file limit");
            }
            if limit < FEW_OPEN_FILES {
                tracing::warn!(
                    limit,
                    "low open-file limit: each connection takes one file; raise the hard limit (ulimit -Hn, systemd LimitNOFILE=)"
                );
            }
            Some(limit)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit");
            before.ok()
        }
    }
}

/// The most descriptor-table slots [`reserve_descriptor_table`] sets aside (512 KiB of
/// kernel memory at 8 bytes a slot).
const RESERVED_DESCRIPTORS: u64 = 65_536;

/// Grows this process's descriptor table at start to as many connections as the
/// open-file limit allows (at most [`RESERVED_DESCRIPTORS`]).
///
/// The kernel otherwise doubles the table as descriptors are opened, and in a
/// multi-threaded process each doubling waits for an RCU grace period
/// (`expand_fdtable`): milliseconds in which no connection is accepted or served. A
/// fresh node taking a connection storm stalled at about 1k, 2k, 4k and 8k connections,
/// which put S1's handshake p99 at 28–39 ms on a new process against 11–17 ms on one
/// that had held the connections before (`bench/README.md`). Copying a descriptor to the
/// highest slot grows the table once, now; closing the copy keeps the table, which the
/// kernel never shrinks. No crate offers this, and it is one `fcntl`.
fn reserve_descriptor_table(listener: &tokio::net::TcpListener, open_file_limit: u64) {
    let Ok(highest) = i32::try_from(open_file_limit.min(RESERVED_DESCRIPTORS).saturating_sub(1))
    else {
        return;
    };
    // The copy is closed as it drops.
    if let Err(error) = rustix::io::fcntl_dupfd_cloexec(listener, highest) {
        tracing::debug!(%error, highest, "cannot reserve the descriptor table");
    }
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
