// SPEC §3's handshake table with the real socket.io-client, in each transport mode:
// every refusal arrives as `connect_error` with its message and `err.data.code`.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  client,
  connect,
  connected,
  deleteProject,
  expectRefused as expectRefused_,
  MODES,
  newProject,
  record,
  regenerateKey,
  serverPerFile,
  setSettings,
} from "../lib/roomcast.js";

let server;
serverPerFile((started) => {
  server = started;
});

/** Connects with `auth` (undefined: none) and expects the given refusal. */
const expectRefused = (mode, auth, ...rest) => expectRefused_(server.url, mode, auth, ...rest);

const REQUIRED = ["API key is required", "API_KEY_REQUIRED"];
const INVALID = ["invalid API key", "INVALID_API_KEY"];

for (const mode of MODES) {
  describe(`handshake, ${mode.name}`, () => {
    test("a live key connects", async () => {
      const project = await newProject(server.url);
      const socket = await connect(server.url, project.apiKey, mode);
      assert.equal(socket.connected, true);
      assert.equal(typeof socket.id, "string");
    });

    test("no auth at all: API_KEY_REQUIRED", async () => {
      await expectRefused(mode, undefined, ...REQUIRED);
    });

    // `auth` a string or an array: handshake-auth-shape.test.js.
    test("auth null (not an object): API_KEY_REQUIRED", async () => {
      await expectRefused(mode, null, ...REQUIRED);
    });

    for (const [label, auth] of [
      ["apiKey absent", {}],
      ["apiKey absent, other fields given", { echo: false, token: "x" }],
      ["apiKey null", { apiKey: null }],
      ["apiKey empty", { apiKey: "" }],
      ["apiKey a number", { apiKey: 12345 }],
      ["apiKey an object", { apiKey: { key: "x" } }],
      ["apiKey an array", { apiKey: ["x"] }],
      ["apiKey true", { apiKey: true }],
    ]) {
      test(`${label}: API_KEY_REQUIRED`, async () => {
        await expectRefused(mode, auth, ...REQUIRED);
      });
    }

    test("a string that is no key: INVALID_API_KEY", async () => {
      await expectRefused(mode, { apiKey: "not-a-key" }, ...INVALID);
      await expectRefused(mode, { apiKey: "x".repeat(5_000) }, ...INVALID);
    });

    test("a key with one character changed: INVALID_API_KEY", async () => {
      const project = await newProject(server.url);
      const last = project.apiKey.at(-1);
      const changed = project.apiKey.slice(0, -1) + (last === "A" ? "B" : "A");
      await expectRefused(mode, { apiKey: changed }, ...INVALID);
    });

    test("a regenerated-away key: INVALID_API_KEY; the new one connects", async () => {
      const project = await newProject(server.url);
      await connect(server.url, project.apiKey, mode); // the old key was known and cached
      const fresh = await regenerateKey(project);
      await expectRefused(mode, { apiKey: project.apiKey }, ...INVALID);
      const socket = await connect(server.url, fresh, mode);
      assert.equal(socket.connected, true);
    });

    test("a deleted project's key: INVALID_API_KEY", async () => {
      const project = await newProject(server.url);
      await connect(server.url, project.apiKey, mode);
      await deleteProject(project);
      await expectRefused(mode, { apiKey: project.apiKey }, ...INVALID);
    });

    test("at max_connections: CONNECTION_LIMIT; lowering it spares live sockets", async () => {
      const project = await newProject(server.url);
      const first = await connect(server.url, project.apiKey, mode);
      const second = await connect(server.url, project.apiKey, mode);
      await setSettings(project, { max_connections: 1 });
      await expectRefused(mode, { apiKey: project.apiKey }, "connection limit reached", "CONNECTION_LIMIT");
      // Both sockets that were already there still work.
      const got = record(second);
      first.emit("message", "still here");
      assert.deepEqual(await got.until(1), ["still here"]);
      assert.equal(first.connected && second.connected, true);
    });

    test("max_connections 1: the second connection is refused, other projects are not", async () => {
      const project = await newProject(server.url);
      const other = await newProject(server.url);
      await setSettings(project, { max_connections: 1 });
      await connect(server.url, project.apiKey, mode);
      await expectRefused(mode, { apiKey: project.apiKey }, "connection limit reached", "CONNECTION_LIMIT");
      await connect(server.url, other.apiKey, mode);
      await connect(server.url, other.apiKey, mode);
    });

    describe("allowed_origins", () => {
      // socket.io-client in node sends `extraHeaders` on polling requests and on the
      // WebSocket upgrade; the `ws` package also takes an `origin` option, which
      // engine.io-client passes through for the websocket transport.
      const withOrigin = (origin) =>
        mode.transports?.[0] === "websocket" ? { origin } : { extraHeaders: { Origin: origin } };

      test("an Origin outside the list: ORIGIN_NOT_ALLOWED", async () => {
        const project = await newProject(server.url);
        await setSettings(project, { allowed_origins: ["https://app.example.com"] });
        await expectRefused(
          mode,
          { apiKey: project.apiKey },
          "origin not allowed",
          "ORIGIN_NOT_ALLOWED",
          withOrigin("https://evil.example.com"),
        );
      });

      test("an Origin in the list connects", async () => {
        const project = await newProject(server.url);
        await setSettings(project, { allowed_origins: ["https://app.example.com"] });
        const socket = await connected(
          client(server.url, { apiKey: project.apiKey }, mode, withOrigin("https://app.example.com")),
        );
        assert.equal(socket.connected, true);
      });

      test("no Origin header (not a browser) connects", async () => {
        const project = await newProject(server.url);
        await setSettings(project, { allowed_origins: ["https://app.example.com"] });
        const socket = await connect(server.url, project.apiKey, mode);
        assert.equal(socket.connected, true);
      });

      test("an empty list lets any Origin in", async () => {
        const project = await newProject(server.url);
        const socket = await connected(
          client(server.url, { apiKey: project.apiKey }, mode, withOrigin("https://anything.example")),
        );
        assert.equal(socket.connected, true);
      });
    });
  });
}
