// NOT COMMITTED YET: fails against f836aa8 (server bug, reported): the engine's
// Socket.IO parser refuses a CONNECT whose payload is not an object (polling answers
// 400 "Bad request" and drops the session; websocket closes) instead of handing it to
// the auth hook, so the client gets a transport error, never `connect_error`.

// SPEC §3: "`auth` missing or not an object" is refused with `connect_error`
// `API key is required` / `API_KEY_REQUIRED`, in each transport mode. socket.io-client
// sends a non-object `auth` as is (`40"…"`, `40[…]`); the server must answer with
// CONNECT_ERROR rather than treat the packet as malformed and drop the connection.

import { describe, test } from "node:test";
import {
  expectRefused,
  MODES,
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
