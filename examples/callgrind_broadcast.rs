//! A fixed, deterministic workload on the engine's hot path, for counting instructions
//! under callgrind (`bench/callgrind/check` runs it and compares with a baseline).
//!
//! Three phases, each a function of its own with an unmangled name so the check can
//! collect exactly them (`--toggle-collect`) and dump each one's count (`--dump-after`):
//! - `roomcast_callgrind_setup`: 1,000 long-polling sessions open, CONNECT, join a room;
//! - `roomcast_callgrind_codec`: 1,000 client text frames decoded (WebSocket frame,
//!   Engine.IO packet, Socket.IO event) and the relay's frame encoded for each;
//! - `roomcast_callgrind_relay`: 100 `message` events POSTed by the members in turn, each
//!   broadcast to the room of 1,000 (100,000 deliveries), drained by polls every 20;
//! - `roomcast_callgrind_trickle`: 10 more, each drained at once, so every poll carries
//!   one frame: the shape of a room whose messages come slower than its sockets write;
//! - `roomcast_callgrind_auth`: 1,000 sessions of roomcast's own realtime side open and
//!   CONNECT with a project's API key (key lookup, origin and connection-limit checks,
//!   the join to the project's room), entered as the accept loop enters a poll;
//! - `roomcast_callgrind_project`: 100 `message` events through roomcast's handler
//!   (payload and size checks, the connection's and the project's rate, counters, the
//!   message path's histogram) to that project's 1,000 sockets, drained by polls every 20.
//!
//! The first four measure the engine under a minimal relay; the last two add what the
//! product does per handshake and per message, so a slowdown there is caught too.
//!
//! Nothing in it depends on time or on the scheduler: requests are polled once and must
//! be ready, and the engine's background tasks never run (see `benches/support`). The
//! one randomness left is in session ids and hash seeds, which changes no code path and
//! moves the count by a few instructions in a million.
//!
//! Run by hand: `cargo run --release --example callgrind_broadcast` (prints the counts of
//! work done; a wrong count panics, so the check never measures a broken workload).

// Shared with the divan benches, which use the rest of it.
#[allow(dead_code)]
#[path = "../benches/support/mod.rs"]
mod support;

use bytes::BytesMut;
use roomcast::engine::eio_packet::{self, Inbound, Payload};
use roomcast::engine::sio_packet;
use roomcast::engine::ws::{self, Message, OpCode, Reassembler};
use roomcast::engine::OutFrame;
use std::hint::black_box;
use support::{ProjectRoom, Room, EIO_MESSAGE, ROOM};

/// Sessions in the room.
const MEMBERS: usize = 1_000;
/// Client frames through the codec phase.
const FRAMES: usize = 1_000;
/// Messages relayed to the room.
const MESSAGES: usize = 100;
/// Messages between two drains (a poll then carries this many frames).
const PER_DRAIN: usize = 20;
/// Messages of the trickle phase, each drained before the next.
const TRICKLE: usize = 10;

fn main() {
    // The Prometheus recorder the server installs at start, installed outside the phases
    // (`ProjectRoom` installs it too, for the divan benches; here that finds it done).
    roomcast::telemetry::metrics_handle();
    let room = roomcast_callgrind_setup(MEMBERS);
    let encoded = roomcast_callgrind_codec(FRAMES);
    let delivered = roomcast_callgrind_relay(&room, MESSAGES, PER_DRAIN);
    let trickled = roomcast_callgrind_trickle(&room, TRICKLE);
    let project = roomcast_callgrind_auth(MEMBERS);
    let relayed = roomcast_callgrind_project(&project, MESSAGES, PER_DRAIN);
    assert_eq!(room.namespace().room_size(ROOM), MEMBERS);
    assert_eq!(
        delivered,
        MEMBERS * MESSAGES,
        "every member got every message"
    );
    assert_eq!(
        trickled,
        MEMBERS * TRICKLE,
        "every member got every message"
    );
    assert_eq!(
        relayed,
        MEMBERS * MESSAGES,
        "every socket got every message"
    );
    let stats = project.stats();
    assert_eq!(
        (
            stats.messages_received,
            stats.messages_rejected,
            stats.messages_delivered
        ),
        (MESSAGES as u64, 0, (MEMBERS * MESSAGES) as u64),
        "roomcast's handler accepted and counted every message"
    );
    println!(
        "callgrind_broadcast: {MEMBERS} sessions; {FRAMES} frames decoded ({encoded} bytes \
         encoded); {MESSAGES} messages relayed, {delivered} deliveries; {TRICKLE} trickled, \
         {trickled} deliveries; {MEMBERS} sessions by API key, {MESSAGES} messages through \
         roomcast's handler, {relayed} deliveries"
    );
}

