// NOT COMMITTED YET: fails against f836aa8 (server bug, reported): on polling the
// server sends `42["error",…]`, `41` and the Engine.IO close packet `1` in one response;
// socket.io-client handles the transport close first (disconnect "transport close",
// and it starts reconnecting), buffers the `error` event and never emits it.

// Key regeneration and project deletion with socket.io-client on HTTP long-polling only;
// the cases are in ../lib/revocation.js. The `error` event must reach the client before
// the server-side disconnect, as it does over websocket.

import { MODES } from "../lib/roomcast.js";
import { revocationSuite } from "../lib/revocation.js";

revocationSuite(MODES.filter((mode) => mode.name === "polling only"));
