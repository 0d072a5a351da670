// Peer server for roomcast's benchmarks: stock socket.io 4.8 with default settings doing
// roomcast's job, so the same load generator drives it unchanged.
//
// - the room is whatever string the client sends as `auth.apiKey` (roomcast maps a key to
//   a project; here the key *is* the room name, e.g. "room-17");
// - every "message" is broadcast to the whole room, sender included (roomcast's default
//   `echo: true`).
//
// PORT (default 3101) and HOST (default 127.0.0.1) come from the environment. The bound
// address is printed on stdout once listening so the bench script waits on it, not on a
// sleep.
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3101);
const host = process.env.HOST || "127.0.0.1";

const httpServer = http.createServer();
const io = new Server(httpServer);

io.on("connection", (socket) => {
  const auth = socket.handshake.auth;
  const room = auth && typeof auth.apiKey === "string" ? auth.apiKey : "";
  if (!room) {
    socket.disconnect(true);
    return;
  }
  socket.join(room);
  socket.on("message", (msg) => {
    io.to(room).emit("message", msg);
  });
});

// A listen backlog of 1024 (node's default is 511) matches what the Rust servers get, so
// S1's connect burst compares servers, not backlogs.
httpServer.listen({ port, host, backlog: 1024 }, () => {
  const addr = httpServer.address();
  console.log(`listening on ${addr.address}:${addr.port}`);
});

const stop = () => {
  io.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
