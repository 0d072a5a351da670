// SPEC §3: "`auth` missing or not an object" is refused with `connect_error`
// `API key is required` / `API_KEY_REQUIRED`, in each transport mode. socket.io-client
// sends a non-object `auth` as is (`40"…"`, `40[…]`); the server must answer with
// CONNECT_ERROR rather than treat the packet as malformed and drop the connection.
// Of an object, only `apiKey` and `echo` are read: whatever else it holds does not stop
// a valid key.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  connect,
  expectRefused,
  MODES,
  newProject,
  serverPerFile,
} from "../lib/roomcast.js";

let server;
serverPerFile((started) => {
  server = started;
});

for (const mode of MODES) {
  describe(`handshake with a non-object auth, ${mode.name}`, () => {
    for (const [label, auth] of [
      ["a string", "YOUR_PROJECT_API_KEY"],
      ["an array", ["key"]],
      ["true", true],
    ]) {
      test(`auth ${label}: API_KEY_REQUIRED`, async () => {
        await expectRefused(server.url, mode, auth, "API key is required", "API_KEY_REQUIRED");
      });
    }
  });
}

describe("auth fields roomcast does not read", () => {
  test("a valid key connects whatever the other fields hold (a lone surrogate, deep nesting)", async () => {
    const project = await newProject(server.url);
    let deep = "x";
    for (let i = 0; i < 100; i++) deep = [deep];
    for (const mode of MODES) {
      const socket = await connect(server.url, project.apiKey, mode, {
        extraAuth: { user: "bob \ud83d", deep, n: 1e300 },
      });
      assert.ok(socket.connected, mode.name);
      socket.disconnect();
    }
  });

  test("a valid key in an array, by position, is still not an auth object", async () => {
    const project = await newProject(server.url);
    await expectRefused(server.url, MODES[1], [project.apiKey, false], "API key is required", "API_KEY_REQUIRED");
  });

  test("an apiKey with a lone surrogate is a string, but no key: INVALID_API_KEY", async () => {
    await expectRefused(server.url, MODES[1], { apiKey: "rk_\ud800" }, "invalid API key", "INVALID_API_KEY");
  });
});
