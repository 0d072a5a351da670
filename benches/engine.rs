//! Micro-benchmarks of the engine's hot paths: Engine.IO and Socket.IO packet parse and
//! encode, WebSocket frame decode and header encode, and a broadcast of one shared frame
//! to a room of 1,000 sessions through the real `Namespace::broadcast`, the bare engine's
//! inbound path, and roomcast's own handler.
//!
//! `cargo bench --bench engine` (add a filter such as `broadcast` to run a part).
//!
//! divan rather than criterion: a plain `#[divan::bench]` per case, per-benchmark sample
//! settings (the broadcast cases need one input per iteration), throughput counters, a
//! whole run in seconds, and a fraction of criterion's dependencies (no plotting or
//! rayon) to compile on a 2-core machine. Timings here are for comparing commits on one
//! machine; the instruction-count check in `bench/callgrind/` is what CI gates on.

mod support;

use bytes::{Bytes, BytesMut};
use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, Bencher};
use roomcast::engine::eio_packet::{self, OutFrame};
use roomcast::engine::sio_packet;
use roomcast::engine::ws::{self, OpCode, Reassembler};
use roomcast::engine::Delivery;
use std::cell::Cell;
use support::{Entry, PollingClients, ProjectRoom, Room, EIO_MESSAGE, LITERAL, ROOM, SIO_MESSAGE};

fn main() {
    divan::main();
}

// A few sub-microsecond cases below fix `sample_size`: their first, cold sample is slow
// enough that divan would otherwise settle on one iteration per sample, and time them
// at the resolution of its 20 ns timer.

/// Subscribers in the broadcast benchmarks (issue 5's S2 room).
const MEMBERS: usize = 1_000;

/// Engine.IO packets (`src/engine/eio_packet.rs`).
mod eio {
    use super::*;

    /// The client's `42[...]` message as one WebSocket text frame carries it.
    #[divan::bench]
    fn parse_message(bencher: Bencher) {
        bencher
            .counter(BytesCount::new(EIO_MESSAGE.len()))
            .bench(|| {
                eio_packet::parse_text(black_box(Bytes::from_static(EIO_MESSAGE.as_bytes())))
            });
    }

    /// A long-polling POST body of ten such messages.
    #[divan::bench(sample_size = 64)]
    fn parse_payload_10(bencher: Bencher) {
        let body = Bytes::from([EIO_MESSAGE; 10].join("\u{1e}"));
        bencher
            .counter(ItemsCount::new(10usize))
            .bench(|| eio_packet::parse_payload(black_box(body.clone())));
    }

    /// A poll answer carrying one frame (shared, not copied).
    #[divan::bench]
    fn encode_payload_1(bencher: Bencher) {
        let frames = [OutFrame::Text(Bytes::from_static(EIO_MESSAGE.as_bytes()))];
        bencher.bench(|| eio_packet::encode_payload(black_box(&frames)));
    }

    /// A poll answer carrying ten queued frames (joined into one body).
    #[divan::bench]
    fn encode_payload_10(bencher: Bencher) {
        let frames = vec![OutFrame::Text(Bytes::from_static(EIO_MESSAGE.as_bytes())); 10];
        bencher
            .counter(ItemsCount::new(10usize))
            .bench(|| eio_packet::encode_payload(black_box(&frames)));
    }

    /// The open packet of every new session.
    #[divan::bench(sample_size = 64)]
    fn encode_open() -> OutFrame {
        eio_packet::open_packet(
            black_box("AAAAAAAAAAAAAAAAAAAA"),
            true,
            25_000,
            20_000,
            1_000_000,
        )
    }
}

/// Socket.IO packets (`src/engine/sio_packet.rs`).
mod sio {
    use super::*;

    /// `2["message","<64 bytes>"]`: type, JSON array, event name, raw argument.
    #[divan::bench(sample_size = 64)]
    fn parse_event(bencher: Bencher) {
        bencher
            .counter(BytesCount::new(SIO_MESSAGE.len()))
            .bench(|| sio_packet::parse(black_box(SIO_MESSAGE)).map(|p| p.args.len()));
    }

    /// `42["message","<64 bytes>"]` from the event name and the raw argument.
    #[divan::bench]
    fn encode_event(bencher: Bencher) {
        let arg =
            serde_json::value::RawValue::from_string(LITERAL.to_owned()).expect("a JSON string");
        let args = [&*arg];
        bencher.bench(|| sio_packet::event("/", None, black_box("message"), &args, 0));
    }
}

/// WebSocket framing (`src/engine/ws.rs`).
mod websocket {
    use super::*;

