//! The application: [`AppState`], [`App::build`] (database, realtime, domain layer) and
//! [`App::router`], the one place where every route is mounted.
//!
//! The app never binds a port or listens for signals: [`App::serve`] takes a bound
//! listener and a shutdown future, so tests run many apps side by side on port 0.

use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::ApiError;
use crate::http;
use crate::platform::{Platform, PlatformConfig, StoreDirectory};
use crate::realtime::{Realtime, RealtimeConfig};
use crate::store::Store;
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Largest REST request body (SPEC §2); larger ones get 413 `PAYLOAD_TOO_LARGE`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Password hashes that may run at once (each takes ~19 MiB and a core for a while).
const HASHING_CONCURRENCY: usize = 2;
/// How long the last counter flush may take at shutdown (SPEC §1: exit within 10 s).
const COUNTERS_FLUSH: Duration = Duration::from_secs(2);
/// How long in-flight HTTP requests may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// An unknown path: the dashboard's HTML page for a browser asking for a page outside
/// the API, the JSON error (SPEC §2) for everything else.
async fn not_found(request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let wants_html = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html && !request.uri().path().starts_with("/api/") {
        crate::dashboard::PageError::NotFound.into_response()
    } else {
        ApiError::NotFound.into_response()
    }
}

/// What every handler can reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Domain layer (accounts, projects, keys).
    pub platform: Platform,
    /// Database (used directly only by probes).
    pub store: Store,
    /// Realtime side (key resolution, publish, stats).
    pub realtime: Realtime,
    /// Membership of a cluster, when `--redis-url` is set.
    pub cluster: Option<Cluster>,
    /// Validated settings.
    pub config: Arc<Config>,
    /// Prometheus registry handle.
    pub metrics: PrometheusHandle,
}

/// A built application, ready to serve.
pub struct App {
    state: AppState,
}

impl App {
    /// Validates `config`, connects to and migrates the database, and wires the realtime
    /// side to it.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let store = Store::connect(&config.database_url).await?;
        store.migrate().await?;
        tracing::info!(backend = store.backend(), "database ready");
        Self::with_store(config, store)
    }

    /// Builds the app over an already migrated store.
    pub fn with_store(config: Config, store: Store) -> anyhow::Result<Self> {
        let limits = config.limits();
        // Install the metrics recorder before anything creates metric handles.
        let metrics = crate::telemetry::metrics_handle();
        let directory = Arc::new(StoreDirectory::new(store.clone(), limits.clone()));
        let realtime = Realtime::new(
            RealtimeConfig {
                limits: limits.clone(),
                ping_interval: Duration::from_millis(config.ping_interval_ms),
                ping_timeout: Duration::from_millis(config.ping_timeout_ms),
                max_payload: config.max_payload_bytes,
                max_backlog: config.max_backlog_bytes,
                cors_origins: config.cors_origins.clone(),
            },
            directory.clone(),
        );
        let cluster = match &config.redis_url {
            Some(url) => {
                if store.backend() == "sqlite" {
                    tracing::warn!(
                        "multi-node mode on SQLite: every node must share this one file; \
                         use PostgreSQL when nodes run on several machines"
                    );
                }
                Some(Cluster::join(url, &realtime)?)
            }
            None => {
                realtime.keep_counters(directory);
                None
            }
        };
        let platform = Platform::new(
            store.clone(),
            realtime.clone(),
            PlatformConfig {
                limits,
                session_ttl: config.session_ttl(),
                hashing_concurrency: HASHING_CONCURRENCY,
            },
        );
        match &cluster {
            Some(cluster) => platform.share_login_throttle(Arc::new(cluster.clone())),
            None => platform.keep_login_failures(),
        }
        let state = AppState {
            platform,
            store,
            realtime,
            cluster,
            config: Arc::new(config),
            metrics,
        };
        Ok(Self { state })
    }

    /// The shared state (tests reach the store and realtime side through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Every route of the server.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .merge(http::auth::router())
            .merge(http::projects::router())
            .merge(http::messages::router())
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(axum::middleware::from_fn(http::extract::read_bodies_whole));
        Router::new()
            .merge(api)
            .merge(http::probes::router())
            .merge(crate::dashboard::router())
            .fallback(not_found)
            .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
            .layer(tower_http::trace::TraceLayer::new_for_http())
            .with_state(self.state.clone())
            .merge(self.state.realtime.router())
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests and closes the
    /// database pool.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let address = listener.local_addr().context("reading the bound address")?;
        tracing::info!(%address, "serving");
        let realtime = self.state.realtime.clone();
        let cluster = self.state.cluster.clone();
        let last_flush = self.state.cluster.clone();
        let shutdown = async move {
            shutdown.await;
            // Close every client transport first: long-polls return, WebSockets get a
            // close frame, and socket.io clients reconnect by themselves (elsewhere).
            realtime.close_all();
            if let Some(cluster) = cluster {
                cluster.leave().await;
            }
        };
        let tap = self.state.realtime.websocket_tap();
        http::serve::serve(listener, self.router(), Some(tap), shutdown, DRAIN).await;
        // The last counter changes go to the database (a single node) or to Redis (a
        // cluster) before the process ends.
        let flushed = tokio::time::timeout(COUNTERS_FLUSH, async {
            if let Some(cluster) = &last_flush {
                cluster.flush_all(&self.state.realtime).await;
            }
            self.state.realtime.flush_counters().await
        });
        if !matches!(flushed.await, Ok(true)) {
            tracing::warn!("the last message counters could not be stored");
        }
        self.state.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
