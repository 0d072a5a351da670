// A client that stops reading is disconnected once its unsent backlog passes the bound
// (1 MiB by default), and never slows delivery to the rest of its room (SPEC §3).
//
// The stalled client is a raw WebSocket speaking Engine.IO/Socket.IO by hand, so that it
// can stop reading (the `ws` package's pause() stops reading the TCP socket); the rest
// of the room is socket.io-client in each transport mode.

import assert from "node:assert/strict";
import { after, afterEach, before, test } from "node:test";
import WebSocket from "ws";
import { MODES, closeAllClients, connect, newProject, record, startServer, within } from "../lib/roomcast.js";

let server;

before(async () => {
  // Rate limits raised by the operator so that the flood below is accepted.
  server = await startServer({
    flags: ["--messages-per-second", "10000", "--project-messages-per-second", "20000"],
  });
});
after(async () => {
  await server?.close();
});
afterEach(closeAllClients);

/** A raw Socket.IO client over WebSocket, connected to the project's room. */
async function rawClient(url, apiKey) {
  const ws = new WebSocket(`${url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket`);
  const frames = [];
  let onFrame = () => {};
  ws.on("message", (data, isBinary) => {
    const text = isBinary ? "<binary>" : data.toString();
    if (text === "2") ws.send("3"); // answer pings while reading
    frames.push(text);
    onFrame(text);
  });
  const errors = [];
  ws.on("error", (error) => errors.push(error)); // a reset after the server gives up is fine
  const closed = new Promise((resolve) => ws.once("close", (code) => resolve(code)));
  const waitFor = (predicate, what) =>
    within(
      5_000,
      new Promise((resolve, reject) => {
        const hit = frames.find(predicate);
        if (hit) return resolve(hit);
        onFrame = (text) => predicate(text) && resolve(text);
        ws.once("error", reject);
      }),
      what,
    );
  const open = await waitFor((t) => t.startsWith("0{"), "Engine.IO open packet");
  assert.ok(JSON.parse(open.slice(1)).sid);
  ws.send(`40${JSON.stringify({ apiKey })}`);
  const ack = await waitFor((t) => t.startsWith("40") || t.startsWith("44"), "Socket.IO CONNECT answer");
  assert.match(ack, /^40\{"sid":/, "connected to the room");
  onFrame = () => {};
  return { ws, frames, closed };
}

test("a client that stops reading is disconnected; the rest of the room gets everything", { timeout: 90_000 }, async () => {
  const project = await newProject(server.url);
  const stalled = await rawClient(server.url, project.apiKey);
  const healthy = await Promise.all(MODES.map((mode) => connect(server.url, project.apiKey, mode)));
  const got = healthy.map((s) => record(s));
  const drops = healthy.map((s) => record(s, "disconnect"));
  const sender = await connect(server.url, project.apiKey, MODES[1], { extraAuth: { echo: false } });

  stalled.ws.pause(); // stops reading from the TCP socket: the kernel buffers fill, then the server's queue

  // 1,000 × 16 kB = 16 MB: far more than the kernel's socket buffers plus the 1 MiB
  // backlog. The sender waits until every reading client has all but the last WINDOW
  // messages before it sends the next, so a client that reads is never more than
  // WINDOW × 16 kB behind; only the stalled one falls behind. (A producer faster than
  // a reader overruns a 1 MiB backlog whatever the reader does; not what this tests.)
  const COUNT = 1_000;
  const WINDOW = 16;
  const body = "m".repeat(16_000);
  const started = Date.now();
  for (let i = 0; i < COUNT; i++) {
    if (i >= WINDOW) await Promise.all(got.map((r) => r.until(i - WINDOW + 1, 20_000)));
    sender.emit("message", `${i}:${body}`);
  }
  for (const [i, r] of got.entries()) {
    const items = await r.until(COUNT, 60_000);
    const order = items.map((m) => Number(m.slice(0, m.indexOf(":"))));
    assert.deepEqual(order, [...Array(COUNT).keys()], `${MODES[i].name}: all ${COUNT}, in order`);
  }
  const tookMs = Date.now() - started;
  for (const [i, d] of drops.entries()) assert.deepEqual(d.items, [], `${MODES[i].name} stayed connected`);

  // Read again: what was buffered before the server gave up arrives, then the close.
  stalled.ws.resume();
  await within(10_000, stalled.closed, "the stalled client's connection to be closed by the server");
  const delivered = stalled.frames.filter((f) => f.startsWith('42["message"')).length;
  assert.ok(delivered < COUNT, `the stalled client was cut off (it got ${delivered} of ${COUNT})`);
  for (const socket of healthy) assert.equal(socket.connected, true, "healthy sockets stay connected");
  console.log(`# reading clients got ${COUNT} × 16 kB in ${tookMs} ms; the stalled one got ${delivered}`);
});
