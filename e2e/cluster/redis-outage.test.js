// Redis going away (SPEC §6, §1): local delivery goes on on every node, cross-node delivery
// stops, `/readyz` answers 503 NOT_READY naming Redis while `/healthz` stays 200; once an
// empty Redis is back on the same port the nodes reconnect by themselves, `/readyz` is 200
// again and the sockets that stayed connected exchange messages across nodes again. A key
// regenerated meanwhile fails at once on the other node, which cannot hear of it, and
// disconnects its sockets there within about a second; once Redis is back the message
// counters, lost with the old Redis, are whole again.

import assert from "node:assert/strict";
import { test } from "node:test";
import { clusterPerFile, eventually, probe, requirePostgresUrl, via } from "../lib/cluster.js";
import {
  MODES,
  client,
  connect,
  connectError,
  newProject,
  publish,
  record,
  regenerateKey,
  stats,
  within,
} from "../lib/roomcast.js";

requirePostgresUrl();

const websocket = MODES.find((m) => m.name === "websocket only");
const polling = MODES.find((m) => m.name === "polling only");

let cluster;
let A;
let B;

clusterPerFile({ nodes: 2 }, (started) => {
  cluster = started;
  [A, B] = started.nodes;
});

async function assertHealthy(node) {
  const response = await probe(node, "healthz");
  assert.equal(response.status, 200, `/healthz on ${node.url}: ${JSON.stringify(response.body)}`);
}

test("Redis down: local delivery goes on, cross-node stops, /readyz says so; back: all resumes", { timeout: 60_000 }, async () => {
  const project = await newProject(A.url);
  // Each node's sockets on one transport each; a socket on A's side is the sender.
  const a1 = await connect(A.url, project.apiKey, websocket);
  const a2 = await connect(A.url, project.apiKey, polling);
  const b1 = await connect(B.url, project.apiKey, polling);
  const b2 = await connect(B.url, project.apiKey, websocket);
  const dropped = [];
  for (const socket of [a1, a2, b1, b2]) socket.on("disconnect", (reason) => dropped.push(reason));
  const got = { a1: record(a1), a2: record(a2), b1: record(b1), b2: record(b2) };
  // A socket on B of another project, whose key is regenerated on A during the outage.
  const revoked = await newProject(A.url);
  const revokedOnB = await connect(B.url, revoked.apiKey, websocket);
  const revokedEvents = [];
  const revokedGone = new Promise((resolve) => {
    revokedOnB.on("error", (error) => revokedEvents.push(["error", error.code]));
    revokedOnB.on("disconnect", (reason) => {
      revokedEvents.push(["disconnect", reason]);
      resolve();
    });
  });

  for (const node of [A, B]) {
    const ready = await probe(node);
    assert.equal(ready.status, 200, `/readyz on ${node.url} before: ${JSON.stringify(ready.body)}`);
    await assertHealthy(node);
  }
  a1.emit("message", "before");
  for (const r of Object.values(got)) assert.deepEqual(await r.until(1), ["before"]);

  await cluster.redis.kill();

  for (const node of [A, B]) {
    const body = await eventually(5_000, `/readyz on ${node.url} to report Redis gone`, async () => {
      const ready = await probe(node);
      assert.equal(ready.status, 503, JSON.stringify(ready.body));
      return ready.body;
    });
    assert.equal(body.error?.code, "NOT_READY", JSON.stringify(body));
    assert.equal(typeof body.error.message, "string");
    assert.match(body.error.message, /redis/i, "the reason names Redis");
    await assertHealthy(node);
  }

  // Each node still serves its own sockets.
  a1.emit("message", "A during outage");
  b1.emit("message", "B during outage");
  assert.deepEqual(await got.a2.until(2), ["before", "A during outage"]);
  assert.deepEqual(await got.a1.until(2), ["before", "A during outage"]);
  assert.deepEqual(await got.b2.until(2), ["before", "B during outage"]);
  assert.deepEqual(await got.b1.until(2), ["before", "B during outage"]);

  // The database still answers: a key can be regenerated. B cannot hear of it over the
  // bus, so it trusts no cached key meanwhile: the old key fails there at once, and its
  // socket on B is disconnected within about a second (SPEC §2: "at once, everywhere").
  const renewed = await regenerateKey(revoked);
  const refusedOnB = client(B.url, { apiKey: revoked.apiKey }, websocket, { reconnection: false });
  assert.deepEqual((await connectError(refusedOnB)).data, { code: "INVALID_API_KEY" });
  const publishedOnB = await publish(via(revoked, B), "with the old key");
  assert.equal(publishedOnB.status, 401, JSON.stringify(publishedOnB.body));
  assert.equal(publishedOnB.body.error.code, "INVALID_API_KEY");
  await within(2_000, revokedGone, "the socket of the key regenerated during the outage to be disconnected on B");
  assert.deepEqual(revokedEvents, [
    ["error", "API_KEY_REVOKED"],
    ["disconnect", "io server disconnect"],
  ]);
  const renewedOnB = await connect(B.url, renewed, websocket);
  renewedOnB.disconnect();

  await cluster.redis.restart();

  for (const node of [A, B]) {
    await eventually(10_000, `/readyz on ${node.url} to be 200 again`, async () => {
      const ready = await probe(node);
      assert.equal(ready.status, 200, JSON.stringify(ready.body));
    });
    await assertHealthy(node);
  }

  // Ready means caught up: each node counts the other's sockets as soon as it says 200.
  for (const node of [A, B]) {
    assert.equal((await stats(via(project, node))).connections, 4, `connections on ${node.url} once ready`);
  }
  const retry = client(B.url, { apiKey: revoked.apiKey }, websocket, { reconnection: false });
  assert.deepEqual((await connectError(retry)).data, { code: "INVALID_API_KEY" });

  // The same sockets, never disconnected, talk across nodes again.
  a1.emit("message", "A after");
  b1.emit("message", "B after");
  for (const [name, r] of Object.entries(got)) {
    const items = await r.until(4, 5_000);
    assert.deepEqual([...items.slice(2)].sort(), ["A after", "B after"], `${name} after Redis came back`);
  }
  // Per-sender order: a message of the outage that crossed late would come before "A
  // after" / "B after"; it never crossed.
  assert.deepEqual(got.b1.items.slice(0, 2), ["before", "B during outage"]);
  assert.ok(!got.b2.items.includes("A during outage"), "A's outage message did not reach B");
  assert.ok(!got.a2.items.includes("B during outage"), "B's outage message did not reach A");
  assert.deepEqual(dropped, [], "no socket was disconnected");

  // Cluster-wide figures are whole again: every node counts all four sockets, and the
  // message counters, though the restarted Redis came back empty, count every message
  // of both nodes (5 sent; 4 + 2 + 2 + 8 copies) rather than go down.
  await eventually(1_000, "stats to be cluster-wide again", async () => {
    for (const node of [A, B]) {
      assert.deepEqual(
        await stats(via(project, node)),
        { connections: 4, messages_received: 5, messages_delivered: 16, messages_rejected: 0 },
        `stats on ${node.url}`,
      );
    }
  });
});
