// The engine alone, as the protocol conformance example wires it
// (examples/conformance.rs, fixed on 127.0.0.1:3000), met by the real socket.io-client in
// each transport mode: auth handed back on connect, message-back, acks, binary, the
// /custom namespace, and unknown namespaces refused.

import assert from "node:assert/strict";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { io } from "socket.io-client";
import { MODES, ROOT, connectError, connected, next, spawnListening, within } from "../lib/roomcast.js";

const BIN = process.env.ROOMCAST_CONFORMANCE_BIN ?? path.join(ROOT, "target/release/examples/conformance");

let server;
const sockets = [];

before(async () => {
  server = await spawnListening(BIN, []);
  assert.equal(server.url, "http://127.0.0.1:3000");
});

after(async () => {
  for (const socket of sockets) socket.disconnect();
  if (server) {
    server.child.kill("SIGTERM");
    await within(10_000, server.exited, "conformance server to exit");
  }
});

function open(nsp, mode, options = {}) {
  const socket = io(`http://127.0.0.1:3000${nsp}`, {
    forceNew: true,
    reconnection: false,
    ...(mode.transports ? { transports: mode.transports } : {}),
    ...options,
  });
  sockets.push(socket);
  return socket;
}

for (const mode of MODES) {
  describe(`conformance server, ${mode.name}`, () => {
    test("connect to / hands the auth payload back in an `auth` event", async () => {
      const socket = open("/", mode, { auth: { token: "abc", n: 1 } });
      const [auth] = await Promise.all([next(socket, "auth").then(([a]) => a), connected(socket)]);
      assert.deepEqual(auth, { token: "abc", n: 1 });
      assert.equal(typeof socket.id, "string");
      socket.disconnect();
    });

    test("`message` comes back as `message-back` with all its arguments", async () => {
      const socket = open("/", mode);
      await connected(socket);
      const back = next(socket, "message-back");
      socket.emit("message", 1, "2", { three: [true, null] });
      assert.deepEqual(await back, [1, "2", { three: [true, null] }]);
      socket.disconnect();
    });

    test("`message-with-ack` is acknowledged with all its arguments", async () => {
      const socket = open("/", mode);
      await connected(socket);
      const args = await within(
        5_000,
        new Promise((resolve) => socket.emit("message-with-ack", 1, "2", [3], (...r) => resolve(r))),
        "ack",
      );
      assert.deepEqual(args, [1, "2", [3]]);
      socket.disconnect();
    });

    test("binary arguments go both ways (message-back and ack)", async () => {
      const socket = open("/", mode);
      await connected(socket);
      const back = next(socket, "message-back");
      socket.emit("message", Buffer.from([1, 2, 3]), "text", { nested: Buffer.from("hi") });
      const [bin, text, obj] = await back;
      assert.deepEqual(Buffer.from(bin), Buffer.from([1, 2, 3]));
      assert.equal(text, "text");
      assert.deepEqual(Buffer.from(obj.nested), Buffer.from("hi"));
      const [acked] = await within(
        5_000,
        new Promise((resolve) => socket.emit("message-with-ack", Buffer.from([9]), (...r) => resolve(r))),
        "binary ack",
      );
      assert.deepEqual(Buffer.from(acked), Buffer.from([9]));
      socket.disconnect();
    });

    test("the /custom namespace emits `auth` too", async () => {
      const socket = open("/custom", mode, { auth: { custom: "yes" } });
      const [auth] = await Promise.all([next(socket, "auth").then(([a]) => a), connected(socket)]);
      assert.deepEqual(auth, { custom: "yes" });
      const back = next(socket, "message-back");
      socket.emit("message", "on custom");
      assert.deepEqual(await back, ["on custom"]);
      socket.disconnect();
    });

    test("an unknown namespace is refused with `Invalid namespace`", async () => {
      const socket = open("/nope", mode);
      const err = await connectError(socket);
      assert.equal(err.message, "Invalid namespace");
      socket.disconnect();
    });

    test("the client disconnecting is seen as `io client disconnect`", async () => {
      const socket = open("/", mode);
      await connected(socket);
      const gone = next(socket, "disconnect");
      socket.disconnect();
      assert.deepEqual((await gone)[0], "io client disconnect");
    });
  });
}

test("the default mode really upgrades from polling to websocket", async () => {
  const socket = open("/", MODES[0]);
  const upgraded = within(
    5_000,
    new Promise((resolve) => {
      socket.io.once("open", () => {
        const engine = socket.io.engine;
        const first = engine.transport.name;
        engine.once("upgrade", (transport) => resolve({ first, upgradedTo: transport.name }));
      });
    }),
    "engine upgrade",
  );
  await connected(socket);
  assert.deepEqual(await upgraded, { first: "polling", upgradedTo: "websocket" });
  assert.equal(socket.io.engine.transport.name, "websocket");
  const back = next(socket, "message-back");
  socket.emit("message", "after upgrade");
  assert.deepEqual(await back, ["after upgrade"]);
  socket.disconnect();
});
