// Key regeneration and project deletion kick every live socket of the old key at once
// (SPEC §2, §3): an `error` event `API_KEY_REVOKED`, then `disconnect` with
// "io server disconnect", within 1 s; other projects stay connected.
//
// Shared by revocation.test.js (polling then upgrade, websocket only) and
// revocation-polling.test.js (polling only).

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import {
  closeAllClients,
  connect,
  connectError,
  client,
  deleteProject,
  emitWithAck,
  kicked,
  newProject,
  regenerateKey,
  startServer,
  upgraded,
  within,
} from "./roomcast.js";

/** Registers the revocation tests for each of `modes` on one server. */
export function revocationSuite(modes) {
  let server;

  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.close();
  });
  afterEach(closeAllClients);

  /**
   * Connects, and in the default mode waits for the upgrade: revocation of a socket still
   * on polling is the polling-only case (revocation-polling.test.js); here the upgrade
   * must not race the regeneration.
   */
  async function join(apiKey, mode) {
    const socket = await connect(server.url, apiKey, mode);
    return mode.transports ? socket : upgraded(socket);
  }


  async function assertKicked(watch, socket, revokedAt) {
    const events = await within(1_000 + 500, watch.done, "the socket to be disconnected");
    const elapsed = Date.now() - revokedAt;
    assert.ok(elapsed <= 1_000, `disconnected ${elapsed} ms after the REST call answered`);
    assert.equal(events.length, 2, JSON.stringify(events));
    const [[first, error], [second, reason]] = events;
    assert.equal(first, "error");
    assert.equal(error.code, "API_KEY_REVOKED");
    assert.equal(typeof error.message, "string");
    assert.equal(second, "disconnect");
    assert.equal(reason, "io server disconnect");
    // socket.io-client does not reconnect after a server-side disconnect.
    assert.equal(socket.active, false);
    assert.equal(socket.connected, false);
  }

  /** A socket of an unrelated project that must keep working throughout. */
  async function bystander(mode) {
    const project = await newProject(server.url);
    const socket = await join(project.apiKey, mode);
    let dropped = null;
    socket.on("disconnect", (reason) => (dropped = reason));
    return {
      async stillWorks() {
        assert.equal(dropped, null, `the other project's socket was disconnected: ${dropped}`);
        assert.deepEqual(await emitWithAck(socket, 5_000, "message", "still here"), [{ ok: true }]);
        assert.equal(socket.connected, true);
      },
    };
  }

  for (const mode of modes) {
    describe(`revocation, ${mode.name}`, () => {
      test("regenerating the key kicks every socket of the old key within 1 s; others stay", async () => {
        const project = await newProject(server.url);
        const other = await bystander(mode);
        const sockets = await Promise.all([0, 1, 2].map(() => join(project.apiKey, mode)));
        const watches = sockets.map(kicked);
        const fresh = await regenerateKey(project);
        const at = Date.now();
        await Promise.all(sockets.map((s, i) => assertKicked(watches[i], s, at)));
        await other.stillWorks();
        // The old key is refused from now on; the new one works.
        const retry = client(server.url, { apiKey: project.apiKey }, mode, { reconnection: false });
        assert.equal((await connectError(retry)).data.code, "INVALID_API_KEY");
        const renewed = await join(fresh, mode);
        assert.deepEqual(await emitWithAck(renewed, 5_000, "message", "new key"), [{ ok: true }]);
      });

      test("a socket of the new key is not kicked by a later message flow; a second regeneration kicks it", async () => {
        const project = await newProject(server.url);
        const first = await join(project.apiKey, mode);
        const firstWatch = kicked(first);
        project.apiKey = await regenerateKey(project);
        await assertKicked(firstWatch, first, Date.now());
        const second = await join(project.apiKey, mode);
        const secondWatch = kicked(second);
        assert.deepEqual(await emitWithAck(second, 5_000, "message", "on the new key"), [{ ok: true }]);
        project.apiKey = await regenerateKey(project);
        await assertKicked(secondWatch, second, Date.now());
      });

      test("deleting the project kicks its sockets within 1 s; others stay", async () => {
        const project = await newProject(server.url);
        const other = await bystander(mode);
        const sockets = await Promise.all([0, 1].map(() => join(project.apiKey, mode)));
        const watches = sockets.map(kicked);
        await deleteProject(project);
        const at = Date.now();
        await Promise.all(sockets.map((s, i) => assertKicked(watches[i], s, at)));
        await other.stillWorks();
        const retry = client(server.url, { apiKey: project.apiKey }, mode, { reconnection: false });
        const err = await connectError(retry);
        assert.equal(err.message, "invalid API key");
        assert.deepEqual(err.data, { code: "INVALID_API_KEY" });
      });

      test("a server-side disconnect reaches the client as `io server disconnect`; it stays down", async () => {
        const project = await newProject(server.url);
        const socket = await join(project.apiKey, mode);
        const watch = kicked(socket);
        await regenerateKey(project);
        await assertKicked(watch, socket, Date.now());
        // A manual reconnect with the same (revoked) key is refused.
        socket.io.opts.reconnection = false;
        const refused = connectError(socket);
        socket.connect();
        const err = await refused;
        assert.deepEqual(err.data, { code: "INVALID_API_KEY" });
      });
    });
  }
}
