// Harness for the multi-node suites (SPEC §6): a Redis server the test owns (killed and
// restarted on the same port at will), several roomcast nodes sharing it and one
// PostgreSQL database, a TCP balancer in front of them, and bounded polling for the
// cluster-wide figures that may lag a few milliseconds.
//
// PostgreSQL comes from ROOMCAST_E2E_POSTGRES_URL (scripts/test sets it). Without it the
// suite fails: several nodes cannot share a SQLite file, and a multi-node suite that
// quietly skipped would hide a broken cluster.

import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { after, afterEach, before } from "node:test";
import { api, closeAllClients, connect, startServer, upgraded, within } from "./roomcast.js";

/**
 * The PostgreSQL URL every node of a test cluster uses. Throws when unset; call it at the
 * top of a test file so that the file fails (a `before` hook would only cancel its tests).
 */
export function requirePostgresUrl() {
  const url = process.env.ROOMCAST_E2E_POSTGRES_URL;
  if (!url) {
    throw new Error(
      "ROOMCAST_E2E_POSTGRES_URL is not set: the multi-node suite needs a PostgreSQL database " +
        "shared by its nodes (scripts/test creates one; by hand, e.g. " +
        "ROOMCAST_E2E_POSTGRES_URL='postgres://postgres@localhost/roomcast_e2e_cluster?host=/path/to/socket/dir&port=5432')",
    );
  }
  return url;
}

/** A TCP port that was free a moment ago (for servers that cannot bind port 0 and tell). */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await within(5_000, new Promise((resolve) => server.once("listening", resolve)), "a free port");
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// Killed when the test process exits, whatever happened to the test that started them;
// also when the test runner ends the process with a signal (its timeout does), which
// skips the "exit" event and would leave redis-server running.
const liveChildren = new Set();
const killChildren = () => {
  for (const child of liveChildren) child.kill("SIGKILL");
};
process.on("exit", killChildren);
for (const [signal, number] of [
  ["SIGTERM", 15],
  ["SIGINT", 2],
]) {
  process.once(signal, () => {
    killChildren();
    process.exit(128 + number);
  });
}

/** Spawns redis-server on `port` and resolves once it is ready to accept connections. */
async function spawnRedis(port, dir) {
  const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
  const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
  liveChildren.add(child);
  let output = "";
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      liveChildren.delete(child);
      resolve({ code, signal });
    });
  });
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    output = (output + chunk).slice(-16_384);
  });
  const ready = new Promise((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      output = (output + line + "\n").slice(-16_384);
      if (line.includes("Ready to accept connections")) resolve();
    });
    exited.then(({ code, signal }) =>
      reject(new Error(`redis-server exited (code ${code}, signal ${signal}) before it was ready:\n${output}`)),
    );
    child.once("error", (error) =>
      reject(new Error(`cannot run redis-server (scripts/test installs it): ${error.message}`)),
    );
  });
  try {
    await within(10_000, ready, `redis-server on port ${port} to be ready`);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return { child, exited, output: () => output };
}

/**
 * A redis-server of the test's own on a free port, without persistence: `kill()` loses
 * everything it held, as a crash would; `restart()` brings an empty one back on the same
 * port, where the nodes must find it again by themselves.
 */
