// A second, independent Socket.IO implementation: the python-socketio client from PyPI
// (e2e/python/client.py, in the venv that scripts/test creates) connects with auth,
// sends, gets its ack and an error event, and exchanges messages with socket.io-client.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { after, afterEach, before, describe, test } from "node:test";
import { ROOT, closeAllClients, connect, newProject, record, startServer, within } from "../lib/roomcast.js";

const PYTHON = process.env.ROOMCAST_E2E_PYTHON ?? path.join(ROOT, "target/e2e-venv/bin/python");
const SCRIPT = path.join(ROOT, "e2e/python/client.py");

let server;

before(async () => {
  if (!existsSync(PYTHON)) {
    throw new Error(`${PYTHON} not found: scripts/test creates this venv (python-socketio)`);
  }
  server = await startServer();
});
after(async () => {
  await server?.close();
});
afterEach(closeAllClients);

/** Starts client.py; `lines.next(event)` resolves its next line of that event. */
function python(...args) {
  const child = spawn(PYTHON, [SCRIPT, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const seen = [];
  const waiters = [];
  createInterface({ input: child.stdout }).on("line", (line) => {
    const item = JSON.parse(line);
    seen.push(item);
    for (const w of [...waiters]) {
      if (w.event === item.event) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(item);
      }
    }
  });
  const exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
  return {
    seen,
    exited: () => within(25_000, exited, "client.py to exit").then((code) => ({ code, stderr })),
    next(event) {
      const index = seen.findIndex((item) => item.event === event);
      if (index >= 0) return Promise.resolve(seen.splice(index, 1)[0]);
      return within(
        25_000,
        Promise.race([
          new Promise((resolve) => waiters.push({ event, resolve })),
          exited.then((code) => {
            throw new Error(`client.py exited (${code}) before "${event}": ${JSON.stringify(seen)}\n${stderr}`);
          }),
        ]),
        `client.py "${event}"`,
      );
    },
    kill: () => child.kill("SIGKILL"),
  };
}

for (const transports of ["polling,websocket", "websocket", "polling"]) {
  describe(`python-socketio client, transports ${transports}`, () => {
    test("connects with auth, sends, is acked, gets error events, and talks to socket.io-client", async () => {
      const project = await newProject(server.url);
      const js = await connect(server.url, project.apiKey, { transports: undefined });
      const jsGot = record(js);
      const py = python("ok", server.url, project.apiKey, transports);
      try {
        assert.equal(typeof (await py.next("connected")).sid, "string");
        assert.deepEqual((await py.next("ack")).data, { ok: true });
        // Its own message came back (echo), and socket.io-client saw it too.
        assert.deepEqual(await py.next("message"), { event: "message", data: "hello from python" });
        assert.deepEqual(await jsGot.until(1), ["hello from python"]);
        const error = (await py.next("error")).data;
        assert.equal(error.code, "INVALID_PAYLOAD");
        await py.next("ready");
        js.emit("message", "bye from js");
        assert.deepEqual(await py.next("message"), { event: "message", data: "bye from js" });
        await py.next("disconnected");
        assert.equal((await py.exited()).code, 0);
        // Nothing from the invalid message reached the room.
        assert.deepEqual(jsGot.items, ["hello from python", "bye from js"]);
      } finally {
        py.kill();
      }
    });

    test("a wrong key is refused with INVALID_API_KEY", async () => {
      const py = python("bad", server.url, "not-a-key", transports);
      try {
        const refusal = await py.next("connect_error");
        assert.deepEqual(refusal.data, { message: "invalid API key", data: { code: "INVALID_API_KEY" } });
        await py.next("refused");
        assert.equal((await py.exited()).code, 0);
      } finally {
        py.kill();
      }
    });
  });
}
