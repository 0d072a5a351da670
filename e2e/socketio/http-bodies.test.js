// SPEC §2's body rules seen from Node's own `fetch` (undici), the client most test and
// backend code uses: a refused body still gets its JSON answer. A server that answers
// and closes while the upload is still arriving resets the connection, and `fetch`
// then throws `EPIPE`/`ECONNRESET` instead of returning the 413 or 401.

import assert from "node:assert/strict";
import { test } from "node:test";
import { api, newProject, serverPerFile } from "../lib/roomcast.js";

let server;
serverPerFile((started) => {
  server = started;
});

const MiB = 1024 * 1024;

for (const size of [MiB + 1, 3 * MiB, 10 * MiB]) {
  test(`a ${size}-byte body gets 413 PAYLOAD_TOO_LARGE, every time`, async () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const password = "a".repeat(size);
      const { status, body } = await api(server.url, "POST", "/api/v1/signup", {
        body: { email: `big-${attempt}@example.com`, password },
      });
      assert.equal(status, 413, JSON.stringify(body));
      assert.equal(body.error.code, "PAYLOAD_TOO_LARGE");
    }
  });
}

test("a large body refused for its credentials gets its 401, every time", async () => {
  const name = "n".repeat(MiB - 100);
  for (let attempt = 0; attempt < 10; attempt++) {
    const noSession = await api(server.url, "POST", "/api/v1/projects", { body: { name } });
    assert.equal(noSession.status, 401);
    assert.equal(noSession.body.error.code, "UNAUTHENTICATED");
    const noKey = await api(server.url, "POST", "/api/v1/messages", { body: { message: name } });
    assert.equal(noKey.status, 401);
    assert.equal(noKey.body.error.code, "API_KEY_REQUIRED");
  }
});

test("a message body over max_message_bytes gets 413 MESSAGE_TOO_LARGE, every time", async () => {
  const project = await newProject(server.url);
  for (let attempt = 0; attempt < 10; attempt++) {
    const { status, body } = await api(server.url, "POST", "/api/v1/messages", {
      apiKey: project.apiKey,
      body: { message: "m".repeat(MiB - 100) },
    });
    assert.equal(status, 413, JSON.stringify(body));
    assert.equal(body.error.code, "MESSAGE_TOO_LARGE");
    assert.equal(body.error.limit, 65_536);
  }
});
