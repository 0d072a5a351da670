//! One Engine.IO session: its transport phase (a small state machine), its outbound queue
//! and its heartbeat. Transports and the application reach the client only through here.
//!
//! Sending never blocks and never waits on the network: a frame is appended to the
//! session's outbox and whoever carries the transport (the WebSocket task or a pending
//! long-poll) is woken. An idle WebSocket's frames are written instead with one
//! non-blocking `writev`: at once by the sender ([`Session::send_now`]), or a moment
//! later by the engine's write-behind task ([`Session::send`]). A client
//! whose unsent backlog passes the bound is closed, so one slow reader cannot grow our
//! memory or hold up its room.

use super::eio_packet::{OutFrame, PING};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

/// Frames' worth of queue a connection keeps between batches (a few hundred bytes):
/// enough that steady traffic allocates nothing, small enough that it costs an idle
/// connection little.
pub(crate) const KEPT_QUEUE_CAPACITY: usize = 8;

/// Frames written per `writev` call.
pub(crate) const WRITE_BATCH: usize = 64;

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close packet or closed its WebSocket.
    ClientClose,
    /// The transport failed (connection reset, EOF).
    TransportError,
    /// No pong within `pingTimeout`.
    PingTimeout,
    /// The client broke the protocol (malformed packet, oversize payload…).
    ProtocolError,
    /// The unsent backlog passed the configured bound.
    SlowConsumer,
    /// A second long-poll arrived while one was pending.
    DuplicatePoll,
    /// The application never completed its handshake in time.
    HandshakeTimeout,
    /// The server closed it (shutdown, or the application asked).
    ServerClose,
}

/// Where the session's transport stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Long-polling; no WebSocket yet.
    Polling,
    /// A WebSocket has sent the probe; polls are answered at once.
    Upgrading,
    /// The WebSocket carries everything.
    WebSocket,
    /// Gone.
    Closed(CloseReason),
}

/// What happened to a frame handed to [`Session::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Queued for the client.
    Queued,
    /// The session is closed; nothing was queued.
    Closed,
    /// The frame pushed the backlog over the bound: the session is now closed.
    Overflow,
}

/// What [`Session::take_for_writer`] found.
pub(crate) enum WriterTurn {
    /// The session is closed.
    Closed,
    /// Open: how much of the first taken frame is already on the wire, and whether a
    /// graceful close is due once everything is written.
    Open {
        first_frame_written: usize,
        closing: Option<CloseReason>,
    },
}

/// Facts about the request that opened the session, for the application's auth hook.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The `Origin` header, if the client sent one.
    pub origin: Option<Box<str>>,
    /// The peer address.
    pub remote: Option<SocketAddr>,
}

impl Core {
    /// The WebSocket to write to when the session is on one that nobody is writing and
    /// that is not closing: only then may a frame go out from outside its task.
    fn idle_websocket(&self) -> Option<&Arc<TcpStream>> {
        let idle = !self.writer_busy && self.close_when_flushed.is_none();
        self.direct.as_ref().filter(|_| idle)
    }
}

pub(crate) struct Core {
    pub(crate) phase: Phase,
    pub(crate) outbox: VecDeque<OutFrame>,
    backlog: usize,
    pub(crate) poll_waiting: bool,
    pub(crate) ws_attached: bool,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    established: bool,
    /// Close once the outbox has been written (a graceful server close).
    pub(crate) close_when_flushed: Option<CloseReason>,
    /// The client closed over long-polling with no poll waiting, so the poll it may have
    /// sent alongside (still in flight) is owed the `noop` a waiting poll would have got.
    noop_owed: bool,
    /// The WebSocket carrying the session, for writing a frame straight from `send_now` while
    /// nothing is queued or being written (set by the WebSocket task once it carries the
    /// session; never while an upgrade is in progress or with write pacing).
    direct: Option<Arc<TcpStream>>,
    /// The WebSocket task holds frames it took from the outbox and has not finished
    /// writing: a frame sent now must queue behind them.
    writer_busy: bool,
    /// Bytes of the outbox's first frame that `send_now` already wrote (a partial write).
    first_frame_written: usize,
    /// The session is on the engine's write-behind list: its queued frames will be
    /// written by the write-behind task rather than by waking the WebSocket task.
    write_behind_due: bool,
}

