// SPEC §3's `error` events and §4's limits with the real socket.io-client, in each
// transport mode: each rejected event is answered with an `error` event (and the ack when
// one was asked for), is never broadcast, and the socket stays usable.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  connect,
  emitWithAck,
  MODES,
  newProject,
  next,
  record,
  serverPerFile,
  setSettings,
} from "../lib/roomcast.js";

let server;
serverPerFile((started) => {
  server = started;
});

/** Every event a socket receives, in order, as [name, ...args]. */
function everything(socket) {
  const events = [];
  socket.onAny((...args) => events.push(args));
  return events;
}

/** Checks `{code, message, ...detail}`: the SPEC's error object. */
function assertError(error, code, detail = {}) {
  assert.equal(typeof error, "object", `error object for ${code}: ${JSON.stringify(error)}`);
  assert.equal(error.code, code, JSON.stringify(error));
  assert.equal(typeof error.message, "string");
  assert.ok(error.message.length > 0, "a message for people");
  for (const [key, check] of Object.entries(detail)) check(error[key], key);
  const allowed = new Set(["code", "message", ...Object.keys(detail)]);
  for (const key of Object.keys(error)) assert.ok(allowed.has(key), `unexpected field ${key} in ${JSON.stringify(error)}`);
}

const positiveInteger = (value, key) =>
  assert.ok(Number.isInteger(value) && value > 0, `${key} is a positive integer, got ${value}`);

/**
 * A sender and an observer in one project. `sentinel()` sends a valid message from the
 * sender and resolves with everything the observer received up to and including it:
 * since a sender's messages keep their order, anything rejected before it would show.
 */
async function room(mode) {
  const project = await newProject(server.url);
  const sender = await connect(server.url, project.apiKey, mode);
  const observer = await connect(server.url, project.apiKey, mode);
  const seen = everything(observer);
  const errors = record(sender, "error");
  let n = 0;
  return {
    project,
    sender,
    observer,
    errors,
    async sentinel() {
      const text = `sentinel ${++n}`;
      const arrived = new Promise((resolve) => {
        const check = (event, arg) => {
          if (event === "message" && arg === text) {
            observer.offAny(check);
            resolve();
          }
        };
        observer.onAny(check);
      });
      sender.emit("message", text);
      await Promise.race([arrived, next(observer, "disconnect", 5_000).then(() => assert.fail("observer dropped"))]);
      return seen.splice(0);
    },
  };
}

const INVALID = [
  ["a number", [42]],
  ["an object", [{ text: "hi" }]],
  ["binary", [Buffer.from("hi")]],
  ["null", [null]],
  ["missing", []],
  ["several strings", ["a", "b"]],
  ["a string and a number", ["a", 1]],
  ["an array of strings", [["a"]]],
];

