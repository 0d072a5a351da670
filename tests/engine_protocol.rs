//! Engine.IO v4 / Socket.IO v5 protocol tests for `roomcast::engine`, written from the
//! protocol documents: a real server on 127.0.0.1:0 driven over TCP the way clients do —
//! raw HTTP long-polling, WebSocket, and hand-made WebSocket frames for what no client
//! library would send. Scenarios that do not depend on the transport run on both.
//!
//! `cargo test --release --test engine_protocol`

// The harness lives beside the app harness but is its own module: this suite needs no
// database or app, and the other suites need no WebSocket client.
#[path = "common/engine.rs"]
mod harness;

use harness::*;
use roomcast::engine::{BinaryPolicy, Cors, DisconnectReason, SioConfig};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Runs `scenario(server, client)` once over long-polling and once over WebSocket, then
/// checks that the server still serves a fresh client and never panicked.
macro_rules! on_both_transports {
    ($(#[$doc:meta])* $scenario:ident, $config:expr) => {
        $(#[$doc])*
        mod $scenario {
            use super::*;

            #[tokio::test]
            async fn polling() {
                let mut server = Server::start($config).await;
                let (mut client, _) = Polling::open(&server).await;
                super::$scenario(&mut server, &mut client).await;
                server.assert_still_serving().await;
            }

            #[tokio::test]
            async fn websocket() {
                let mut server = Server::start($config).await;
                let (mut client, _) = Ws::open(&server).await;
                super::$scenario(&mut server, &mut client).await;
                server.assert_still_serving().await;
            }
        }
    };
}

fn disconnected(reason: DisconnectReason) -> impl Fn(&Observed) -> bool {
    move |o| matches!(o, Observed::Disconnected { reason: r, .. } if *r == reason)
}

const PLACEHOLDER: &str = r#"{"_placeholder":true,"num":0}"#;

// ---------------------------------------------------------------------------------------
// Engine.IO: handshake and HTTP errors
// ---------------------------------------------------------------------------------------

fn assert_open_fields(open: &Value, upgrades: Value) {
    let mut keys: Vec<&str> = open
        .as_object()
        .expect("open packet is an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ]
    );
    assert!(!open["sid"].as_str().expect("sid string").is_empty());
    assert_eq!(open["upgrades"], upgrades);
    assert_eq!(open["pingInterval"], 25_000);
    assert_eq!(open["pingTimeout"], 20_000);
    assert_eq!(open["maxPayload"], 1000);
}

#[tokio::test]
async fn polling_handshake_sends_the_open_packet() {
    let server = Server::start(config()).await;
    let response = server
        .http
        .get(server.url("EIO=4&transport=polling"))
        .send()
        .await
        .expect("handshake");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let open = parse_open(&response.text().await.expect("body"));
    assert_open_fields(&open, json!(["websocket"]));

    // Two handshakes, two sessions.
    let (other, _) = Polling::open(&server).await;
    assert_ne!(other.sid(), open["sid"].as_str().unwrap_or_default());
    assert_eq!(server.io.session_count(), 2);
}

#[tokio::test]
async fn websocket_handshake_sends_the_open_packet() {
    let server = Server::start(config()).await;
    let (mut ws, open) = Ws::open(&server).await;
    assert_open_fields(&open, json!([]));

    // A WebSocket session is not reachable over polling.
    let polling = server.url(&format!("EIO=4&transport=polling&sid={}", ws.sid()));
    let get = server.http.get(&polling).send().await.unwrap();
    assert_eio_error(get, 3, "Bad request").await;
    let post = server.http.post(&polling).body("40").send().await.unwrap();
    assert_eio_error(post, 3, "Bad request").await;
    sio_connect(&mut ws, "40").await;

    // An upgrade request in a WebSocket version we do not speak.
    let old_version = server
        .http
        .get(server.url("EIO=4&transport=websocket"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "8")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eio_error(old_version, 3, "Bad request").await;
}

/// The same handshake, session and upgrade when every WebSocket goes through the HTTP
/// server's upgrade instead of the engine's tap (what happens to an upgrade request
/// that is not the first on its connection, or whose head does not arrive in one read).
#[tokio::test]
async fn websocket_through_the_http_upgrade() {
    let server = Server::start_with_tap(config(), false).await;
    let (mut ws, open) = Ws::open(&server).await;
    assert_open_fields(&open, json!([]));
    sio_connect(&mut ws, "40").await;
    ws.send(r#"42["message","over the http upgrade"]"#).await;
    assert_eq!(
        ws.recv().await,
        text(r#"42["message-back","over the http upgrade"]"#)
    );

    let (mut polling, _) = Polling::open(&server).await;
    sio_connect(&mut polling, "40").await;
    let mut upgraded = Ws::connect(&server, Some(polling.sid())).await;
    upgraded.send("2probe").await;
    assert_eq!(upgraded.recv().await, text("3probe"));
    upgraded.send("5").await;
    upgraded.send(r#"42["message","upgraded"]"#).await;
    assert_eq!(
        upgraded.recv().await,
        text(r#"42["message-back","upgraded"]"#)
    );
    server.assert_still_serving().await;
}

/// A handshake request that arrives in several pieces is answered all the same, and an
/// upgrade request after another request on a kept-alive connection too.
#[tokio::test]
async fn websocket_handshakes_in_pieces_and_on_a_reused_connection() {
    let server = Server::start(config()).await;
    for pieces in [2, 7] {
        let mut raw = RawWs::open_in_pieces(&server, None, pieces).await;
        raw.send_text("40").await;
        let (opcode, payload) = raw.read_frame().await.expect("the CONNECT answer");
        assert_eq!(opcode, 0x1);
        assert!(payload.starts_with(b"40{\"sid\":"), "{payload:?}");
    }

    // First a polling handshake, then a WebSocket handshake on the same connection.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let first = format!(
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {}\r\n\r\n",
        server.addr
    );
    tcp.write_all(first.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let answered = within("the polling handshake answer", async {
        loop {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the polling answer");
            seen.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some(end) = text.find("\r\n\r\n") {
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("content-length");
                if seen.len() >= end + 4 + length {
                    return String::from_utf8(seen[..end + 4 + length].to_vec()).unwrap();
                }
            }
        }
    })
    .await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    let upgrade = raw_upgrade_request(server.addr, "");
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    let reply = read_websocket_answer(&mut tcp).await;
    assert!(reply.starts_with("HTTP/1.1 101"), "{reply}");
    server.assert_still_serving().await;
}

/// A whole Engine.IO WebSocket upgrade request for `/socket.io/`, with `extra_headers`
/// (each ending in CRLF) before the upgrade headers.
fn raw_upgrade_request(addr: std::net::SocketAddr, extra_headers: &str) -> String {
    format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n{extra_headers}\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

/// Reads until the `101` and the open packet (its `"sid"`) have come; returns them.
async fn read_websocket_answer(tcp: &mut tokio::net::TcpStream) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    within("the 101 and the open packet", async {
        loop {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the WebSocket answer");
            seen.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&seen).into_owned();
            if text.contains("\"sid\"") {
                return text;
            }
        }
    })
    .await
}

/// What the WebSocket tap cannot take is left to HTTP, which answers it: bytes that are
/// not HTTP get a 400 and the server keeps serving; a handshake with more headers than
/// the tap reads, or one for another path, is answered by the HTTP server all the same.
#[tokio::test]
async fn the_websocket_tap_leaves_what_it_cannot_read_to_http() {
    let server = Server::start(config()).await;
    let mut garbage = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    garbage
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http at all\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    within("the answer to garbage", garbage.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    let mut many_headers = String::new();
    for n in 0..40 {
        many_headers.push_str(&format!("X-Filler-{n}: {n}\r\n"));
    }
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = raw_upgrade_request(server.addr, &many_headers);
    tcp.write_all(request.as_bytes()).await.unwrap();
    let reply = read_websocket_answer(&mut tcp).await;
    assert!(reply.starts_with("HTTP/1.1 101"), "{reply}");

    let other_path = server
        .http
        .get(format!(
            "http://{}/elsewhere/?EIO=4&transport=websocket",
            server.addr
        ))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(other_path.status(), 404);
    server.assert_still_serving().await;
}

#[tokio::test]
async fn http_errors_carry_the_reference_codes() {
    let server = Server::start(config()).await;
    let get = |query: &str| server.http.get(server.url(query)).send();

    let unsupported = "Unsupported protocol version";
    assert_eio_error(get("transport=polling").await.unwrap(), 5, unsupported).await;
    assert_eio_error(
        get("EIO=3&transport=polling").await.unwrap(),
        5,
        unsupported,
    )
    .await;
    assert_eio_error(
        get("EIO=5&transport=websocket").await.unwrap(),
        5,
        unsupported,
    )
    .await;

    let unknown_transport = "Transport unknown";
    assert_eio_error(get("EIO=4").await.unwrap(), 0, unknown_transport).await;
    assert_eio_error(
        get("EIO=4&transport=flash").await.unwrap(),
        0,
        unknown_transport,
    )
    .await;

    let unknown_sid = "Session ID unknown";
    assert_eio_error(
        get("EIO=4&transport=polling&sid=nope").await.unwrap(),
        1,
        unknown_sid,
    )
    .await;
    let post = server
        .http
        .post(server.url("EIO=4&transport=polling&sid=nope"))
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eio_error(post, 1, unknown_sid).await;
    assert_eio_error(
        get("EIO=4&transport=websocket&sid=nope").await.unwrap(),
        1,
        unknown_sid,
    )
    .await;

    let handshake_post = server
        .http
        .post(server.url("EIO=4&transport=polling"))
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eio_error(handshake_post, 2, "Bad handshake method").await;

    // A plain GET asking for the WebSocket transport, and a method polling does not use.
    assert_eio_error(
        get("EIO=4&transport=websocket").await.unwrap(),
        3,
        "Bad request",
    )
    .await;
    let (polling, _) = Polling::open(&server).await;
    let put = server
        .http
        .put(&polling.url)
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eio_error(put, 3, "Bad request").await;

    assert_no_engine_panic();
}

#[tokio::test]
async fn cors_headers_follow_the_policy() {
    const ORIGIN: &str = "https://app.example";
    struct Case {
        cors: Cors,
        origin: &'static str,
        allow_origin: Option<&'static str>,
        credentials: bool,
        /// The answer depends on `Origin` (allowed or not), so caches must key on it.
        varies: bool,
    }
    let cases = [
        Case {
            cors: Cors::Wildcard,
            origin: ORIGIN,
            allow_origin: Some("*"),
            varies: false,
            credentials: false,
        },
        Case {
            cors: Cors::AnyOrigin,
            origin: ORIGIN,
            allow_origin: Some(ORIGIN),
            varies: true,
            credentials: true,
        },
        Case {
            cors: Cors::List(vec!["https://other.example".into(), ORIGIN.into()]),
            origin: ORIGIN,
            allow_origin: Some(ORIGIN),
            varies: true,
            credentials: true,
        },
        Case {
            cors: Cors::List(vec!["https://other.example".into()]),
            origin: ORIGIN,
            allow_origin: None,
            varies: true,
            credentials: false,
        },
        Case {
            cors: Cors::Disabled,
            origin: ORIGIN,
            allow_origin: None,
            varies: false,
            credentials: false,
        },
    ];
    for case in cases {
        let label = format!("{:?}", case.cors);
        let mut config = config();
        config.eio.cors = case.cors;
        let server = Server::start(config).await;
        let check = |response: &reqwest::Response, what: &str| {
            let headers = response.headers();
            let allow = headers
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap_or_default().to_owned());
            assert_eq!(
                allow.as_deref(),
                case.allow_origin,
                "{label}: {what}: Access-Control-Allow-Origin"
            );
            let credentials = headers
                .get("access-control-allow-credentials")
                .is_some_and(|v| *v == "true");
            assert_eq!(
                credentials, case.credentials,
                "{label}: {what}: Access-Control-Allow-Credentials"
            );
            let vary = headers
                .get("vary")
                .map(|v| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default();
            assert_eq!(
                vary.contains("Origin"),
                case.varies,
                "{label}: {what}: Vary {vary:?}"
            );
        };

        let handshake = server
            .http
            .get(server.url("EIO=4&transport=polling"))
            .header("origin", case.origin)
            .send()
            .await
            .unwrap();
        assert_eq!(handshake.status(), 200);
        check(&handshake, "handshake");

        // Browsers must be able to read the errors too.
        let error = server
            .http
            .get(server.url("EIO=4&transport=polling&sid=nope"))
            .header("origin", case.origin)
            .send()
            .await
            .unwrap();
        assert_eq!(error.status(), 400);
        check(&error, "error");

        let preflight = server
            .http
            .request(
                reqwest::Method::OPTIONS,
                server.url("EIO=4&transport=polling"),
            )
            .header("origin", case.origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
            .await
            .unwrap();
        assert!(preflight.status().is_success(), "{label}: preflight status");
        check(&preflight, "preflight");
        if case.allow_origin.is_some() {
            let headers = preflight.headers();
            let methods = headers["access-control-allow-methods"]
                .to_str()
                .unwrap_or_default();
            assert!(
                methods.contains("GET") && methods.contains("POST"),
                "{label}: allowed methods {methods}"
            );
            assert_eq!(headers["access-control-allow-headers"], "content-type");
        }
        if case.varies {
            let vary = preflight.headers()["vary"].to_str().unwrap_or_default();
            assert!(
                vary.contains("Access-Control-Request-Headers"),
                "{label}: the preflight echoes the requested headers: Vary {vary:?}"
            );
        }

        // No Origin, no CORS headers.
        let plain = server
            .http
            .get(server.url("EIO=4&transport=polling"))
            .send()
            .await
            .unwrap();
        assert!(plain.headers().get("access-control-allow-origin").is_none());
    }
    assert_no_engine_panic();
}

// ---------------------------------------------------------------------------------------
// Engine.IO: packets, polling payloads, close
// ---------------------------------------------------------------------------------------

/// Every packet type a client may send: pong (unsolicited: ignored), upgrade outside a
/// probe and noop (ignored), message (text and binary), close. (Ping is the server's
/// alone in v4: see `BAD_ENGINE_IO`.)
async fn every_packet_type(server: &mut Server, client: &mut impl EioClient) {
    for ignored in ["3", "5", "6"] {
        client.send(ignored).await;
    }
    sio_connect(client, "40").await;
    client.send(r#"42["message","hello"]"#).await;
    assert_eq!(client.recv().await, text(r#"42["message-back","hello"]"#));

    client
        .send(&format!(r#"451-["message",{PLACEHOLDER}]"#))
        .await;
    client.send_binary(&[0, 1, 2, 0xff]).await;
    assert_eq!(
        client.recv().await,
        text(&format!(r#"451-["message-back",{PLACEHOLDER}]"#))
    );
    assert_eq!(client.recv().await, In::Binary(vec![0, 1, 2, 0xff]));

    client.send("1").await;
    client.expect_closed().await;
    server
        .observe(
            "the disconnect after the close packet",
            disconnected(DisconnectReason::TransportClose),
        )
        .await;
}
on_both_transports!(every_packet_type, config());

#[tokio::test]
async fn polling_body_carries_many_packets() {
    let server = Server::start(config()).await;
    let (mut polling, _) = Polling::open(&server).await;
    let body = format!(
        "40\x1e42[\"message\",\"a\"]\x1e6\x1e42[\"message\",\"b\"]\x1e451-[\"message\",{PLACEHOLDER}]\x1ebAQID"
    );
    let response = polling.post(body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");

    // The answers come back in order, possibly several per GET, binary as `b` + base64.
    let mut got = Vec::new();
    while got.len() < 6 {
        got.extend(decode_payload(&polling.get_ok().await));
    }
    assert!(
        matches!(&got[0], In::Text(t) if t.starts_with("40{\"sid\":")),
        "{got:?}"
    );
    assert_eq!(
        got[1..],
        [
            text(r#"42["auth",{}]"#),
            text(r#"42["message-back","a"]"#),
            text(r#"42["message-back","b"]"#),
            text(&format!(r#"451-["message-back",{PLACEHOLDER}]"#)),
            In::Binary(vec![1, 2, 3]),
        ]
    );

    // The raw wire format of a multi-packet answer.
    polling.send(r#"42["message","x"]"#).await;
    polling.send(r#"42["message","y"]"#).await;
    assert_eq!(
        polling.get_ok().await,
        "42[\"message-back\",\"x\"]\x1e42[\"message-back\",\"y\"]"
    );
    assert_no_engine_panic();
}

#[tokio::test]
async fn a_second_concurrent_long_poll_closes_the_session() {
    let server = Server::start(config()).await;
    let (polling, _) = Polling::open(&server).await;
    let first = tokio::spawn(polling.get());
    let second = tokio::spawn(polling.get());
    let mut answers = Vec::new();
    for response in [first.await.unwrap(), second.await.unwrap()] {
        let status = response.status().as_u16();
        answers.push((status, response.text().await.unwrap()));
    }
    answers.sort();
    // The pending poll learns of the close; the duplicate is refused.
    assert_eq!(answers[0], (200, "1".to_owned()), "{answers:?}");
    assert_eq!(answers[1].0, 400, "{answers:?}");
    assert_eio_error(polling.get().await, 1, "Session ID unknown").await;
    server.assert_still_serving().await;
}

/// A client closing over long-polling sends its close POST and a GET at the same time, on
/// two connections: whichever reaches us first, the GET is answered `noop` (once), as the
/// official test suite's "should forcefully close the session" expects; later polls are
/// refused.
#[tokio::test]
async fn a_poll_that_arrives_just_after_the_clients_close_gets_its_noop() {
    let mut server = Server::start(config()).await;
    // Close packet first, its answer awaited: the GET below is strictly later.
    let (mut polling, _) = Polling::open(&server).await;
    sio_connect(&mut polling, "40").await;
    let closed = polling.post("1").await;
    assert_eq!(closed.status(), 200);
    // Reported once the engine has retired the session.
    server
        .observe(
            "the session closed by the client",
            disconnected(DisconnectReason::TransportClose),
        )
        .await;
    assert_eq!(polling.get_ok().await, "6", "the late poll gets its noop");
    assert_eio_error(polling.get().await, 1, "Session ID unknown").await;

    // The usual order (GET waiting when the close comes) still answers `noop` once.
    let (polling, _) = Polling::open(&server).await;
    let waiting = tokio::spawn(polling.get());
    // Usually parked by now; if not, the owed noop answers it all the same.
    server.assert_still_serving().await;
    assert_eq!(polling.post("1").await.status(), 200);
    let answer = waiting.await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "6");
    assert_eio_error(polling.get().await, 1, "Session ID unknown").await;

    // A session closed any other way owes nothing: a poll after a ping timeout is refused.
    let mut fast = Server::start(fast_heartbeat()).await;
    let (mut polling, _) = Polling::open(&fast).await;
    sio_connect(&mut polling, "40").await;
    fast.observe(
        "the ping timeout",
        disconnected(DisconnectReason::PingTimeout),
    )
    .await;
    assert_eio_error(polling.get().await, 1, "Session ID unknown").await;
    assert_no_engine_panic();
}

// ---------------------------------------------------------------------------------------
// Engine.IO: heartbeat
// ---------------------------------------------------------------------------------------

/// With ping 300 ms / timeout 200 ms: the first ping comes a ping interval after the
/// handshake, pongs keep the session past interval + timeout, and a missing pong ends it.
async fn heartbeat(server: &mut Server, client: &mut impl EioClient) {
    // Bounds measured from instants taken before the server could have started its
    // clocks, so they hold however loaded the machine is.
    let interval = Duration::from_millis(300);
    let timeout = Duration::from_millis(200);
    sio_connect(client, "40").await;
    assert_eq!(client.recv().await, text("2"));
    let first = client.opened_at().elapsed();
    assert!(
        first >= interval,
        "first ping {first:?} after the handshake"
    );
    assert!(first < Duration::from_secs(3), "first ping after {first:?}");

    let mut ponged = Instant::now();
    for _ in 0..3 {
        ponged = Instant::now();
        client.send("3").await;
        assert_eq!(client.recv().await, text("2"));
        let gap = ponged.elapsed();
        assert!(gap >= interval, "ping {gap:?} after a pong");
    }
    // Well past interval + timeout since the handshake: the pongs kept the session.
    assert!(client.opened_at().elapsed() > 2 * (interval + timeout));
    client.send(r#"42["message","alive"]"#).await;
    assert_eq!(client.recv().await, text(r#"42["message-back","alive"]"#));

    // The last ping is not answered: the session ends interval + timeout after the last
    // pong, not before.
    client.expect_closed().await;
    let closed = ponged.elapsed();
    assert!(
        closed >= interval + timeout,
        "closed {closed:?} after the last pong"
    );
    assert!(
        closed < Duration::from_secs(3),
        "closed {closed:?} after the last pong"
    );
    server
        .observe(
            "the ping timeout",
            disconnected(DisconnectReason::PingTimeout),
        )
        .await;
}
on_both_transports!(heartbeat, fast_heartbeat());

// ---------------------------------------------------------------------------------------
// Engine.IO: upgrade
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn upgrade_from_polling_to_websocket() {
    let server = Server::start(config()).await;
    let (mut polling, open) = Polling::open(&server).await;
    assert_eq!(open["upgrades"], json!(["websocket"]));
    let socket_id = sio_connect(&mut polling, "40").await;
    let sid = polling.sid().to_owned();

    let pending = tokio::spawn(polling.get());
    let mut ws = Ws::connect(&server, Some(&sid)).await;
    ws.send("2probe").await;
    assert_eq!(ws.recv().await, text("3probe"));
    // The pending long-poll is answered with a noop so the client can pause polling.
    let paused = pending.await.unwrap();
    assert_eq!(paused.status(), 200);
    assert_eq!(paused.text().await.unwrap(), "6");

    // The client may still POST while it waits for the probe; the answer is held for the
    // WebSocket.
    polling.send(r#"42["message","during the upgrade"]"#).await;
    ws.send("5").await;
    assert_eq!(
        ws.recv().await,
        text(r#"42["message-back","during the upgrade"]"#)
    );
    ws.send(r#"42["message","over websocket"]"#).await;
    assert_eq!(
        ws.recv().await,
        text(r#"42["message-back","over websocket"]"#)
    );
    // Same Socket.IO socket, now on the WebSocket.
    assert_eq!(server.io.session_count(), 1);
    let sockets = server
        .io
        .namespace("/")
        .expect("root namespace")
        .sockets_in(ROOM);
    assert_eq!(sockets.len(), 1);
    assert_eq!(sockets[0].id(), socket_id);

    // Polling is over for this session.
    assert_eio_error(polling.get().await, 3, "Bad request").await;
    let post = polling.post(r#"42["message","late"]"#).await;
    assert_eio_error(post, 3, "Bad request").await;

    // A second WebSocket for the upgraded session is closed at once.
    let mut intruder = Ws::connect(&server, Some(&sid)).await;
    intruder.expect_closed().await;

    ws.send(r#"42["message","still upgraded"]"#).await;
    assert_eq!(
        ws.recv().await,
        text(r#"42["message-back","still upgraded"]"#)
    );
    server.assert_still_serving().await;
}

/// The official suite's "ignores HTTP requests with same sid after upgrade": the client
/// sends the probe and the upgrade packet on the WebSocket, then a poll on another
/// connection. Whichever we read first, the poll is refused as a poll after the upgrade
/// (400), never answered as if polling still carried the session.
#[tokio::test]
async fn a_poll_sent_behind_the_upgrade_packet_is_refused_whatever_is_read_first() {
    let server = Server::start(config()).await;
    for _ in 0..20 {
        let (mut polling, _) = Polling::open(&server).await;
        sio_connect(&mut polling, "40").await;
        let sid = polling.sid().to_owned();
        let mut ws = Ws::connect(&server, Some(&sid)).await;
        ws.send("2probe").await;
        ws.send("5").await;
        let late = polling.get().await;
        if late.status() != 400 {
            panic!("DBG {} {:?}", late.status(), late.text().await);
        }
        assert_eq!(ws.recv().await, text("3probe"));
        ws.send(r#"42["message","upgraded"]"#).await;
        assert_eq!(ws.recv().await, text(r#"42["message-back","upgraded"]"#));
    }
    // A poll parked before the WebSocket came still ends at once with a noop at the probe,
    // so a real client can pause polling and send its upgrade packet.
    let (mut polling, _) = Polling::open(&server).await;
    sio_connect(&mut polling, "40").await;
    let sid = polling.sid().to_owned();
    let parked = tokio::spawn(polling.get());
    server.assert_still_serving().await;
    let mut ws = Ws::connect(&server, Some(&sid)).await;
    ws.send("2probe").await;
    assert_eq!(ws.recv().await, text("3probe"));
    let paused = within("the parked poll to end", parked).await.unwrap();
    assert_eq!(paused.status(), 200);
    assert_eq!(paused.text().await.unwrap(), "6");
    server.assert_still_serving().await;
}

#[tokio::test]
async fn an_abandoned_probe_leaves_the_session_on_polling() {
    let server = Server::start(config()).await;
    let (mut polling, _) = Polling::open(&server).await;
    sio_connect(&mut polling, "40").await;
    let sid = polling.sid().to_owned();

    let mut probe = Ws::connect(&server, Some(&sid)).await;
    probe.send("2probe").await;
    assert_eq!(probe.recv().await, text("3probe"));
    drop(probe);

    // Polling still carries the session (noops while the server notices the probe left).
    polling.send(r#"42["message","still polling"]"#).await;
    loop {
        match polling.recv().await {
            In::Text(t) if t == "6" => continue,
            other => {
                assert_eq!(other, text(r#"42["message-back","still polling"]"#));
                break;
            }
        }
    }

    // And a later upgrade succeeds (a WebSocket that arrives before the server has let
    // go of the abandoned one is closed; the client tries again).
    let mut ws = within("a second probe", async {
        loop {
            let mut ws = Ws::connect(&server, Some(&sid)).await;
            ws.send("2probe").await;
            match ws.recv().await {
                In::Closed(_) => continue,
                answer => {
                    assert_eq!(answer, text("3probe"));
                    return ws;
                }
            }
        }
    })
    .await;
    ws.send("5").await;
    ws.send(r#"42["message","upgraded"]"#).await;
    assert_eq!(ws.recv().await, text(r#"42["message-back","upgraded"]"#));
    assert_eio_error(polling.get().await, 3, "Bad request").await;
    server.assert_still_serving().await;
}

#[tokio::test]
async fn a_websocket_close_frame_ends_the_session() {
    let mut server = Server::start(config()).await;
    let (mut ws, _) = Ws::open(&server).await;
    sio_connect(&mut ws, "40").await;
    ws.close().await;
    assert_eq!(ws.recv().await, In::Closed(Some(1000)));
    server
        .observe(
            "the disconnect",
            disconnected(DisconnectReason::TransportClose),
        )
        .await;
    server.assert_still_serving().await;
}

#[tokio::test]
async fn a_session_that_never_connects_a_namespace_is_closed() {
    let mut config = config();
    config.eio.handshake_timeout = Some(Duration::from_millis(200));
    let server = Server::start(config).await;
    let (mut connected, _) = Ws::open(&server).await;
    sio_connect(&mut connected, "40").await;
    let started = Instant::now();
    let (mut ws, _) = Ws::open(&server).await;
    let (mut polling, _) = Polling::open(&server).await;
    ws.expect_closed().await;
    polling.expect_closed().await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The deadline does not apply once a namespace is connected.
    connected.send(r#"42["message","here"]"#).await;
    assert_eq!(connected.recv().await, text(r#"42["message-back","here"]"#));
    assert_no_engine_panic();
}

// ---------------------------------------------------------------------------------------
// Engine.IO: maxPayload (1000 bytes in these tests)
// ---------------------------------------------------------------------------------------

/// A Socket.IO event packet of exactly `len` bytes.
fn message_of_len(len: usize) -> String {
    let empty = r#"42["message",""]"#;
    format!(r#"42["message","{}"]"#, "a".repeat(len - empty.len()))
}

#[tokio::test]
async fn polling_body_over_max_payload_is_refused() {
    let mut server = Server::start(config()).await;
    let (mut polling, _) = Polling::open(&server).await;
    sio_connect(&mut polling, "40").await;

    let at_max = message_of_len(1000);
    polling.send(&at_max).await;
    assert!(
        matches!(polling.recv().await, In::Text(t) if t.starts_with(r#"42["message-back","aaa"#))
    );

    // Each packet is small; the body is over the bound.
    let body = format!("{}\x1e{}", message_of_len(600), message_of_len(600));
    let response = polling.post(body).await;
    assert_eq!(response.status(), 413);
    assert_eio_error(polling.get().await, 1, "Session ID unknown").await;
    server
        .observe(
            "the oversize POST's disconnect",
            disconnected(DisconnectReason::ParseError),
        )
        .await;

    let (polling, _) = Polling::open(&server).await;
    let response = polling.post(message_of_len(1001)).await;
    assert_eq!(response.status(), 413);
    assert_eio_error(polling.get().await, 1, "Session ID unknown").await;
    server.assert_still_serving().await;
}

/// A chunked POST (no Content-Length) is cut off at maxPayload as well.
#[tokio::test]
async fn chunked_polling_body_over_max_payload_is_refused() {
    let server = Server::start(config()).await;
    let (polling, _) = Polling::open(&server).await;
    let body = message_of_len(1200);
    let (first, second) = body.split_at(600);
    let request = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={} HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        polling.sid(),
        server.addr,
        first.len(),
        second.len(),
    );
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    within("the raw POST", tcp.write_all(request.as_bytes()))
        .await
        .unwrap();
    let mut head = Vec::new();
    within("the answer to the raw POST", async {
        let mut chunk = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed before the answer");
            head.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert_eio_error(polling.get().await, 1, "Session ID unknown").await;
    server.assert_still_serving().await;
}

#[tokio::test]
async fn websocket_frame_over_max_payload_closes_with_1009() {
    let mut server = Server::start(config()).await;
    let mut raw = RawWs::open(&server, None).await;
    sio_connect(&mut raw, "40").await;
    raw.send_text(&message_of_len(1000)).await;
    assert!(raw
        .read_text()
        .await
        .starts_with(r#"42["message-back","aaa"#));

    // Only the header of a 1001-byte frame: refused before the payload is read.
    let header = &frame(0x81, true, &vec![b'4'; 1001])[..8];
    raw.write(header).await;
    assert_eq!(raw.expect_close_code().await, 1009);
    server
        .observe(
            "the oversize frame's disconnect",
            disconnected(DisconnectReason::ParseError),
        )
        .await;

    // The same through a client library that sends the whole frame.
    let (mut ws, _) = Ws::open(&server).await;
    sio_connect(&mut ws, "40").await;
    ws.send(&message_of_len(1001)).await;
    ws.expect_closed().await;
    server.assert_still_serving().await;
}

#[tokio::test]
async fn fragmented_websocket_message_is_bounded_by_its_total() {
    let server = Server::start(config()).await;
    let mut raw = RawWs::open(&server, None).await;
    sio_connect(&mut raw, "40").await;

    // Fragments with a ping between them: pong first, then the whole message.
    raw.write(&frame(0x01, true, br#"42["message","frag"#))
        .await;
    raw.write(&frame(0x89, true, b"hi")).await;
    raw.write(&frame(0x00, true, b"men")).await;
    raw.write(&frame(0x80, true, br#"ted"]"#)).await;
    assert_eq!(raw.read_frame().await, Some((0xA, b"hi".to_vec())));
    assert_eq!(raw.read_text().await, r#"42["message-back","fragmented"]"#);

    // Two fragments under the bound each, over it together.
    let whole = message_of_len(1200);
    raw.write(&frame(0x01, true, &whole.as_bytes()[..600]))
        .await;
    raw.write(&frame(0x80, true, &whole.as_bytes()[600..]))
        .await;
    assert_eq!(raw.expect_close_code().await, 1009);
    server.assert_still_serving().await;
}

// ---------------------------------------------------------------------------------------
// Socket.IO
// ---------------------------------------------------------------------------------------

/// CONNECT without auth, DISCONNECT from the client, CONNECT again with auth.
async fn connect_with_and_without_auth(server: &mut Server, client: &mut impl EioClient) {
    client.send("40").await;
    let In::Text(answer) = client.recv().await else {
        panic!("no CONNECT answer");
    };
    let body: Value = serde_json::from_str(answer.strip_prefix("40").expect("40…")).unwrap();
    let first_id = body["sid"].as_str().expect("sid").to_owned();
    assert_eq!(client.recv().await, text(r#"42["auth",{}]"#));
    let Observed::Connected { nsp, id } = server.next_observed().await else {
        panic!("expected a connect");
    };
    assert_eq!((nsp.as_str(), id.as_str()), ("/", first_id.as_str()));

    client.send("41").await;
    assert_eq!(
        server.next_observed().await,
        Observed::Disconnected {
            id: first_id.clone(),
            reason: DisconnectReason::ClientDisconnect
        }
    );

    // The connection outlives the namespace: CONNECT again, with auth this time.
    client.send(r#"40{"token":"abc","n":[1,2]}"#).await;
    let In::Text(answer) = client.recv().await else {
        panic!("no CONNECT answer");
    };
    assert!(answer.starts_with("40{\"sid\":"), "{answer}");
    assert!(!answer.contains(&first_id), "a new socket id");
    assert_eq!(
        client.recv().await,
        text(r#"42["auth",{"token":"abc","n":[1,2]}]"#)
    );
}
on_both_transports!(connect_with_and_without_auth, config());

/// A custom namespace, an unknown one, and a CONNECT_ERROR with `data` from the hook.
async fn namespaces_and_refusals(server: &mut Server, client: &mut impl EioClient) {
    client.send("40/x,").await;
    assert_eq!(
        client.recv().await,
        text(r#"44/x,{"message":"Invalid namespace"}"#)
    );

    client.send(r#"40{"reject":true}"#).await;
    let In::Text(refusal) = client.recv().await else {
        panic!("no CONNECT_ERROR");
    };
    let body: Value = serde_json::from_str(refusal.strip_prefix("44").expect("44…")).unwrap();
    assert_eq!(
        body,
        json!({ "message": "go away", "data": { "code": "REJECTED" } })
    );

    // Refusals leave the connection up: the custom namespace works on it.
    sio_connect(client, "40/custom,").await;
    client.send(r#"42/custom,["message",1,"two"]"#).await;
    assert_eq!(
        client.recv().await,
        text(r#"42/custom,["message-back",1,"two"]"#)
    );
    client.send(r#"42/custom,7["message-with-ack","x"]"#).await;
    assert_eq!(client.recv().await, text(r#"43/custom,7["x"]"#));
    let connected = server
        .observe("the /custom connect", |o| {
            matches!(o, Observed::Connected { .. })
        })
        .await;
    assert!(matches!(connected, Observed::Connected { nsp, .. } if nsp == "/custom"));

    // A server disconnect from one namespace leaves the others, and the connection, up.
    sio_connect(client, "40").await;
    client.send(r#"42/custom,["bye"]"#).await;
    assert_eq!(client.recv().await, text("41/custom,"));
    client.send(r#"42["message","on /"]"#).await;
    assert_eq!(client.recv().await, text(r#"42["message-back","on /"]"#));
    // An event for the namespace just left is a protocol error.
    client.send(r#"42/custom,["message","gone"]"#).await;
    client.expect_closed().await;
}
on_both_transports!(namespaces_and_refusals, config());

/// EVENT, ACK from the server, ACK from the client (a server `emit_with_ack`).
async fn events_and_acks(server: &mut Server, client: &mut impl EioClient) {
    let id = sio_connect(client, "40").await;
    client
        .send(r#"42["message",1,"two",{"three":[3]},null]"#)
        .await;
    assert_eq!(
        client.recv().await,
        text(r#"42["message-back",1,"two",{"three":[3]},null]"#)
    );
    client.send(r#"4213["message-with-ack","a",2]"#).await;
    assert_eq!(client.recv().await, text(r#"4313["a",2]"#));

    client.send(r#"42["ask","what?"]"#).await;
    let In::Text(question) = client.recv().await else {
        panic!("no question");
    };
    let rest = question.strip_prefix("42").expect("an EVENT");
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    assert!(digits > 0, "the server asks for an ack: {question}");
    let (ack_id, args) = rest.split_at(digits);
    assert_eq!(args, r#"["question","what?"]"#);
    client.send(&format!(r#"43{ack_id}["yes",42]"#)).await;
    assert_eq!(client.recv().await, text(r#"42["answer",["yes",42]]"#));

    // The handler saw the events in order with their arguments.
    let mut names = Vec::new();
    while names.len() < 3 {
        if let Observed::Event {
            id: from,
            name,
            args,
            ..
        } = server.next_observed().await
        {
            assert_eq!(from, id);
            names.push((name, args));
        }
    }
    assert_eq!(
        names,
        [
            (
                "message".to_owned(),
                r#"[1,"two",{"three":[3]},null]"#.to_owned()
            ),
            ("message-with-ack".to_owned(), r#"["a",2]"#.to_owned()),
            ("ask".to_owned(), r#"["what?"]"#.to_owned()),
        ]
    );
}
on_both_transports!(events_and_acks, config());

/// The server saw socket `id` leave by its own `disconnect()`.
async fn assert_server_disconnected(server: &mut Server, id: String) {
    let gone = server
        .observe("the server disconnect", |o| {
            matches!(o, Observed::Disconnected { .. })
        })
        .await;
    assert_eq!(
        gone,
        Observed::Disconnected {
            id,
            reason: DisconnectReason::ServerDisconnect
        }
    );
}

/// `socket.disconnect()` on the server: the client gets `41`, then the transport closes
/// (it was the only namespace).
async fn server_disconnect(server: &mut Server, client: &mut impl EioClient) {
    let id = sio_connect(client, "40").await;
    client.send(r#"42["bye"]"#).await;
    assert_eq!(client.recv().await, text("41"));
    client.expect_closed().await;
    assert_server_disconnected(server, id).await;
}
on_both_transports!(server_disconnect, config());

/// The same from another task while the connection is idle, with an event queued just
/// before: both arrive, then the transport closes (a WebSocket once left it open).
async fn server_disconnect_from_elsewhere(server: &mut Server, client: &mut impl EioClient) {
    let id = sio_connect(client, "40").await;
    client.send(r#"42["bye-later"]"#).await;
    assert_eq!(client.recv().await, text(r#"42["farewell"]"#));
    assert_eq!(client.recv().await, text("41"));
    client.expect_closed().await;
    assert_server_disconnected(server, id).await;
}
on_both_transports!(server_disconnect_from_elsewhere, config());

/// A second CONNECT to a namespace the connection has already joined is an invalid
/// state, as socket.io's own server has it: the connection is closed (it was ignored).
async fn repeated_connect_closes(server: &mut Server, client: &mut impl EioClient) {
    sio_connect(client, "40").await;
    client.send(r#"40{"again":true}"#).await;
    client.expect_closed().await;
    server
        .observe("the disconnect", disconnected(DisconnectReason::ParseError))
        .await;
}
on_both_transports!(repeated_connect_closes, config());

fn binary_config(policy: BinaryPolicy) -> SioConfig {
    let mut config = config();
    config.binary = policy;
    config.max_attachments = 2;
    config
}

/// BINARY_EVENT with attachments (accepted, echoed), BINARY_ACK from the client, and
/// the attachment count bound.
async fn binary_accepted(server: &mut Server, client: &mut impl EioClient) {
    let id = sio_connect(client, "40").await;
    let two = r#"[{"_placeholder":true,"num":0},"text",{"_placeholder":true,"num":1}]"#;
    client
        .send(&format!(r#"452-["message",{}"#, &two[1..]))
        .await;
    client.send_binary(&[1, 2, 3]).await;
    client.send_binary(&[]).await;
    assert_eq!(
        client.recv().await,
        text(&format!(r#"452-["message-back",{}"#, &two[1..]))
    );
    assert_eq!(client.recv().await, In::Binary(vec![1, 2, 3]));
    assert_eq!(client.recv().await, In::Binary(vec![]));
    let event = server
        .observe("the binary event", |o| matches!(o, Observed::Event { .. }))
        .await;
    assert_eq!(
        event,
        Observed::Event {
            id,
            name: "message".into(),
            args: two.into(),
            attachments: vec![vec![1, 2, 3], vec![]],
        }
    );

    client.send(r#"42["ask","bin"]"#).await;
    assert!(matches!(client.recv().await, In::Text(t) if t == r#"420["question","bin"]"#));
    client.send(&format!("461-0[{PLACEHOLDER}]")).await;
    client.send_binary(&[9]).await;
    assert_eq!(
        client.recv().await,
        text(&format!(r#"42["answer",[{PLACEHOLDER}]]"#))
    );

    // Three attachments where two are allowed: the connection is closed.
    client
        .send(&format!(
            r#"453-["message",{PLACEHOLDER},{PLACEHOLDER},{PLACEHOLDER}]"#
        ))
        .await;
    client.expect_closed().await;
    server
        .observe("the disconnect", disconnected(DisconnectReason::ParseError))
        .await;
}
on_both_transports!(binary_accepted, binary_config(BinaryPolicy::Accept));

/// `BinaryPolicy::Refuse`: the handler hears of the event, its attachment is dropped
/// (never delivered, never taken for another packet) and the connection stays up.
async fn binary_refused(server: &mut Server, client: &mut impl EioClient) {
    let id = sio_connect(client, "40").await;
    client
        .send(&format!(r#"451-["upload",{PLACEHOLDER}]"#))
        .await;
    client.send_binary(&[7; 100]).await;
    assert_eq!(
        client.recv().await,
        text(r#"42["binary-refused","upload"]"#)
    );
    client.send(r#"42["message","after"]"#).await;
    assert_eq!(client.recv().await, text(r#"42["message-back","after"]"#));

    let seen: Vec<Observed> = [
        server.next_observed().await,
        server.next_observed().await,
        server.next_observed().await,
    ]
    .into();
    assert!(matches!(&seen[0], Observed::Connected { .. }), "{seen:?}");
    assert_eq!(
        seen[1],
        Observed::BinaryRefused {
            id: id.clone(),
            name: "upload".into()
        }
    );
    assert!(
        matches!(&seen[2], Observed::Event { name, attachments, .. } if name == "message" && attachments.is_empty()),
        "{seen:?}"
    );

    // The count bound applies before refusing.
    client
        .send(&format!(
            r#"453-["upload",{PLACEHOLDER},{PLACEHOLDER},{PLACEHOLDER}]"#
        ))
        .await;
    client.expect_closed().await;
}
on_both_transports!(binary_refused, binary_config(BinaryPolicy::Refuse));

/// Attachments of one packet are bounded by maxPayload together, not only one by one.
async fn attachments_over_max_payload(server: &mut Server, client: &mut impl EioClient) {
    sio_connect(client, "40").await;
    client
        .send(&format!(r#"452-["message",{PLACEHOLDER},{PLACEHOLDER}]"#))
        .await;
    client.send_binary(&[1; 600]).await;
    client.send_binary(&[2; 600]).await;
    client.expect_closed().await;
    server
        .observe("the disconnect", disconnected(DisconnectReason::ParseError))
        .await;
}
on_both_transports!(
    attachments_over_max_payload,
    binary_config(BinaryPolicy::Accept)
);

/// Attachments that never come close the connection after `attachment_timeout`.
async fn missing_attachments(server: &mut Server, client: &mut impl EioClient) {
    sio_connect(client, "40").await;
    client
        .send(&format!(r#"451-["message",{PLACEHOLDER}]"#))
        .await;
    client.expect_closed().await;
    server
        .observe("the disconnect", disconnected(DisconnectReason::ParseError))
        .await;
}
on_both_transports!(missing_attachments, {
    let mut config = config();
    config.attachment_timeout = Duration::from_millis(200);
    config
});

// ---------------------------------------------------------------------------------------
// Malformed input: closed cleanly, no panic, the server keeps serving
// ---------------------------------------------------------------------------------------

/// Engine.IO packets a client must not send, a ping among them: in v4 only the server
/// pings (the reference server calls a client ping an "invalid heartbeat direction"), and
/// a probe belongs to a WebSocket that is upgrading.
const BAD_ENGINE_IO: &[&str] = &["", "abc", "7", "0{}", "b!!!", "2", "2probe"];

/// Socket.IO packets (inside Engine.IO messages) a connected client must not send.
const BAD_SOCKET_IO: &[&[&str]] = &[
    &["4"],
    &["4abc"],
    &["49"],
    &["42{}"],
    &["42"],
    &[r#"42abc["message"]"#],
    &[r#"42["connect"]"#],
    &[r#"42["disconnect"]"#],
    &[r#"42["newListener"]"#],
    &["42[]"],
    &["42[null]"],
    &["42[[1]]"],
    &[r#"42["message""#],
    &[r#"42["message",]"#],
    &[r#"42{"message":1}"#],
    &[r#"43["no ack id"]"#],
    &["43"],
    &["41{}"],
    // (A CONNECT whose auth is valid JSON but not an object goes to the auth hook, which
    // answers CONNECT_ERROR: roomcast's SPEC needs `API_KEY_REQUIRED` there.)
    &[r#"44{"message":"from a client"}"#],
    &[r#"45x-["message"]"#],
    &[r#"45-["message"]"#],
    &[r#"451234567-["message"]"#],
    &[r#"4299999999999999999999["message"]"#],
    &[r#"42/elsewhere,["message"]"#],
    // A text packet while an attachment is due.
    &[
        r#"451-["message",{"_placeholder":true,"num":0}]"#,
        r#"42["message"]"#,
    ],
];

async fn assert_closes_on(
    server: &mut Server,
    client: &mut impl EioClient,
    connect: bool,
    packets: &[&str],
) {
    if connect {
        sio_connect(client, "40").await;
    }
    for packet in packets {
        client.send(packet).await;
    }
    client.expect_closed().await;
    if connect {
        server
            .observe(
                &format!("the disconnect after {packets:?}"),
                disconnected(DisconnectReason::ParseError),
            )
            .await;
    }
    server.assert_still_serving().await;
}

#[tokio::test]
async fn malformed_engine_io_packets_close_the_session() {
    let mut server = Server::start(config()).await;
    for packet in BAD_ENGINE_IO {
        let (mut polling, _) = Polling::open(&server).await;
        assert_closes_on(&mut server, &mut polling, false, &[packet]).await;
        let (mut ws, _) = Ws::open(&server).await;
        assert_closes_on(&mut server, &mut ws, false, &[packet]).await;
    }
    // Polling bodies: an empty packet after a separator, bytes that are not UTF-8.
    for body in [b"40\x1e".to_vec(), b"4\xff\xfe".to_vec()] {
        let (polling, _) = Polling::open(&server).await;
        assert_eq!(polling.post(body).await.status(), 400);
        assert_eio_error(polling.get().await, 1, "Session ID unknown").await;
    }
    server.assert_still_serving().await;
}

#[tokio::test]
async fn malformed_socket_io_packets_close_the_connection() {
    let mut server = Server::start(config()).await;
    for packets in BAD_SOCKET_IO {
        let (mut polling, _) = Polling::open(&server).await;
        assert_closes_on(&mut server, &mut polling, true, packets).await;
        let (mut ws, _) = Ws::open(&server).await;
        assert_closes_on(&mut server, &mut ws, true, packets).await;
    }
    // An EVENT before any CONNECT.
    let (mut ws, _) = Ws::open(&server).await;
    assert_closes_on(&mut server, &mut ws, false, &[r#"42["message","x"]"#]).await;
}

#[tokio::test]
async fn malformed_websocket_frames_close_with_a_close_code() {
    let server = Server::start(config()).await;
    let cases: [(&str, Vec<u8>, u16); 9] = [
        ("unmasked frame", frame(0x81, false, b"40"), 1002),
        ("reserved bit 1", frame(0xC1, true, b"40"), 1002),
        ("reserved bit 3", frame(0x91, true, b"40"), 1002),
        ("unknown data opcode", frame(0x83, true, b"40"), 1002),
        ("unknown control opcode", frame(0x8B, true, b""), 1002),
        (
            "text that is not UTF-8",
            frame(0x81, true, b"4\xff\xfe"),
            1007,
        ),
        (
            "continuation without a start",
            frame(0x80, true, b"40"),
            1002,
        ),
        ("fragmented ping", frame(0x09, true, b"x"), 1002),
        ("ping over 125 bytes", frame(0x89, true, &[b'x'; 126]), 1002),
    ];
    for (what, bytes, code) in cases {
        let mut raw = RawWs::open(&server, None).await;
        raw.write(&bytes).await;
        assert_eq!(raw.expect_close_code().await, code, "{what}");
        server.assert_still_serving().await;
    }

    // A new message inside a fragmented one, and UTF-8 broken across fragments.
    let mut raw = RawWs::open(&server, None).await;
    raw.write(&frame(0x01, true, b"42")).await;
    raw.write(&frame(0x81, true, b"40")).await;
    assert_eq!(raw.expect_close_code().await, 1002, "interleaved message");
    let mut raw = RawWs::open(&server, None).await;
    raw.write(&frame(0x01, true, b"4\xe2")).await;
    raw.write(&frame(0x80, true, b"\x28")).await;
    assert_eq!(raw.expect_close_code().await, 1007, "split invalid UTF-8");
    server.assert_still_serving().await;
}

// ---------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------

/// The sequence number of a `42["broadcast",n,…]` packet.
fn broadcast_seq(packet: &In) -> i64 {
    let In::Text(t) = packet else {
        panic!("expected a text packet, got {packet:?}");
    };
    let args: Value =
        serde_json::from_str(t.strip_prefix("42").expect("an EVENT")).expect("EVENT JSON");
    assert_eq!(args[0], "broadcast", "{t}");
    args[1].as_i64().expect("a sequence number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10000_events_arrives_in_order() {
    burst_arrives_in_order("broadcast").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10000_queued_broadcasts_arrives_in_order() {
    burst_arrives_in_order("broadcast-queued").await;
}

async fn burst_arrives_in_order(event: &str) {
    const COUNT: i64 = 10_000;
    let mut server = Server::start(config()).await;
    let (mut receiver, _) = Ws::open(&server).await;
    sio_connect(&mut receiver, "40").await;
    let (mut sender, _) = Ws::open(&server).await;
    sio_connect(&mut sender, "40").await;

    let received = tokio::spawn(async move {
        let mut got = Vec::with_capacity(COUNT as usize);
        while got.len() < COUNT as usize {
            got.push(broadcast_seq(&receiver.recv().await));
        }
        got
    });
    sender
        .send_many((0..COUNT).map(|i| format!(r#"42["{event}",{i}]"#)))
        .await;
    let got = within("the whole burst", received).await.unwrap();
    let expected: Vec<i64> = (0..COUNT).collect();
    if got != expected {
        let first_wrong = got.iter().zip(&expected).position(|(a, b)| a != b);
        panic!("out of order from index {first_wrong:?}");
    }

    // The handler saw them in order too, and the sender got none of its own.
    let seen: Vec<String> = server
        .drain_observed()
        .into_iter()
        .filter_map(|o| match o {
            Observed::Event { name, args, .. } if name == event => Some(args),
            _ => None,
        })
        .collect();
    let expected_args: Vec<String> = (0..COUNT).map(|i| format!("[{i}]")).collect();
    assert!(
        seen == expected_args,
        "the handler saw the burst out of order"
    );
    sender.send(r#"42["message","end"]"#).await;
    assert_eq!(sender.recv().await, text(r#"42["message-back","end"]"#));
    assert_no_engine_panic();
}

/// In a small room the broadcasting task writes each idle socket itself, and a socket
/// whose send buffer is nearly full takes only part of a frame: the socket's own task
/// must carry on from the byte where that write stopped. A reader that pauses while
/// 30 KB frames pile up (each larger than the kernel takes at once for a reader this
/// slow, so writes come up short) must still get every frame whole and in order once it
/// reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_pauses_gets_every_frame_whole_when_it_reads_again() {
    paused_reader_gets_every_frame_whole("broadcast").await;
}

/// The same with queued broadcasts, which the engine's write-behind task writes: its
/// short writes too must be resumed at the right byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_pauses_gets_every_queued_frame_whole_when_it_reads_again() {
    paused_reader_gets_every_frame_whole("broadcast-queued").await;
}

async fn paused_reader_gets_every_frame_whole(event: &str) {
    const COUNT: usize = 200;
    const PADDING: usize = 30_000;
    let mut config = config();
    config.eio.max_payload = 40_000;
    config.eio.max_backlog = 16 << 20;
    let server = Server::start(config).await;
    let mut paused = RawWs::open(&server, Some(4096)).await;
    sio_connect(&mut paused, "40").await;
    let (mut sender, _) = Ws::open(&server).await;
    sio_connect(&mut sender, "40").await;

    // 6 MB for a reader that reads nothing meanwhile: more than the kernel holds (it
    // takes a few MB here), less than the backlog that would disconnect it.
    let padding = |i: usize| {
        char::from(b'a' + (i % 26) as u8)
            .to_string()
            .repeat(PADDING)
    };
    sender
        .send_many((0..COUNT).map(|i| format!(r#"42["{event}",{i},"{}"]"#, padding(i))))
        .await;
    // Messages are handled in order: once this one is answered, every broadcast has
    // been handed to the paused reader's socket.
    sender.send(r#"42["message","end"]"#).await;
    assert_eq!(sender.recv().await, text(r#"42["message-back","end"]"#));

    for i in 0..COUNT {
        let frame = paused.read_text().await;
        assert!(
            frame == format!(r#"42["broadcast",{i},"{}"]"#, padding(i)),
            "frame {i} is not whole: {} bytes, starting {:?}",
            frame.len(),
            &frame[..frame.len().min(40)]
        );
    }
    server.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_disconnected_while_its_room_keeps_receiving() {
    const BATCH: i64 = 16;
    const MAX_MESSAGES: i64 = 40_000;
    let mut config = config();
    config.eio.max_backlog = 64 * 1024;
    config.eio.max_payload = 4096;
    let mut server = Server::start(config).await;

    // Connects, then never reads again; a small receive buffer so the kernel holds little.
    let mut stalled = RawWs::open(&server, Some(4096)).await;
    let stalled_id = sio_connect(&mut stalled, "40").await;
    // The long-polling equivalent: connects, then never polls again.
    let (mut stalled_polling, _) = Polling::open(&server).await;
    let stalled_polling_id = sio_connect(&mut stalled_polling, "40").await;

    let (mut reader, _) = Ws::open(&server).await;
    sio_connect(&mut reader, "40").await;
    let (mut sender, _) = Ws::open(&server).await;
    sio_connect(&mut sender, "40").await;

    // The reader reports its progress so the sender never gets far ahead of it: the
    // reader's own backlog stays well under the bound.
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0i64);
    let received = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            let seq = broadcast_seq(&reader.recv().await);
            if seq < 0 {
                return (got, reader);
            }
            got.push(seq);
            let _ = progress_tx.send(got.len() as i64);
        }
    });

    let padding = "x".repeat(1000);
    let mut sent = 0i64;
    let mut stalled_left = Vec::new();
    let mut all_gone_at = None;
    while all_gone_at.is_none_or(|at| sent < at + 4 * BATCH) {
        assert!(
            sent < MAX_MESSAGES,
            "stalled readers still connected after {sent} messages of 1 KB: {stalled_left:?} left"
        );
        let batch = (sent..sent + BATCH).map(|i| format!(r#"42["broadcast",{i},"{padding}"]"#));
        sender.send_many(batch).await;
        sent += BATCH;
        within("the reader to keep up", progress.wait_for(|n| *n >= sent))
            .await
            .expect("reader alive");
        for observed in server.drain_observed() {
            if let Observed::Disconnected { id, reason } = observed {
                assert_eq!(reason, DisconnectReason::SlowConsumer, "{id} left");
                stalled_left.push(id);
            }
        }
        if all_gone_at.is_none() && stalled_left.len() == 2 {
            all_gone_at = Some(sent);
        }
    }
    stalled_left.sort();
    let mut stalled_ids = vec![stalled_id, stalled_polling_id];
    stalled_ids.sort();
    assert_eq!(stalled_left, stalled_ids);
    sender.send(r#"42["broadcast",-1]"#).await;
    let (got, _reader) = within("the reader's last message", received).await.unwrap();
    assert_eq!(
        got,
        (0..sent).collect::<Vec<_>>(),
        "the reader missed messages"
    );

    // Their connections are gone (what was already in flight aside).
    stalled.expect_end().await;
    stalled_polling.expect_closed().await;
    let room = server.io.namespace("/").expect("root").room_size(ROOM);
    assert_eq!(room, 2, "the stalled socket left the room, the others stay");
    server.assert_still_serving().await;
}
