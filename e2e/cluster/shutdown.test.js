// One node of two stopped with SIGTERM (SPEC §1, §6): it exits 0 within 10 s, closing its
// clients' transports so that they reconnect by themselves, through the balancer, to the
// node that is left; that node keeps serving and its cluster-wide stats stop counting the
// stopped node's sockets.

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import { eventually, requirePostgresUrl, startBalancer, startRedis, startNodes, via } from "../lib/cluster.js";
import { MODES, closeAllClients, connect, emitWithAck, newProject, next, publish, record, stats } from "../lib/roomcast.js";

requirePostgresUrl();

let redis;

before(async () => {
  redis = await startRedis();
});
after(async () => {
  closeAllClients();
  await redis?.close();
});
afterEach(closeAllClients);

for (const mode of MODES.filter((m) => m.transports)) {
  describe(`a node stops, ${mode.name}`, () => {
    test("SIGTERM: exit 0, its clients reconnect to the other node, which serves on", { timeout: 60_000 }, async () => {
      // Each test stops a node of its own cluster.
      const [A, B] = await startNodes(redis, 2);
      const balancer = await startBalancer([A, B]);
      try {
        const project = await newProject(A.url);
        const options = { reconnectionDelay: 100, reconnectionDelayMax: 500 };
        // Through the balancer (on A while it lives), reconnecting as socket.io does.
        const roaming = await connect(balancer.url, project.apiKey, mode, options);
        // Straight to A, not reconnecting: it stays gone.
        const leaving = await connect(A.url, project.apiKey, mode, { reconnection: false });
        const stay = await connect(B.url, project.apiKey, mode);
        const stayGot = record(stay);
        await eventually(2_000, "three connections counted on B", async () => {
          assert.equal((await stats(via(project, B))).connections, 3);
        });
        const firstId = roaming.id;
        const roamingDropped = next(roaming, "disconnect", 10_000);
        const leavingDropped = next(leaving, "disconnect", 10_000);

        const exit = await A.stop();
        assert.deepEqual(exit, { code: 0, signal: null }, "exit status after SIGTERM");
        for (const [name, [reason]] of [
          ["roaming", await roamingDropped],
          ["leaving", await leavingDropped],
        ]) {
          assert.ok(
            reason === "transport close" || reason === "transport error",
            `${name} sees its transport go (not "${reason}"), so it would reconnect`,
          );
        }
        assert.equal(roaming.active, true, "the balanced socket is reconnecting");

        // B serves on: its own socket still gets messages.
        const published = await publish(via(project, B), "B serves on");
        assert.equal(published.status, 202);
        assert.deepEqual(await stayGot.until(1), ["B serves on"]);

        // The balanced socket comes back on B by itself, in the same room.
        if (!roaming.connected) await next(roaming, "connect", 15_000);
        assert.notEqual(roaming.id, firstId, "a new session, on B");
        const roamingGot = record(roaming);
        assert.deepEqual(await emitWithAck(stay, 5_000, "message", "to the roamer"), [{ ok: true }]);
        assert.deepEqual(await roamingGot.until(1), ["to the roamer"]);

        // A's sockets are no longer counted: the one that stayed on B and the one that came back.
        await eventually(5_000, "B's stats to drop the stopped node's sockets", async () => {
          assert.equal((await stats(via(project, B))).connections, 2);
        });
        const response = await publish(via(project, B), "count");
        assert.deepEqual(response.body, { delivered_to: 2 });
      } finally {
        closeAllClients();
        await balancer.close();
        await Promise.all([A.close(), B.close()]);
      }
    });
  });
}

test("a node that crashes (SIGKILL) stops being counted on the other within 10 s", { timeout: 60_000 }, async () => {
  const websocket = MODES.find((m) => m.name === "websocket only");
  const [A, B] = await startNodes(redis, 2);
  try {
    const project = await newProject(B.url);
    const onA = [await connect(A.url, project.apiKey, websocket, { reconnection: false })];
    onA.push(await connect(A.url, project.apiKey, websocket, { reconnection: false }));
    const onB = await connect(B.url, project.apiKey, websocket);
    const got = record(onB);
    await eventually(2_000, "three connections counted on B", async () => {
      assert.equal((await stats(via(project, B))).connections, 3);
    });
    const dropped = onA.map((s) => next(s, "disconnect", 10_000));

    A.child.kill("SIGKILL");
    await A.exited;
    for (const [reason] of await Promise.all(dropped)) assert.equal(reason, "transport close");

    // No goodbye from A: B forgets its sockets once A has gone quiet, as a user would
    // expect from a crashed node (bounded like a graceful stop, 10 s).
    await eventually(10_000, "B's stats to stop counting the crashed node's sockets", async () => {
      assert.equal((await stats(via(project, B))).connections, 1);
    });
    assert.deepEqual((await publish(via(project, B), "after the crash")).body, { delivered_to: 1 });
    assert.deepEqual(await got.until(1), ["after the crash"]);
  } finally {
    closeAllClients();
    await Promise.all([A.close(), B.close()]);
  }
});

test("SIGTERM right after a message: the stopped node's counts still reach the cluster's stats", { timeout: 60_000 }, async () => {
  const websocket = MODES.find((m) => m.name === "websocket only");
  const [A, B] = await startNodes(redis, 2);
  try {
    const project = await newProject(B.url);
    const sender = await connect(A.url, project.apiKey, websocket, { reconnection: false, extraAuth: { echo: false } });
    const receiver = await connect(B.url, project.apiKey, websocket);
    const got = record(receiver);
    await eventually(2_000, "both connections counted on B", async () => {
      assert.equal((await stats(via(project, B))).connections, 2);
    });
    // A has relayed the message (B's socket has it): A stops at once, before its reporter's
    // next pass, and must still add what it counted.
    sender.emit("message", "last words");
    assert.deepEqual(await got.until(1), ["last words"]);
    assert.deepEqual(await A.stop(), { code: 0, signal: null }, "exit status after SIGTERM");
    await eventually(2_000, "the stopped node's received count in B's stats", async () => {
      assert.deepEqual(await stats(via(project, B)), {
        connections: 1,
        messages_received: 1,
        messages_delivered: 1,
        messages_rejected: 0,
      });
    });
  } finally {
    closeAllClients();
    await Promise.all([A.close(), B.close()]);
  }
});
