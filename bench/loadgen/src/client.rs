//! What every simulated client shares, whatever its transport: the run's context, the
//! phase the run is in, a client's role (room, key, publisher schedule) and what it does
//! with each delivery.

use crate::net::Target;
use crate::proto::{self, Stamp};
use crate::stats::{Order, OrderTracker, Stats};
use std::cell::RefCell;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Shared by all connection tasks of a run (one thread, hence `RefCell`).
pub struct Ctx {
    /// The servers (the nodes of a cluster, or one): client `i` uses `targets[i % n]`.
    pub targets: Vec<Target>,
    /// How many loopback source addresses to spread over.
    pub sources: usize,
    /// Message payload size in bytes.
    pub payload_size: usize,
    /// The one monotonic clock every timestamp is measured from.
    pub base: Instant,
    /// Longest a single handshake may take before it counts as failed.
    pub handshake_timeout: Duration,
    /// The tallies.
    pub stats: RefCell<Stats>,
    /// When publishers publish.
    pub phase: watch::Receiver<Phase>,
    /// Set once, when every client should close.
    pub stop: watch::Receiver<bool>,
}

impl Ctx {
    /// The server client `idx` connects to.
    pub fn target(&self, idx: usize) -> &Target {
        &self.targets[idx % self.targets.len()]
    }
}

/// Where the run is, as far as publishers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Connecting / holding: nobody publishes.
    Idle,
    /// Publishers send on their schedule from `start` until `end`.
    Publishing {
        /// First send time (plus each publisher's offset).
        start: Instant,
        /// No send at or after this.
        end: Instant,
    },
}

/// One client's part in a scenario.
#[derive(Debug, Clone)]
pub struct Role {
    /// Global index (also picks the source address).
    pub idx: usize,
    /// Room index.
    pub room: usize,
    /// The API key (or room name) sent in the CONNECT packet.
    pub key: String,
    /// Set when this client publishes.
    pub publisher: Option<PublishPlan>,
}

/// A publisher's fixed-rate schedule.
#[derive(Debug, Clone, Copy)]
pub struct PublishPlan {
    /// Global publisher id carried in every payload.
    pub id: u32,
    /// Time between two sends.
    pub period: Duration,
    /// Offset of the first send, so publishers do not all fire on the same tick.
    pub offset: Duration,
}

/// A publisher's position in its schedule.
pub struct Schedule {
    plan: Option<PublishPlan>,
    next: Option<Instant>,
    end: Option<Instant>,
    seq: u64,
    /// Sends of this phase not yet taken (counted in `Stats::sends_due` too).
    untaken: u64,
}

impl Schedule {
    /// A schedule that does nothing until a publishing phase starts.
    pub fn new(plan: Option<PublishPlan>) -> Self {
        Self {
            plan,
            next: None,
            end: None,
            seq: 0,
            untaken: 0,
        }
    }

    /// Follows a phase change. Every send the new phase schedules is added to
    /// `Stats::sends_due` until it is made (see `Stats::sent_one`), so the run knows
    /// when the last one is out: a send due just before the end may be made just after.
    pub fn on_phase(&mut self, phase: Phase, ctx: &Ctx) {
        self.abandon(ctx);
        match (phase, self.plan) {
            (Phase::Publishing { start, end }, Some(plan)) => {
                self.next = Some(start + plan.offset).filter(|t| *t < end);
                self.end = Some(end);
                let mut slot = self.next;
                while let Some(at) = slot {
                    self.untaken += 1;
                    slot = Some(at + plan.period).filter(|t| *t < end);
                }
                ctx.stats.borrow_mut().sends_due += self.untaken;
            }
            _ => self.next = None,
        }
    }

    /// Gives up the sends not yet taken (the connection is ending).
    pub fn abandon(&mut self, ctx: &Ctx) {
        ctx.stats.borrow_mut().sends_due -= self.untaken;
        self.untaken = 0;
        self.next = None;
    }

    /// When the next send is due, if any. Open loop: a late send is made at once and the
    /// schedule keeps its grid, so the offered rate does not depend on the server.
    pub fn due(&self) -> Option<Instant> {
        self.next
    }

    /// Builds the next message packet (stamped now) and advances the schedule.
    pub fn take(&mut self, ctx: &Ctx) -> String {
        let (Some(plan), Some(next)) = (self.plan, self.next) else {
            return String::new();
        };
        let stamp = Stamp {
            publisher: plan.id,
            seq: self.seq,
            sent_us: ctx.base.elapsed().as_micros() as u64,
        };
        self.seq += 1;
        self.untaken -= 1;
        let following = next + plan.period;
        self.next = Some(following).filter(|t| Some(*t) < self.end);
        proto::message_packet(&proto::make_payload(stamp, ctx.payload_size))
    }
}

/// A receiver's bookkeeping.
#[derive(Default)]
pub struct Receiver {
    order: OrderTracker,
}

impl Receiver {
    /// Accounts for one `message` delivery.
    pub fn on_message(&mut self, ctx: &Ctx, payload: &str) {
        let now = Instant::now();
        let mut stats = ctx.stats.borrow_mut();
        let Some(stamp) = proto::parse_payload(payload) else {
            stats.foreign += 1;
            return;
        };
        let now_us = now.duration_since(ctx.base).as_micros() as u64;
        let latency = now_us.saturating_sub(stamp.sent_us).max(1);
        let _ = stats.latency_us.record(latency);
        stats.received += 1;
        stats.last_delivery = Some(now);
        match self.order.observe(stamp.publisher, stamp.seq) {
            Order::Fresh => {}
            Order::Late => stats.out_of_order += 1,
            Order::Duplicate => stats.duplicates += 1,
        }
    }
}

/// A deadline far enough away to mean "never" for a parked timer.
pub fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}