for (const mode of MODES) {
  describe(`error events, ${mode.name}`, () => {
    for (const [label, args] of INVALID) {
      test(`message with ${label}: INVALID_PAYLOAD event, nothing broadcast`, async () => {
        const r = await room(mode);
        r.sender.emit("message", ...args);
        const [error] = await r.errors.until(1);
        assertError(error, "INVALID_PAYLOAD");
        assert.deepEqual(await r.sentinel(), [["message", "sentinel 1"]]);
        assert.equal(r.sender.connected, true);
      });

      test(`message with ${label} and an ack: {ok:false, error: INVALID_PAYLOAD} and the event`, async () => {
        const r = await room(mode);
        const ack = await emitWithAck(r.sender, 5_000, "message", ...args);
        assert.equal(ack.length, 1, `one ack argument: ${JSON.stringify(ack)}`);
        assert.equal(ack[0].ok, false);
        assert.deepEqual(Object.keys(ack[0]).sort(), ["error", "ok"]);
        assertError(ack[0].error, "INVALID_PAYLOAD");
        const [error] = await r.errors.until(1);
        assert.deepEqual(error, ack[0].error);
        assert.deepEqual(await r.sentinel(), [["message", "sentinel 1"]]);
      });
    }

    test("any other event: UNKNOWN_EVENT, never broadcast, ack answered", async () => {
      const r = await room(mode);
      r.sender.emit("chat", "hi");
      r.sender.emit("error", "spoofed");
      r.sender.emit("Message", "case matters");
      // socket.io-client sends a number as the event name as is (`42[1,"x"]`).
      r.sender.emit(1, "numbered");
      const errors = await r.errors.until(4);
      for (const error of errors) assertError(error, "UNKNOWN_EVENT");
      const ack = await emitWithAck(r.sender, 5_000, "typing", { on: true });
      assert.equal(ack[0].ok, false);
      assertError(ack[0].error, "UNKNOWN_EVENT");
      const numberedAck = await emitWithAck(r.sender, 5_000, 2, "x");
      assertError(numberedAck[0].error, "UNKNOWN_EVENT");
      assert.equal(r.sender.connected, true, "the connection stays up");
      assert.deepEqual(await r.sentinel(), [["message", "sentinel 1"]]);
    });

    test("over max_message_bytes: MESSAGE_TOO_LARGE with `limit`, counted in UTF-8 bytes", async () => {
      const r = await room(mode);
      await setSettings(r.project, { max_message_bytes: 16 });
      const exact = record(r.observer);
      const ok = await emitWithAck(r.sender, 5_000, "message", "x".repeat(16));
      assert.deepEqual(ok, [{ ok: true }]);
      const okUtf8 = await emitWithAck(r.sender, 5_000, "message", "é".repeat(8)); // 16 bytes
      assert.deepEqual(okUtf8, [{ ok: true }]);
      const limit = (value) => assert.equal(value, 16);
      const tooLong = await emitWithAck(r.sender, 5_000, "message", "x".repeat(17));
      assert.equal(tooLong[0].ok, false);
      assertError(tooLong[0].error, "MESSAGE_TOO_LARGE", { limit });
      const tooManyBytes = await emitWithAck(r.sender, 5_000, "message", "é".repeat(9)); // 9 chars, 18 bytes
      assert.equal(tooManyBytes[0].ok, false);
      assertError(tooManyBytes[0].error, "MESSAGE_TOO_LARGE", { limit });
      r.sender.emit("message", "y".repeat(17)); // no ack: the event alone
      const errors = await r.errors.until(3);
      for (const error of errors) assertError(error, "MESSAGE_TOO_LARGE", { limit });
      await exact.until(2);
      assert.deepEqual(
        (await r.sentinel()).filter(([event]) => event === "message").map(([, m]) => m),
        ["x".repeat(16), "é".repeat(8), "sentinel 1"],
      );
    });

    test("the default max_message_bytes is 65,536", async () => {
      const r = await room(mode);
      assert.deepEqual(await emitWithAck(r.sender, 5_000, "message", "z".repeat(65_536)), [{ ok: true }]);
      const ack = await emitWithAck(r.sender, 5_000, "message", "z".repeat(65_537));
      assertError(ack[0].error, "MESSAGE_TOO_LARGE", { limit: (v) => assert.equal(v, 65_536) });
    });

    test("over messages_per_second (burst 2x): RATE_LIMITED with retry_after_ms, applied to a live socket", async () => {
      const r = await room(mode);
      await setSettings(r.project, { messages_per_second: 1 });
      // Burst 2: the first two pass, the third is refused.
      const acks = await Promise.all(
        ["r1", "r2", "r3"].map((m) => emitWithAck(r.sender, 5_000, "message", m).then(([a]) => a)),
      );
      assert.deepEqual(acks.slice(0, 2), [{ ok: true }, { ok: true }]);
      assert.equal(acks[2].ok, false);
      assertError(acks[2].error, "RATE_LIMITED", { retry_after_ms: positiveInteger });
      assert.ok(acks[2].error.retry_after_ms <= 1_000, `retry within a second at 1/s: ${acks[2].error.retry_after_ms}`);
      const [event] = await r.errors.until(1);
      assertError(event, "RATE_LIMITED", { retry_after_ms: positiveInteger });
      // The limit is per connection: the observer can still send.
      assert.deepEqual(await emitWithAck(r.observer, 5_000, "message", "observer"), [{ ok: true }]);
    });

    test("over project_messages_per_second: RATE_LIMITED for every socket of the project", async () => {
      const r = await room(mode);
      await setSettings(r.project, { project_messages_per_second: 1 });
      assert.deepEqual(await emitWithAck(r.sender, 5_000, "message", "p1"), [{ ok: true }]);
      assert.deepEqual(await emitWithAck(r.observer, 5_000, "message", "p2"), [{ ok: true }]);
      const [third] = await emitWithAck(r.observer, 5_000, "message", "p3");
      assert.equal(third.ok, false);
      assertError(third.error, "RATE_LIMITED", { retry_after_ms: positiveInteger });
      // Another project is not affected.
      const other = await newProject(server.url);
      const stranger = await connect(server.url, other.apiKey, mode);
      assert.deepEqual(await emitWithAck(stranger, 5_000, "message", "elsewhere"), [{ ok: true }]);
    });

    test("after a rate-limit refusal the socket can send again once the bucket refills", async () => {
      const r = await room(mode);
      await setSettings(r.project, { messages_per_second: 1 });
      await emitWithAck(r.sender, 5_000, "message", "a");
      await emitWithAck(r.sender, 5_000, "message", "b");
      const [refused] = await emitWithAck(r.sender, 5_000, "message", "c");
      assertError(refused.error, "RATE_LIMITED", { retry_after_ms: positiveInteger });
      // Waiting what the server asked for is the client's contract, not a readiness sleep.
      await new Promise((resolve) => setTimeout(resolve, refused.error.retry_after_ms + 50));
      assert.deepEqual(await emitWithAck(r.sender, 5_000, "message", "d"), [{ ok: true }]);
    });
  });
}
