// SPEC §1's `GET /metrics`: Prometheus text with connections (total and per project),
// messages received / delivered / rejected by reason, handshake failures by code and the
// latency of the message path. A fresh server per file, so every count is exact.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  client,
  connect,
  connectError,
  emitWithAck,
  kicked,
  MODES,
  newProject,
  next,
  publish,
  record,
  regenerateKey,
  serverPerFile,
} from "../lib/roomcast.js";

let server;
serverPerFile((started) => {
  server = started;
});

/** The scrape as a map from series (name plus labels, as printed) to value. */
async function scrape() {
  const response = await fetch(new URL("/metrics", server.url));
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type"), /^text\/plain/);
  const series = new Map();
  for (const line of (await response.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    series.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return series;
}

/** Scrapes until `settled(series)` holds or 2 s pass; returns the last scrape. */
async function scrapeUntil(settled) {
  const deadline = Date.now() + 2_000;
  let series = await scrape();
  while (!settled(series) && Date.now() < deadline) series = await scrape();
  return series;
}

function assertSeries(series, expected) {
  for (const [name, value] of Object.entries(expected)) {
    assert.equal(series.get(name), value, `${name} in ${JSON.stringify([...series.keys()].filter((k) => k.startsWith(name.split("{")[0])))}`);
  }
}

test("every series is there from the start, at zero", async () => {
  assertSeries(await scrape(), {
    roomcast_connections: 0,
    roomcast_messages_received_total: 0,
    roomcast_messages_delivered_total: 0,
    'roomcast_messages_rejected_total{reason="INVALID_PAYLOAD"}': 0,
    'roomcast_messages_rejected_total{reason="MESSAGE_TOO_LARGE"}': 0,
    'roomcast_messages_rejected_total{reason="RATE_LIMITED"}': 0,
    'roomcast_messages_rejected_total{reason="UNKNOWN_EVENT"}': 0,
    'roomcast_handshake_failures_total{code="API_KEY_REQUIRED"}': 0,
    'roomcast_handshake_failures_total{code="INVALID_API_KEY"}': 0,
    'roomcast_handshake_failures_total{code="CONNECTION_LIMIT"}': 0,
    'roomcast_handshake_failures_total{code="ORIGIN_NOT_ALLOWED"}': 0,
    'roomcast_disconnects_total{reason="transport_close"}': 0,
    'roomcast_disconnects_total{reason="server_disconnect"}': 0,
    'roomcast_disconnects_total{reason="slow_consumer"}': 0,
    roomcast_message_path_seconds_count: 0,
  });
});

test("connections, messages, refusals and handshake failures are counted as they happen", async () => {
  const project = await newProject(server.url);
  const [websocket, polling] = await Promise.all(
    [MODES.find((m) => m.name === "websocket only"), MODES.find((m) => m.name === "polling only")].map((mode) =>
      connect(server.url, project.apiKey, mode),
    ),
  );
  for (const auth of [{ apiKey: "not-a-key" }, {}]) {
    const refused = client(server.url, auth, MODES[1], { reconnection: false });
    await connectError(refused);
    refused.disconnect();
  }
  const got = record(polling);
  assert.deepEqual(await emitWithAck(websocket, 5_000, "message", "counted"), [{ ok: true }]);
  const [invalid] = await emitWithAck(websocket, 5_000, "message", 42);
  assert.equal(invalid.error.code, "INVALID_PAYLOAD");
  const [unknown] = await emitWithAck(websocket, 5_000, "other", "x");
  assert.equal(unknown.error.code, "UNKNOWN_EVENT");
  assert.deepEqual((await publish(project, "published")).body, { delivered_to: 2 });
  assert.deepEqual(await got.until(2), ["counted", "published"]);

  const series = await scrape();
  assertSeries(series, {
    roomcast_connections: 2,
    [`roomcast_project_connections{project="${project.id}"}`]: 2,
    // The accepted message, the refused one and the HTTP publish; `other` is no message.
    roomcast_messages_received_total: 3,
    [`roomcast_project_messages_received_total{project="${project.id}"}`]: 3,
    // Two accepted messages, two sockets each.
    roomcast_messages_delivered_total: 4,
    [`roomcast_project_messages_delivered_total{project="${project.id}"}`]: 4,
    'roomcast_messages_rejected_total{reason="INVALID_PAYLOAD"}': 1,
    'roomcast_messages_rejected_total{reason="UNKNOWN_EVENT"}': 1,
    'roomcast_messages_rejected_total{reason="MESSAGE_TOO_LARGE"}': 0,
    'roomcast_handshake_failures_total{code="INVALID_API_KEY"}': 1,
    'roomcast_handshake_failures_total{code="API_KEY_REQUIRED"}': 1,
  });
  // The socket message and the HTTP publish that were broadcast went down the message path.
  assert.equal(series.get("roomcast_message_path_seconds_count"), 2);
  assert.equal(series.get('roomcast_message_path_seconds_bucket{le="+Inf"}'), 2);
  assert.ok(series.get("roomcast_message_path_seconds_sum") > 0);

  const gone = next(polling, "disconnect");
  polling.disconnect();
  await gone;
  // The server learns of it from the close packet a moment later.
  const now = await scrapeUntil((series) => series.get("roomcast_connections") === 1);
  assertSeries(now, {
    roomcast_connections: 1,
    [`roomcast_project_connections{project="${project.id}"}`]: 1,
  });

  // A revocation disconnects the last socket; it refuses no message.
  const watch = kicked(websocket);
  await regenerateKey(project);
  await watch.done;
  const after = await scrapeUntil((series) => series.get("roomcast_connections") === 0);
  assertSeries(after, {
    roomcast_connections: 0,
    'roomcast_disconnects_total{reason="server_disconnect"}': 1,
  });
  assert.equal(after.get('roomcast_messages_rejected_total{reason="API_KEY_REVOKED"}'), undefined);
});
