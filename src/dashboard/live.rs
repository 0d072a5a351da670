//! `GET /projects/{id}/live`: the project page's live feed as Server-Sent Events.
//!
//! - `stats` every second: the project's counters as JSON;
//! - `message` for each message broadcast in the project's room, as a JSON string (JSON
//!   so that line breaks in a message cannot break the SSE framing);
//! - `skipped` with a count when this viewer fell behind and missed messages;
//! - `gone` once, when the project no longer exists (deleted, maybe in another tab).
//!
//! The stream authenticates with the session cookie like every page, re-checks that the
//! project is still the viewer's every second, and is not a Socket.IO client, so it never
//! counts as one of the project's connections.

use super::session::Viewer;
use super::PageError;
use crate::app::AppState;
use crate::platform::{PlatformError, User};
use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::time::{interval, Interval, MissedTickBehavior};

const STATS_EVERY: Duration = Duration::from_secs(1);

struct Feed {
    state: AppState,
    user: User,
    id: String,
    ticker: Interval,
    /// `None` once the room's feed closed; the stats keep coming.
    messages: Option<Receiver<Arc<str>>>,
    done: bool,
}

/// `GET /projects/{id}/live`.
pub async fn live(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let project = state.platform.get_project(&viewer.user, &id).await?;
    let mut ticker = interval(STATS_EVERY);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed {
        messages: Some(state.realtime.subscribe(&project.id)),
        state,
        user: viewer.user,
        id: project.id.0,
        ticker,
        done: false,
    };
    let events = stream::unfold(feed, |mut feed| async move {
        if feed.done {
            return None;
        }
        let event = next_event(&mut feed).await;
        Some((Ok::<_, Infallible>(event), feed))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

async fn next_event(feed: &mut Feed) -> Event {
    loop {
        let message = async {
            match feed.messages.as_mut() {
                Some(receiver) => receiver.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = message => match received {
                Ok(text) => {
                    return json_event("message", &*text);
                }
                Err(RecvError::Lagged(skipped)) => return json_event("skipped", skipped),
                Err(RecvError::Closed) => feed.messages = None,
            },
            _ = feed.ticker.tick() => {
                match feed.state.platform.project_stats(&feed.user, &feed.id).await {
                    Ok(stats) => return json_event("stats", stats),
                    Err(PlatformError::NotFound | PlatformError::Unauthenticated) => {
                        feed.done = true;
                        return Event::default().event("gone").data("");
                    }
                    // A database hiccup: skip this tick, the next one may work.
                    Err(error) => {
                        tracing::warn!(error = format!("{error:#}"), "live stats failed");
                    }
                }
            }
        }
    }
}

fn json_event(name: &str, data: impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event(name).data("null"))
}