    /// A client frame: masked, final, of `opcode`, as a browser sends it.
    fn masked(opcode: u8, payload: &[u8]) -> BytesMut {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = BytesMut::with_capacity(payload.len() + 14);
        out.extend_from_slice(&[0x80 | opcode]);
        match payload.len() {
            n if n < 126 => out.extend_from_slice(&[0x80 | n as u8]),
            n => {
                out.extend_from_slice(&[0x80 | 126]);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Parse, unmask, reassemble and UTF-8-check one frame (a fresh copy per iteration,
    /// since parsing consumes the buffer).
    fn decode(bencher: Bencher, frame: BytesMut) {
        let mut reassembler = Reassembler::default();
        bencher
            .counter(BytesCount::new(frame.len()))
            .with_inputs(|| frame.clone())
            .bench_local_refs(|buf| {
                let frame = ws::parse_frame(buf, 1_000_000)
                    .expect("a valid frame")
                    .expect("a whole frame");
                reassembler.push(frame, 1_000_000).expect("a valid message")
            });
    }

    /// The client's 64-byte `message` event in a text frame.
    #[divan::bench]
    fn decode_text_message(bencher: Bencher) {
        decode(bencher, masked(0x1, EIO_MESSAGE.as_bytes()));
    }

    /// A 4 KiB text frame: the unmask and UTF-8 check per byte.
    #[divan::bench]
    fn decode_text_4k(bencher: Bencher) {
        decode(bencher, masked(0x1, &[b'a'; 4096]));
    }

    /// The header of a server frame (the payload itself is shared, never copied).
    #[divan::bench]
    fn encode_header() -> usize {
        let mut out = [0u8; ws::MAX_HEADER_LEN];
        let len = ws::encode_header(OpCode::Text, black_box(EIO_MESSAGE.len()), &mut out);
        black_box(&out);
        len
    }
}

/// Fan-out to a room of 1,000 connected sessions (`src/engine/sio.rs`, `session.rs`).
///
/// Each iteration queues one frame per member; the queues are emptied between
/// iterations (untimed, by the polling transport) so every iteration starts from the
/// same state, as a writer keeping up with the room leaves it.
mod broadcast {
    use super::*;

    /// `Namespace::broadcast` of one shared, already-encoded frame.
    #[divan::bench(sample_count = 200, sample_size = 1)]
    fn room_1000(bencher: Bencher) {
        let room = Room::new(MEMBERS);
        let namespace = room.namespace();
        let frame = support::message_frame(LITERAL);
        let queued = Cell::new(false);
        bencher
            .counter(ItemsCount::new(room.members()))
            .with_inputs(|| {
                if queued.replace(false) {
                    room.drain();
                }
            })
            .bench_local_values(|()| {
                queued.set(true);
                namespace.broadcast(ROOM, &frame, None, Delivery::Queued)
            });
    }

    /// One client's `message` by long-polling POST through the whole inbound path:
    /// payload split, Socket.IO parse, the relay's encode, the broadcast.
    #[divan::bench(sample_count = 200, sample_size = 1)]
    fn relay_post_1000(bencher: Bencher) {
        posts_in_turn(bencher, &Room::new(MEMBERS));
    }

    /// The same `message` through roomcast's own handler (payload and size checks, the
    /// connection's and the project's rate, counters) to a project's 1,000 sessions.
    #[divan::bench(sample_count = 200, sample_size = 1)]
    fn project_post_1000(bencher: Bencher) {
        posts_in_turn(bencher, &ProjectRoom::new(MEMBERS));
    }

    /// Times one POSTed `message` per iteration, the members posting in turn (so no
    /// connection's rate limit is reached); the room's polls drain it, untimed.
    fn posts_in_turn<E: Entry>(bencher: Bencher, room: &PollingClients<E>) {
        let queued = Cell::new(false);
        let next = Cell::new(0);
        bencher
            .counter(ItemsCount::new(room.members()))
            .with_inputs(|| {
                if queued.replace(false) {
                    room.drain();
                }
            })
            .bench_local_values(|()| {
                queued.set(true);
                let from = next.get();
                next.set((from + 1) % room.members());
                room.post(from, EIO_MESSAGE);
            });
    }

    /// The other half of a delivery over long-polling: every member's poll takes its
    /// one queued frame (1,000 GET requests through `SocketIo::handle`).
    #[divan::bench(sample_count = 50, sample_size = 1)]
    fn poll_drain_1000(bencher: Bencher) {
        let room = Room::new(MEMBERS);
        let namespace = room.namespace();
        let frame = support::message_frame(LITERAL);
        bencher
            .counter(ItemsCount::new(room.members()))
            .with_inputs(|| namespace.broadcast(ROOM, &frame, None, Delivery::Queued))
            .bench_local_values(|_| room.drain());
    }
}