export async function startRedis() {
  const dir = await mkdtemp(path.join(tmpdir(), "roomcast-e2e-redis-"));
  let port;
  let proc;
  // Another process may take the port between freePort() and redis-server's bind.
  for (let attempt = 1; proc === undefined; attempt++) {
    port = await freePort();
    try {
      proc = await spawnRedis(port, dir);
    } catch (error) {
      if (attempt === 3 || !/in use/i.test(error.message)) throw error;
    }
  }
  const redis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get running() {
      return proc !== undefined && proc.child.exitCode === null && proc.child.signalCode === null;
    },
    /** Kills the server (SIGKILL by default: no goodbye to its clients) and waits for its exit. */
    async kill(signal = "SIGKILL") {
      if (!redis.running) return;
      proc.child.kill(signal);
      await within(10_000, proc.exited, "redis-server to exit");
    },
    /** Starts an empty redis-server on the same port. */
    async restart() {
      await redis.kill();
      proc = await spawnRedis(port, dir);
    },
    async close() {
      await redis.kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return redis;
}

/**
 * `count` roomcast nodes on the shared PostgreSQL database and `redis`, each on its own
 * port. `flags` are extra flags for every node. The first node starts alone (it migrates
 * the database), the others together.
 */
export async function startNodes(redis, count, { flags = [] } = {}) {
  const databaseUrl = requirePostgresUrl();
  const start = () => startServer({ databaseUrl, flags: ["--redis-url", redis.url, ...flags] });
  const first = await start();
  try {
    const rest = await Promise.all(Array.from({ length: count - 1 }, start));
    return [first, ...rest];
  } catch (error) {
    await first.close();
    throw error;
  }
}

/**
 * A Redis and `nodes` roomcast nodes on it: `{redis, nodes, close()}`. `close()` stops
 * every node still running (SIGTERM) and the Redis.
 */
export async function startCluster({ nodes = 2, flags = [] } = {}) {
  const redis = await startRedis();
  let servers;
  try {
    servers = await startNodes(redis, nodes, { flags });
  } catch (error) {
    await redis.close();
    throw error;
  }
  return {
    redis,
    nodes: servers,
    async close() {
      await Promise.all(servers.map((server) => server.close()));
      await redis.close();
    },
  };
}

/**
 * A load balancer in front of some nodes, as an operator would put one: each incoming TCP
 * connection goes to the first of `nodes` that accepts it, so clients reach the first node
 * while it lives and the next one once it is gone. Resolves `{url, close()}`.
 */
export async function startBalancer(nodes) {
  const ports = nodes.map((node) => node.port);
  const open = new Set();
  const track = (socket) => {
    open.add(socket);
    socket.once("close", () => open.delete(socket));
    return socket;
  };
  const server = net.createServer((downstream) => {
    track(downstream);
    downstream.on("error", () => downstream.destroy());
    const tryPort = (i) => {
      if (i >= ports.length || downstream.destroyed) {
        downstream.destroy();
        return;
      }
      const upstream = track(net.connect(ports[i], "127.0.0.1"));
      // Refused before connecting: that node is gone, try the next one.
      upstream.once("error", () => {
        upstream.destroy();
        tryPort(i + 1);
      });
      upstream.once("connect", () => {
        upstream.removeAllListeners("error");
        upstream.on("error", () => downstream.destroy());
        downstream.pipe(upstream);
        upstream.pipe(downstream);
        upstream.once("close", () => downstream.destroy());
        downstream.once("close", () => upstream.destroy());
      });
    };
    tryPort(0);
  });
  server.listen(0, "127.0.0.1");
  await within(5_000, new Promise((resolve) => server.once("listening", resolve)), "the balancer to listen");
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    async close() {
      for (const socket of open) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The same project, seen through another node (REST calls go to `node`). */
export function via(project, node) {
  return { ...project, base: node.url };
}

/**
 * Runs `check` (which throws, e.g. an assertion, while the expected state is not there
 * yet) every `intervalMs` until it passes, and resolves what it returned. After `ms` it
 * rejects with the last failure, so the report shows the last values seen.
 */
export async function eventually(ms, what, check, { intervalMs = 50 } = {}) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() >= deadline) {
        error.message = `not within ${ms} ms: ${what}: ${error.message}`;
        throw error;
      }
    }
    // A polling interval, not a synchronization: the next check decides.
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** GET /readyz (or /healthz) on a node; resolves `{status, body}`. */
export function probe(node, which = "readyz") {
  return api(node.url, "GET", `/${which}`);
}

/**
 * One cluster for the whole test file: started before its tests (then handed to
 * `onStart`), stopped after them; the sockets made by `client()` are closed after each
 * test.
 */
export function clusterPerFile(options, onStart) {
  let cluster;
  before(async () => {
    cluster = await startCluster(options);
    onStart(cluster);
  });
  after(async () => {
    closeAllClients();
    await cluster?.close();
  });
  afterEach(closeAllClients);
}

/** Connects to `node`; in the default mode, waits for the upgrade to websocket too. */
export async function join(node, apiKey, mode, options) {
  const socket = await connect(node.url, apiKey, mode, options);
  return mode.transports ? socket : upgraded(socket);
}
