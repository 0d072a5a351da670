// SIGTERM closes client transports so that socket.io clients reconnect by themselves
// (SPEC §1): the server exits 0 within 10 s, a new one starts on the same port and
// database, and every client gets `connect` again without doing anything.

import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, test } from "node:test";
import { MODES, closeAllClients, connect, emitWithAck, newProject, next, record, startServer } from "../lib/roomcast.js";

afterEach(closeAllClients);

for (const mode of MODES) {
  describe(`server restart, ${mode.name}`, () => {
    test("clients reconnect by themselves to the restarted server", { timeout: 60_000 }, async () => {
      const dir = await mkdtemp(path.join(tmpdir(), "roomcast-e2e-restart-"));
      let server = await startServer({ dir });
      try {
        const project = await newProject(server.url);
        // Short reconnection delays keep the test quick; the client's default behaviour
        // (reconnect on transport loss) is what is checked.
        const options = { reconnectionDelay: 100, reconnectionDelayMax: 500 };
        const sockets = await Promise.all([0, 1].map(() => connect(server.url, project.apiKey, mode, options)));
        const firstIds = sockets.map((s) => s.id);
        const dropped = sockets.map((s) => next(s, "disconnect", 15_000));

        const exit = await server.stop();
        assert.deepEqual(exit, { code: 0, signal: null }, "exit status after SIGTERM");
        for (const [reason] of await Promise.all(dropped)) {
          assert.ok(
            reason === "transport close" || reason === "transport error",
            `the client sees its transport go (not "${reason}"), so it will reconnect`,
          );
        }
        for (const socket of sockets) assert.equal(socket.active, true, "still trying to reconnect");

        const reconnected = sockets.map((s) => next(s, "connect", 20_000));
        server = await startServer({ dir, bind: `127.0.0.1:${server.port}` });
        await Promise.all(reconnected);
        for (const [i, socket] of sockets.entries()) {
          assert.equal(socket.connected, true);
          assert.notEqual(socket.id, firstIds[i], "a new session");
        }
        // Same key (same database), same room.
        const got = record(sockets[1]);
        assert.deepEqual(await emitWithAck(sockets[0], 5_000, "message", "after restart"), [{ ok: true }]);
        assert.deepEqual(await got.until(1), ["after restart"]);
      } finally {
        closeAllClients();
        await server.stop().catch(() => {});
        await rm(dir, { recursive: true, force: true });
      }
    });
  });
}