/// Phase 1: the room's sessions connect (handshake GET, CONNECT POST, first poll).
#[no_mangle]
#[inline(never)]
fn roomcast_callgrind_setup(members: usize) -> Room {
    Room::new(members)
}

/// Phase 2: the inbound decode and outbound encode of one message, `frames` times:
/// returns the bytes of the frames the relay would send (the header plus the shared
/// payload), so none of the work can be optimised away.
#[no_mangle]
#[inline(never)]
fn roomcast_callgrind_codec(frames: usize) -> usize {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut wire = BytesMut::new();
    for _ in 0..frames {
        wire.extend_from_slice(&[0x81, 0x80 | EIO_MESSAGE.len() as u8]);
        wire.extend_from_slice(&mask);
        wire.extend(
            EIO_MESSAGE
                .bytes()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4]),
        );
    }
    let mut reassembler = Reassembler::default();
    let mut encoded = 0;
    while let Some(frame) = ws::parse_frame(&mut wire, 1_000_000).expect("a valid frame") {
        let Some(Message::Text(text)) = reassembler.push(frame, 1_000_000).expect("valid") else {
            panic!("a whole text message per frame");
        };
        let Ok(Inbound::Message(Payload::Text(packet))) = eio_packet::parse_text(text.freeze())
        else {
            panic!("an Engine.IO message");
        };
        let text = std::str::from_utf8(&packet).expect("UTF-8");
        let event = sio_packet::parse(text).expect("a Socket.IO event");
        let [literal] = event.args[..] else {
            panic!("one argument");
        };
        let OutFrame::Text(out) = support::message_frame(literal.get()) else {
            panic!("a text frame");
        };
        let mut header = [0u8; ws::MAX_HEADER_LEN];
        encoded += ws::encode_header(OpCode::Text, out.len(), &mut header) + out.len();
        black_box((&header, &out));
    }
    encoded
}

/// Phase 4: `messages` events broadcast one at a time, each drained by every member's
/// poll before the next, so each poll carries one frame. Returns the frames delivered.
#[no_mangle]
#[inline(never)]
fn roomcast_callgrind_trickle(room: &Room, messages: usize) -> usize {
    relay(room, messages, 1)
}

/// Phase 3: `messages` events from the members in turn, each broadcast to the whole
/// room; every member polls after each `per_drain` messages. Returns the frames
/// delivered.
#[no_mangle]
#[inline(never)]
fn roomcast_callgrind_relay(room: &Room, messages: usize, per_drain: usize) -> usize {
    relay(room, messages, per_drain)
}

/// Phase 5: `members` sessions connect to roomcast's realtime side with the project's
/// API key (handshake GET, CONNECT POST) and their CONNECT answers are drained.
#[no_mangle]
#[inline(never)]
fn roomcast_callgrind_auth(members: usize) -> ProjectRoom {
    ProjectRoom::new(members)
}

/// Phase 6: `messages` events from the members in turn through roomcast's handler, each
/// broadcast to the project's room; every member polls after each `per_drain` messages.
/// Returns the frames delivered.
#[no_mangle]
#[inline(never)]
fn roomcast_callgrind_project(room: &ProjectRoom, messages: usize, per_drain: usize) -> usize {
    let members = room.members();
    relay_with(
        members,
        messages,
        per_drain,
        |from| room.post(from, EIO_MESSAGE),
        || room.drain(),
    )
}

/// The relay loop of phases 3 and 4 (not itself a phase: callgrind toggles collection
/// at every entry of a phase function, so phases must not call each other).
fn relay(room: &Room, messages: usize, per_drain: usize) -> usize {
    relay_with(
        room.members(),
        messages,
        per_drain,
        |from| room.post(from, EIO_MESSAGE),
        || room.drain(),
    )
}

/// `messages` posts by the `members` in turn, with a drain by every member after each
/// `per_drain`; returns the frames the drains carried.
fn relay_with(
    members: usize,
    messages: usize,
    per_drain: usize,
    post: impl Fn(usize),
    drain: impl Fn() -> usize,
) -> usize {
    let (mut bytes, mut polls) = (0, 0);
    for i in 0..messages {
        post(i % members);
        if (i + 1) % per_drain == 0 || i + 1 == messages {
            bytes += drain();
            polls += members;
        }
    }
    // Each poll carried n frames of the same length, joined by n - 1 separators.
    let per_frame = EIO_MESSAGE.len() + 1;
    assert_eq!((bytes + polls) % per_frame, 0, "only whole message frames");
    (bytes + polls) / per_frame
}
