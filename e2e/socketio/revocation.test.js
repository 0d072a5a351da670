// Key regeneration and project deletion with socket.io-client over websocket (directly
// and after the upgrade from polling); the cases are in ../lib/revocation.js.

import { MODES } from "../lib/roomcast.js";
import { revocationSuite } from "../lib/revocation.js";

revocationSuite(MODES.filter((mode) => mode.name !== "polling only"));
