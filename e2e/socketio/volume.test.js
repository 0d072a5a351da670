// Many messages, in each transport mode: isolation between two projects over hundreds
// of messages, and per-sender order over a 10,000-message burst from one client.
//
// The server runs with the operator's rate limits raised (SPEC §4: "the operator may
// raise them") so that what is measured is delivery, not the rate limiter.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { MODES, closeAllClients, connect, emitWithAck, newProject, record, startServer } from "../lib/roomcast.js";

let server;

before(async () => {
  server = await startServer({
    flags: ["--messages-per-second", "10000", "--project-messages-per-second", "20000"],
  });
});
after(async () => {
  await server?.close();
});
afterEach(closeAllClients);

/** Asserts that, for each sender prefix, the numbers after it arrive as 0, 1, 2, … */
function assertPerSenderOrder(items, senders, count) {
  for (const sender of senders) {
    const numbers = items.filter((m) => m.startsWith(`${sender}:`)).map((m) => Number(m.slice(sender.length + 1)));
    assert.equal(numbers.length, count, `${count} messages from ${sender}`);
    const firstOut = numbers.findIndex((n, i) => n !== i);
    assert.equal(firstOut, -1, `${sender}: message #${firstOut} arrived as ${numbers[firstOut]}`);
  }
}

for (const mode of MODES) {
  describe(`volume, ${mode.name}`, () => {
    test("two projects exchanging hundreds of messages never see each other's", { timeout: 60_000 }, async () => {
      const PER_SENDER = 100;
      const projects = [await newProject(server.url), await newProject(server.url)];
      const rooms = await Promise.all(
        projects.map(async (project, p) => {
          const sockets = await Promise.all([0, 1, 2].map(() => connect(server.url, project.apiKey, mode)));
          return { p, sockets, got: sockets.map((s) => record(s)), senders: sockets.map((_, c) => `p${p}c${c}`) };
        }),
      );
      // Everyone sends at once; the last message of each sender asks for an ack.
      await Promise.all(
        rooms.flatMap((room) =>
          room.sockets.map(async (socket, c) => {
            for (let i = 0; i < PER_SENDER - 1; i++) socket.emit("message", `${room.senders[c]}:${i}`);
            const ack = await emitWithAck(socket, 15_000, "message", `${room.senders[c]}:${PER_SENDER - 1}`);
            assert.deepEqual(ack, [{ ok: true }]);
          }),
        ),
      );
      const total = 3 * PER_SENDER;
      for (const room of rooms) {
        for (const got of room.got) await got.until(total, 30_000);
        // Everything of the other project was accepted before this; a leak would already
        // be queued ahead of the sentinel.
        room.sockets[0].emit("message", `p${room.p}:end`);
      }
      for (const room of rooms) {
        for (const got of room.got) {
          const items = await got.until(total + 1, 10_000);
          assert.equal(items.length, total + 1);
          assert.equal(items.at(-1), `p${room.p}:end`);
          const foreign = items.filter((m) => !m.startsWith(`p${room.p}`));
          assert.deepEqual(foreign, [], "messages of the other project");
          assertPerSenderOrder(items.slice(0, -1), room.senders, PER_SENDER);
        }
      }
    });

    test("a 10,000-message burst from one client arrives complete and in order", { timeout: 120_000 }, async () => {
      const N = 10_000;
      const project = await newProject(server.url);
      const sender = await connect(server.url, project.apiKey, mode);
      const receiver = await connect(server.url, project.apiKey, mode);
      const echoed = record(sender);
      const received = record(receiver);
      for (let i = 0; i < N; i++) sender.emit("message", `s:${i}`);
      for (const [name, got] of [
        ["receiver", received],
        ["sender's echo", echoed],
      ]) {
        const items = await got.until(N, 90_000);
        assert.equal(items.length, N, name);
        assertPerSenderOrder(items, ["s"], N);
      }
    });
  });
}
