// The SPEC §3 basics with the real socket.io-client, in each transport mode: the client
// example verbatim, the room broadcast (sender included), `echo: false`, acks, HTTP
// publish, and clients leaving.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { createInterface } from "node:readline";
import { describe, test } from "node:test";
import {
  client,
  connect,
  connected,
  emitWithAck,
  MODES,
  newProject,
  next,
  publish,
  record,
  serverPerFile,
  stats,
  within,
  ROOT,
} from "../lib/roomcast.js";

// SPEC.md's client example, character for character.
const SPEC_EXAMPLE = `import { io } from "socket.io-client";
const socket = io("http://HOST:3000", { auth: { apiKey: "YOUR_PROJECT_API_KEY" } });
socket.on("connect", () => socket.emit("message", "Hello, world!"));
socket.on("message", (msg) => console.log("Received:", msg));
socket.on("connect_error", (err) => console.error(err.message, err.data));
socket.on("error", (err) => console.error(err.code, err.message));
`;

let server;
serverPerFile((started) => {
  server = started;
});

test("the example above is SPEC.md's, unchanged", { timeout: 5_000 }, () => {
  // SPEC.md lives in shared/, beside the repository (also in CI).
  const spec = path.join(ROOT, "..", "shared", "SPEC.md");
  if (!existsSync(spec)) {
    console.log(`# ${spec} not found; the example is checked against the copy in this file`);
    return;
  }
  const block = /```js\n([\s\S]*?)```/.exec(readFileSync(spec, "utf8"));
  assert.ok(block, "SPEC.md has a js block");
  assert.equal(block[1], SPEC_EXAMPLE);
});

/**
 * Runs SPEC's example as its own node process against our server and key (the only
 * changes: the URL, the key, and the transports for the non-default modes). Resolves
 * the first line it prints.
 */
async function runSpecExample(url, apiKey, mode) {
  let code = SPEC_EXAMPLE.replace("http://HOST:3000", url).replace("YOUR_PROJECT_API_KEY", apiKey);
  if (mode.transports) {
    code = code.replace(" } });", ` }, transports: ${JSON.stringify(mode.transports)} });`);
    assert.ok(code.includes("transports"), "transports spliced into the example");
  }
  // Under e2e/node_modules (git-ignored) so that `socket.io-client` resolves from there.
  const dir = path.join(ROOT, "e2e", "node_modules", ".roomcast-e2e");
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `spec-example-${process.pid}-${Date.now()}.mjs`);
  await writeFile(file, code);
  const child = spawn(process.execPath, [file], { stdio: ["ignore", "pipe", "pipe"] });
  try {
    const out = createInterface({ input: child.stdout });
    const err = createInterface({ input: child.stderr });
    const firstLine = new Promise((resolve, reject) => {
      out.once("line", resolve);
      err.once("line", (line) => reject(new Error(`the example printed an error: ${line}`)));
      child.once("exit", (c) => reject(new Error(`the example exited with ${c} before printing`)));
    });
    return await within(10_000, firstLine, "the SPEC example to print a line");
  } finally {
    child.kill("SIGKILL");
    await rm(file, { force: true });
  }
}

