//! The pages' live feeds, as Server-Sent Events.
//!
//! `GET /projects/{id}/live` (the project page):
//! - `stats` every second: the project's counters as JSON;
//! - `message` for each message broadcast in the project's room, as a JSON string (JSON
//!   so that line breaks in a message cannot break the SSE framing);
//! - `skipped` with a count when this viewer fell behind and missed messages;
//! - `gone` once, when the project no longer exists (deleted, maybe in another tab).
//!
//! `GET /projects/live` (the list): `connections` every second, `{project id: count}`.
//!
//! Feeds authenticate with the session cookie like every page and re-check it (and the
//! project's owner) every second, so logging out or deleting elsewhere ends them with
//! `signed-out` / `gone`. A feed is not a Socket.IO client, so it never counts as one of
//! the project's connections.

use super::session::Viewer;
use super::PageError;
use crate::app::AppState;
use crate::platform::secrets::SessionToken;
use crate::platform::{PlatformError, User};
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::time::{interval, Interval, MissedTickBehavior};

const EVERY: Duration = Duration::from_secs(1);

/// What one feed needs between events.
struct Feed {
    state: AppState,
    token: SessionToken,
    /// The project, for a project page's feed; `None` for the list's.
    project: Option<String>,
    ticker: Interval,
    /// The room's messages; `None` for the list, or once the room's feed closed.
    messages: Option<Receiver<Arc<str>>>,
    done: bool,
}

impl Feed {
    fn new(state: AppState, viewer: Viewer, project: Option<(String, Receiver<Arc<str>>)>) -> Self {
        let mut ticker = interval(EVERY);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (project, messages) = project.map_or((None, None), |(id, rx)| (Some(id), Some(rx)));
        Self {
            state,
            token: viewer.token,
            project,
            ticker,
            messages,
            done: false,
        }
    }

    fn into_response(self) -> Response {
        let events = stream::unfold(self, |mut feed| async move {
            if feed.done {
                return None;
            }
            let event = feed.next_event().await;
            Some((Ok::<_, Infallible>(event), feed))
        });
        Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response()
    }

    async fn next_event(&mut self) -> Event {
        loop {
            let messages = self.messages.as_mut();
            let message = async {
                match messages {
                    Some(receiver) => receiver.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = message => match received {
                    Ok(text) => return json_event("message", &*text),
                    Err(RecvError::Lagged(skipped)) => return json_event("skipped", skipped),
                    Err(RecvError::Closed) => self.messages = None,
                },
                _ = self.ticker.tick() => match self.tick().await {
                    Ok(event) => return event,
                    Err(PlatformError::Unauthenticated) => return self.end("signed-out"),
                    Err(PlatformError::NotFound) => return self.end("gone"),
                    // A database hiccup: skip this tick, the next one may work.
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "live feed tick failed");
                    }
                },
            }
        }
    }

    /// The periodic event, after checking the session is still live.
    async fn tick(&self) -> Result<Event, PlatformError> {
        let user: User = self.state.platform.authenticate(&self.token).await?;
        match &self.project {
            Some(id) => {
                let stats = self.state.platform.project_stats(&user, id).await?;
                Ok(json_event("stats", stats))
            }
            None => {
                let projects = self.state.platform.list_projects(&user).await?;
                let counts: BTreeMap<String, u64> = projects
                    .into_iter()
                    .map(|p| (p.id.0.clone(), self.state.realtime.connections(&p.id)))
                    .collect();
                Ok(json_event("connections", counts))
            }
        }
    }

    fn end(&mut self, name: &str) -> Event {
        self.done = true;
        // Some data, however little: a browser drops an event without a `data:` line
        // instead of dispatching it, and the page would never learn the feed ended.
        Event::default().event(name).data("null")
    }
}

/// `GET /projects/{id}/live`.
pub async fn project(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let project = state.platform.get_project(&viewer.user, &id).await?;
    let messages = state.realtime.subscribe(&project.id);
    Ok(Feed::new(state, viewer, Some((project.id.0, messages))).into_response())
}

/// `GET /projects/live`.
pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Response {
    Feed::new(state, viewer, None).into_response()
}

fn json_event(name: &str, data: impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name).data("null"))
}
