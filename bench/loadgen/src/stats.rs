//! What a run counts: connections, handshake times, messages sent per room, deliveries,
//! loss, per-publisher order and latency.
//!
//! The generator runs on one thread, so the tallies live in a `RefCell` shared by every
//! connection task: no atomics or locks on the per-delivery path.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

/// Everything measured in one run.
pub struct Stats {
    /// Connections whose Socket.IO CONNECT was acknowledged.
    pub connected: u64,
    /// Connections that failed, by reason.
    pub failures: BTreeMap<String, u64>,
    /// TCP connect → CONNECT acknowledged, in microseconds.
    pub handshake_us: Histogram<u64>,
    /// Connected sockets per room: each message sent to room `r` is expected `members[r]`
    /// times (the sender gets its own copy back).
    pub members: Vec<u64>,
    /// Messages sent per room.
    pub sent: Vec<u64>,
    /// Sends scheduled in this phase by live publishers and not yet made (or failed).
    pub sends_due: u64,
    /// Deliveries received (ours, parsed).
    pub received: u64,
    /// Deliveries whose sequence number was below one already seen from that publisher.
    pub out_of_order: u64,
    /// Deliveries of a sequence number already seen by that receiver.
    pub duplicates: u64,
    /// `message` events whose payload was not one of ours.
    pub foreign: u64,
    /// Send → receive, in microseconds.
    pub latency_us: Histogram<u64>,
    /// When the last delivery arrived.
    pub last_delivery: Option<Instant>,
    /// Sockets that closed before the run told them to.
    pub disconnects: u64,
    /// Sends that failed on an open socket.
    pub send_errors: u64,
    /// `error` events from the server, by code (e.g. `RATE_LIMITED`).
    pub server_errors: BTreeMap<String, u64>,
}

impl Stats {
    /// Empty tallies for `rooms` rooms.
    pub fn new(rooms: usize) -> Self {
        Self {
            connected: 0,
            failures: BTreeMap::new(),
            // Up to 1 hour in µs with 3 significant digits; never fails for these bounds.
            handshake_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"),
            members: vec![0; rooms],
            sent: vec![0; rooms],
            sends_due: 0,
            received: 0,
            out_of_order: 0,
            duplicates: 0,
            foreign: 0,
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds"),
            last_delivery: None,
            disconnects: 0,
            send_errors: 0,
            server_errors: BTreeMap::new(),
        }
    }

    /// A scheduled send to `room` was made (`ok`) or failed.
    pub fn sent_one(&mut self, room: usize, ok: bool) {
        if ok {
            self.sent[room] += 1;
        } else {
            self.send_errors += 1;
        }
        self.sends_due -= 1;
    }

    /// Records a failed connection attempt.
    pub fn fail(&mut self, reason: impl Into<String>) {
        *self.failures.entry(reason.into()).or_default() += 1;
    }

    /// Records an `error` event from the server.
    pub fn server_error(&mut self, code: String) {
        *self.server_errors.entry(code).or_default() += 1;
    }

    /// Connections that failed.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }

    /// Deliveries the run should have seen by now.
    pub fn expected(&self) -> u64 {
        self.sent
            .iter()
            .zip(&self.members)
            .map(|(sent, members)| sent * members)
            .sum()
    }
}

/// Per-receiver view of each publisher's sequence, to count reordering and duplicates.
#[derive(Default)]
pub struct OrderTracker {
    next: HashMap<u32, u64, BuildHasherDefault<IdHasher>>,
}

/// Publisher ids are small integers the generator assigns itself, so one multiplication
/// hashes them well enough; the default SipHash was a visible part of the generator's
/// own per-delivery cost (one lookup per delivery).
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits (hashbrown's tag) and the low bits (its
        // bucket) both differ between neighbouring ids.
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// How one delivery relates to what the receiver saw before from the same publisher.
#[derive(Debug, PartialEq, Eq)]
pub enum Order {
    /// Newer than everything seen (gaps are loss, counted globally, not here).
    Fresh,
    /// Older than something already seen.
    Late,
    /// Seen before.
    Duplicate,
}

impl OrderTracker {
    /// Classifies a delivery. Duplicates are only detected against the newest sequence
    /// seen, which is all a duplicate from these servers could look like.
    pub fn observe(&mut self, publisher: u32, seq: u64) -> Order {
        let next = self.next.entry(publisher).or_insert(0);
        if seq >= *next {
            *next = seq + 1;
            Order::Fresh
        } else if seq + 1 == *next {
            Order::Duplicate
        } else {
            Order::Late
        }
    }
}

/// p50/p90/p99/max (and mean) of a histogram, in its unit.
#[derive(Debug, Serialize, Clone, Copy, Default)]
pub struct Percentiles {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest sample.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Summarises `h`.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_tracker_classifies() {
        let mut t = OrderTracker::default();
        assert_eq!(t.observe(1, 0), Order::Fresh);
        assert_eq!(t.observe(1, 2), Order::Fresh);
        assert_eq!(t.observe(1, 1), Order::Late);
        assert_eq!(t.observe(1, 2), Order::Duplicate);
        assert_eq!(t.observe(2, 5), Order::Fresh);
    }

    #[test]
    fn expected_counts_echo() {
        let mut s = Stats::new(2);
        s.members = vec![10, 3];
        s.sent = vec![5, 2];
        assert_eq!(s.expected(), 56);
    }
}