for (const mode of MODES) {
  describe(`socket.io-client, ${mode.name}`, () => {
    test("SPEC's client example, run as is, prints `Received: Hello, world!`", async () => {
      const project = await newProject(server.url);
      // Another client of the room sees the example's message too.
      const peer = await connect(server.url, project.apiKey, mode);
      const peerGot = record(peer);
      const line = await runSpecExample(server.url, project.apiKey, mode);
      assert.equal(line, "Received: Hello, world!");
      assert.deepEqual(await peerGot.until(1), ["Hello, world!"]);
    });

    test("a message reaches every client of the room, the sender included, in order", async () => {
      const project = await newProject(server.url);
      const sockets = await Promise.all([0, 1, 2].map(() => connect(server.url, project.apiKey, mode)));
      const got = sockets.map((s) => record(s));
      sockets[0].emit("message", "one");
      sockets[0].emit("message", "two");
      sockets[1].emit("message", "three");
      for (const r of got) {
        const items = await r.until(3);
        assert.deepEqual([...items].sort(), ["one", "three", "two"]);
        assert.ok(items.indexOf("one") < items.indexOf("two"), "per-sender order kept");
      }
    });

    test("strings arrive exactly as sent (unicode, lone surrogates, empty, JSON-looking, large)", async () => {
      const project = await newProject(server.url);
      const a = await connect(server.url, project.apiKey, mode);
      const b = await connect(server.url, project.apiKey, mode);
      const got = record(b);
      // A JavaScript string may hold a lone UTF-16 surrogate; socket.io relays it as is.
      const samples = ["", "héllo wörld 👋 ✓", "\ud800lone", "ok\udc00", '{"not":"parsed"}', "line\nbreak\u001e\u0000", "x".repeat(60_000)];
      for (const s of samples) a.emit("message", s);
      assert.deepEqual(await got.until(samples.length), samples);
    });

    test("`echo: false` keeps a socket's own messages from it, not others'", async () => {
      const project = await newProject(server.url);
      const quiet = await connect(server.url, project.apiKey, mode, { extraAuth: { echo: false } });
      const other = await connect(server.url, project.apiKey, mode);
      const quietGot = record(quiet);
      const otherGot = record(other);
      quiet.emit("message", "from quiet");
      other.emit("message", "from other");
      assert.deepEqual([...(await otherGot.until(2))].sort(), ["from other", "from quiet"]);
      // The quiet socket's own message was sent before `other`'s; it would be here by now.
      assert.deepEqual(await quietGot.until(1), ["from other"]);
      const ack = await emitWithAck(quiet, 5_000, "message", "acked but not echoed");
      assert.deepEqual(ack, [{ ok: true }]);
      await otherGot.until(3);
      assert.deepEqual(quietGot.items, ["from other"]);
    });

    test("an accepted message is acknowledged with {ok: true}", async () => {
      const project = await newProject(server.url);
      const socket = await connect(server.url, project.apiKey, mode);
      const got = record(socket);
      const ack = await emitWithAck(socket, 5_000, "message", "with ack");
      assert.deepEqual(ack, [{ ok: true }]);
      assert.deepEqual(await got.until(1), ["with ack"]);
      // socket.io-client's promise form too.
      assert.deepEqual(await socket.timeout(5_000).emitWithAck("message", "again"), { ok: true });
    });

    test("POST /api/v1/messages reaches every socket of the project and counts them", async () => {
      const project = await newProject(server.url);
      const stranger = await newProject(server.url);
      const sockets = [
        await connect(server.url, project.apiKey, mode),
        await connect(server.url, project.apiKey, mode),
        await connect(server.url, project.apiKey, mode, { extraAuth: { echo: false } }),
      ];
      const outsider = await connect(server.url, stranger.apiKey, mode);
      const outsiderGot = record(outsider);
      const got = sockets.map((s) => record(s));
      const response = await publish(project, "from http");
      assert.equal(response.status, 202);
      assert.deepEqual(response.body, { delivered_to: 3 });
      for (const r of got) assert.deepEqual(await r.until(1), ["from http"]);
      // The other project's socket got nothing: its next message is its own.
      outsider.emit("message", "outsider sentinel");
      assert.deepEqual(await outsiderGot.until(1), ["outsider sentinel"]);
    });

    test("a client that leaves is no longer counted or delivered to", async () => {
      const project = await newProject(server.url);
      const stay = await connect(server.url, project.apiKey, mode);
      const leave = await connect(server.url, project.apiKey, mode);
      assert.equal((await stats(project)).connections, 2);
      const gone = next(leave, "disconnect");
      leave.disconnect();
      assert.equal((await gone)[0], "io client disconnect");
      // The server learns of it from the client's close; wait for it, bounded.
      const deadline = Date.now() + 2_000;
      let s = await stats(project);
      while (s.connections !== 1 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 25));
        s = await stats(project);
      }
      assert.equal(s.connections, 1, "connections within 2 s of the client leaving");
      const stayGot = record(stay);
      const response = await publish(project, "after leaving");
      assert.deepEqual(response.body, { delivered_to: 1 });
      assert.deepEqual(await stayGot.until(1), ["after leaving"]);
    });

    test("stats count what was received and delivered", async () => {
      const project = await newProject(server.url);
      const a = await connect(server.url, project.apiKey, mode);
      const b = await connect(server.url, project.apiKey, mode);
      const got = record(b);
      a.emit("message", "counted");
      await got.until(1);
      await emitWithAck(a, 5_000, "message", 42); // rejected: not a string
      const s = await stats(project);
      assert.equal(s.connections, 2);
      assert.equal(s.messages_received, 2);
      assert.equal(s.messages_rejected, 1);
      assert.equal(s.messages_delivered, 2);
    });
  });
}

test("with default options the client upgrades from polling to websocket and keeps messaging", async () => {
  const project = await newProject(server.url);
  const socket = client(server.url, { apiKey: project.apiKey }, MODES[0]);
  const upgraded = within(
    5_000,
    new Promise((resolve) => {
      socket.io.once("open", () => {
        const first = socket.io.engine.transport.name;
        socket.io.engine.once("upgrade", (t) => resolve({ first, upgradedTo: t.name }));
      });
    }),
    "engine upgrade",
  );
  await connected(socket);
  assert.deepEqual(await upgraded, { first: "polling", upgradedTo: "websocket" });
  const got = record(socket);
  socket.emit("message", "over websocket now");
  assert.deepEqual(await got.until(1), ["over websocket now"]);
});