/// An Engine.IO session, shared by its transports and the application.
pub struct Session<S> {
    sid: Box<str>,
    pub(crate) core: Mutex<Core>,
    pub(crate) notify: Notify,
    /// Serialises inbound processing so packets are handled in arrival order even when
    /// a long-poll POST and the WebSocket overlap during an upgrade.
    pub(crate) inbound: tokio::sync::Mutex<()>,
    max_backlog: usize,
    created: Instant,
    closed_tx: mpsc::UnboundedSender<Box<str>>,
    /// The engine's write-behind list (see [`Session::send`]).
    write_behind_tx: mpsc::UnboundedSender<Arc<Session<S>>>,
    info: ConnInfo,
    /// The application's per-session state.
    pub state: S,
}

impl<S> Session<S> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sid: Box<str>,
        phase: Phase,
        info: ConnInfo,
        ping_interval: Duration,
        max_backlog: usize,
        closed_tx: mpsc::UnboundedSender<Box<str>>,
        write_behind_tx: mpsc::UnboundedSender<Arc<Session<S>>>,
        state: S,
    ) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(Self {
            sid,
            core: Mutex::new(Core {
                phase,
                outbox: VecDeque::new(),
                backlog: 0,
                poll_waiting: false,
                ws_attached: phase == Phase::WebSocket,
                next_ping: now + ping_interval,
                pong_deadline: None,
                established: false,
                close_when_flushed: None,
                noop_owed: false,
                direct: None,
                writer_busy: false,
                first_frame_written: 0,
                write_behind_due: false,
            }),
            notify: Notify::new(),
            inbound: tokio::sync::Mutex::new(()),
            max_backlog,
            created: now,
            closed_tx,
            write_behind_tx,
            info,
            state,
        })
    }

    /// The Engine.IO session id.
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The request facts captured at the handshake.
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }

    /// Queues a frame for the client without waiting, and wakes the transport. An idle
    /// WebSocket's frames are written by the engine's write-behind task instead, once the
    /// tasks already runnable have run, so that every frame queued meanwhile shares one
    /// `writev` and no task is woken per recipient (see [`Session::write_behind`]).
    pub fn send(self: &Arc<Self>, frame: OutFrame) -> SendOutcome {
        self.deliver(frame, false)
    }

    /// Sends a frame without waiting, writing it here and now when the session is on a
    /// WebSocket with nothing queued and no write in progress (one non-blocking
    /// `writev`); what the socket does not take, or a frame for a busy or long-polling
    /// session, is queued as by [`Session::send`].
    ///
    /// Why write from the sender: waking a task per recipient to make the same one
    /// syscall costs a scheduler round trip (queue push, poll, re-arming its wake-ups)
    /// for every delivery. Order is safe because the outbox and the writer's state are
    /// only ever changed under `core`'s lock, which the write holds.
    pub fn send_now(self: &Arc<Self>, frame: OutFrame) -> SendOutcome {
        self.deliver(frame, true)
    }

    fn deliver(self: &Arc<Self>, frame: OutFrame, write_now: bool) -> SendOutcome {
        let core = self.core.lock();
        if matches!(core.phase, Phase::Closed(_)) || core.close_when_flushed.is_some() {
            return SendOutcome::Closed;
        }
        self.write_or_queue(core, frame, write_now)
    }

    /// Under `core`'s lock: writes the frame now when asked and the WebSocket is idle,
    /// else queues it (or what a short write left of it) and wakes the transport.
    fn write_or_queue(
        self: &Arc<Self>,
        mut core: parking_lot::MutexGuard<'_, Core>,
        frame: OutFrame,
        write_now: bool,
    ) -> SendOutcome {
        if write_now && core.outbox.is_empty() {
            if let Some(tcp) = core.idle_websocket() {
                let Some(written) = super::eio::write_frame_now(tcp, &frame) else {
                    return SendOutcome::Queued; // all of it is on the wire
                };
                core.first_frame_written = written;
            }
        }
        core.backlog += frame.len();
        if core.backlog > self.max_backlog {
            self.close_locked(&mut core, CloseReason::SlowConsumer);
            return SendOutcome::Overflow;
        }
        let was_empty = core.outbox.is_empty();
        core.outbox.push_back(frame);
        if !was_empty {
            // Whoever was told of the first frame takes this one with it.
            return SendOutcome::Queued;
        }
        if !write_now && core.idle_websocket().is_some() {
            if !core.write_behind_due {
                core.write_behind_due = true;
                drop(core);
                if self.write_behind_tx.send(self.clone()).is_ok() {
                    return SendOutcome::Queued;
                }
                self.core.lock().write_behind_due = false;
                self.notify.notify_one();
            }
            return SendOutcome::Queued;
        }
        drop(core);
        self.notify.notify_one();
        SendOutcome::Queued
    }

    /// The write-behind task's turn (see [`Session::send`]): writes what is queued
    /// while the WebSocket is still idle, and leaves the rest (a full socket, an error, a
    /// busy or gone WebSocket) to the WebSocket task, which it wakes.
    pub(crate) fn write_behind(&self) {
        let mut core = self.core.lock();
        core.write_behind_due = false;
        if matches!(core.phase, Phase::Closed(_)) || core.outbox.is_empty() {
            return;
        }
        let idle = core.idle_websocket().is_some();
        let Core {
            direct,
            outbox,
            first_frame_written,
            backlog,
            ..
        } = &mut *core;
        if let (true, Some(tcp)) = (idle, direct.as_ref()) {
            while let Ok(true) =
                super::eio::write_frames(tcp, outbox, first_frame_written, WRITE_BATCH)
            {
            }
            if outbox.is_empty() {
                *backlog = 0;
                return;
            }
            *backlog = outbox.iter().map(OutFrame::len).sum();
        }
        drop(core);
        self.notify.notify_one();
    }

    /// Closes the session now; queued frames are dropped.
    pub fn close(&self, reason: CloseReason) {
        let mut core = self.core.lock();
        self.close_locked(&mut core, reason);
    }

    /// The client sent a close packet. Over long-polling, a poll sent at the same time
    /// may reach us after the close (two connections, no order between them); it gets
    /// the `noop` it would have got had it arrived first (see [`Session::take_noop_owed`]).
    pub(crate) fn close_by_client(&self) {
        let mut core = self.core.lock();
        if core.phase == Phase::Polling && !core.poll_waiting {
            core.noop_owed = true;
        }
        self.close_locked(&mut core, CloseReason::ClientClose);
    }

    /// Whether a late poll is owed a `noop` (answers true once).
    pub(crate) fn take_noop_owed(&self) -> bool {
        std::mem::take(&mut self.core.lock().noop_owed)
    }

    /// Closes the session once everything queued so far has reached the transport.
    pub fn close_when_flushed(&self, reason: CloseReason) {
        let mut core = self.core.lock();
        if matches!(core.phase, Phase::Closed(_)) || core.close_when_flushed.is_some() {
            return;
        }
        // Long-polling learns of the close from a close packet in a poll of its own,
        // after the one that carries the data: socket.io-client handles a transport close
        // before the packets that arrived with it, and would lose them.
        core.close_when_flushed = Some(reason);
        drop(core);
        self.notify.notify_one();
    }

    pub(crate) fn close_locked(&self, core: &mut Core, reason: CloseReason) {
        if matches!(core.phase, Phase::Closed(_)) {
            return;
        }
        core.phase = Phase::Closed(reason);
        core.outbox = VecDeque::new();
        core.backlog = 0;
        core.direct = None;
        core.first_frame_written = 0;
        // The engine's reaper removes the session and tells the application; doing it
        // here could re-enter locks held by whoever called `send`.
        let _ = self.closed_tx.send(self.sid.clone());
        self.notify.notify_one();
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.core.lock().phase, Phase::Closed(_))
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.core.lock().phase
    }

    /// The application finished its own handshake (a Socket.IO CONNECT succeeded), so the
    /// handshake deadline no longer applies.
    pub fn mark_established(&self) {
        self.core.lock().established = true;
    }

    /// Takes everything queued; returns the frames and whether a graceful close is due
    /// once they are written.
    pub(crate) fn take_outbox(&self) -> (VecDeque<OutFrame>, Option<CloseReason>) {
        let mut core = self.core.lock();
        core.backlog = 0;
        (std::mem::take(&mut core.outbox), core.close_when_flushed)
    }

    /// Lets `send_now` write this WebSocket directly from now on (the task carrying it calls
    /// this once the socket carries the session, and [`Self::stop_direct`] when it ends).
    pub(crate) fn start_direct(&self, tcp: Arc<TcpStream>) {
        let mut core = self.core.lock();
        if !matches!(core.phase, Phase::Closed(_)) {
            core.direct = Some(tcp);
        }
    }

    /// No more direct writes: the WebSocket task is ending (and the socket must close
    /// when it drops its handle).
    pub(crate) fn stop_direct(&self) {
        self.core.lock().direct = None;
    }

    /// The WebSocket task's turn at the outbox, under one lock: when `pending` (what it
    /// still has to write) is empty, moves the queued frames into it and returns how
    /// many bytes of the first one `send_now` already wrote. The task is then the writer
    /// until [`Self::release_writer`], so `send_now` queues instead of writing.
    /// With `hold`, the task stays the writer even with nothing taken (it is about to
    /// add a frame of its own, which what others send next must follow).
    pub(crate) fn take_for_writer<T>(
        &self,
        pending: &mut VecDeque<T>,
        wrap: impl FnMut(OutFrame) -> T,
        hold: bool,
    ) -> WriterTurn {
        let mut core = self.core.lock();
        if matches!(core.phase, Phase::Closed(_)) {
            return WriterTurn::Closed;
        }
        let mut written = 0;
        if pending.is_empty() {
            core.backlog = 0;
            written = std::mem::take(&mut core.first_frame_written);
            pending.extend(core.outbox.drain(..).map(wrap));
            if core.outbox.capacity() > KEPT_QUEUE_CAPACITY {
                // Release a burst's storage; a small queue stays for the next batch.
                core.outbox = VecDeque::new();
            }
        }
        core.writer_busy = hold || !pending.is_empty();
        WriterTurn::Open {
            first_frame_written: written,
            closing: core.close_when_flushed,
        }
    }

    /// The WebSocket task wrote everything it held: `send_now` may write directly again,
    /// unless more was queued meanwhile (then false, and the task takes it).
    pub(crate) fn release_writer(&self) -> bool {
        let mut core = self.core.lock();
        if !core.outbox.is_empty() {
            return false;
        }
        core.writer_busy = false;
        true
    }

    /// Gives back an emptied outbox taken by [`Self::take_outbox`], so that a busy
    /// session does not allocate a new queue for every batch; a large one is dropped
    /// instead, so a burst does not leave a big queue on a connection gone quiet.
    pub(crate) fn recycle_outbox(&self, mut spare: VecDeque<OutFrame>) {
        if spare.capacity() > KEPT_QUEUE_CAPACITY {
            return;
        }
        spare.clear();
        let mut core = self.core.lock();
        if core.outbox.capacity() == 0 && !matches!(core.phase, Phase::Closed(_)) {
            core.outbox = spare;
        }
    }

    /// A pong arrived: schedule the next ping.
    pub(crate) fn on_pong(&self, ping_interval: Duration) {
        let mut core = self.core.lock();
        core.pong_deadline = None;
        core.next_ping = Instant::now() + ping_interval;
    }

    /// Heartbeat and deadline bookkeeping, run by the engine's ticker and before serving a
    /// request (so an expired session is never answered as alive).
    pub(crate) fn tick(
        self: &Arc<Self>,
        now: Instant,
        ping_timeout: Duration,
        handshake_timeout: Option<Duration>,
    ) {
        let mut core = self.core.lock();
        if matches!(core.phase, Phase::Closed(_)) {
            return;
        }
        if let Some(deadline) = core.pong_deadline {
            if now >= deadline {
                self.close_locked(&mut core, CloseReason::PingTimeout);
            }
            return;
        }
        if let Some(limit) = handshake_timeout {
            if !core.established && now.duration_since(self.created) >= limit {
                self.close_locked(&mut core, CloseReason::HandshakeTimeout);
                return;
            }
        }
        if now >= core.next_ping {
            // The deadline runs from when the ping was due, not from when the ticker got
            // to it, so a session expires exactly pingInterval + pingTimeout after its
            // last pong.
            core.pong_deadline = Some(core.next_ping + ping_timeout);
            let _ = self.write_or_queue(core, PING, true);
        }
    }
}
