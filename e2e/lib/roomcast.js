// Test harness for the socket.io-client suites: spawns the real release binary on port 0
// with its own SQLite database, drives the REST API, and connects clients.
//
// Readiness is always awaited (the "listening on" line, events), never slept for; every
// wait has a bound so that a hang fails the test instead of blocking CI.

import { after, afterEach, before } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const ROOMCAST_BIN = process.env.ROOMCAST_BIN ?? path.join(ROOT, "target/release/roomcast");

/** The three ways socket.io-client can reach the server. */
export const MODES = [
  { name: "polling then upgrade", transports: undefined },
  { name: "websocket only", transports: ["websocket"] },
  { name: "polling only", transports: ["polling"] },
];

/** Rejects with `what` after `ms` unless `promise` settles first. */
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Starts `command args…` and resolves once it prints `listening on http://ADDR` on stdout.
 * The process's stderr is kept (last 64 KiB) for failure messages.
 */
export async function spawnListening(command, args, { env, startTimeoutMs = 30_000 } = {}) {
  if (!existsSync(command)) {
    throw new Error(`${command} does not exist: build it first (cargo build --release --bins --examples)`);
  }
  const child = spawn(command, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn", ...env },
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk) => {
    stderr = (stderr + chunk).slice(-65_536);
  });
  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  const lines = createInterface({ input: child.stdout });
  const listening = new Promise((resolve, reject) => {
    lines.on("line", (line) => {
      const match = /^listening on (http:\/\/\S+)$/.exec(line);
      if (match) resolve(match[1]);
    });
    exited.then(({ code, signal }) =>
      reject(new Error(`${path.basename(command)} exited (code ${code}, signal ${signal}) before listening:\n${stderr}`)),
    );
    child.once("error", reject);
  });
  let url;
  try {
    url = await within(startTimeoutMs, listening, `${path.basename(command)} to print "listening on"`);
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  return { child, url, exited, stderr: () => stderr };
}

/**
 * A roomcast server on its own port and temporary SQLite database.
 *
 * `flags` are extra command-line flags (e.g. operator limits); `dir` and `bind` let a test
 * restart a server on the same database and port. `databaseUrl` replaces the temporary
 * SQLite database with a given one (e.g. the PostgreSQL that several nodes share).
 */
export async function startServer({ flags = [], dir, bind = "127.0.0.1:0", databaseUrl } = {}) {
  const ownDir = dir === undefined && databaseUrl === undefined;
  if (databaseUrl === undefined) {
    dir ??= await mkdtemp(path.join(tmpdir(), "roomcast-e2e-"));
    databaseUrl = `sqlite://${dir}/db.sqlite`;
  }
  const args = ["--bind", bind, "--database-url", databaseUrl, ...flags];
  const { child, url, exited, stderr } = await spawnListening(ROOMCAST_BIN, args);
  const server = {
    url,
    dir,
    port: Number(new URL(url).port),
    child,
    exited,
    stderr,
    /** SIGTERM, then the exit status (SIGKILL and an error past 10 s, SPEC §1). */
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill("SIGTERM");
      try {
        return await within(10_000, exited, "roomcast to exit within 10 s of SIGTERM");
      } catch (error) {
        child.kill("SIGKILL");
        await exited;
        throw error;
      }
    },
    /** Stops the server and removes its database (unless the caller owns `dir`). */
    async close() {
      await server.stop().catch(() => {});
      if (ownDir) await rm(dir, { recursive: true, force: true });
    },
  };
  return server;
}

/** One REST call; resolves `{status, body}` (body parsed when JSON). */
export async function api(base, method, urlPath, { token, apiKey, body, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (token) init.headers.authorization = `Bearer ${token}`;
  if (apiKey !== undefined) init.headers["x-api-key"] = apiKey;
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await within(15_000, fetch(new URL(urlPath, base), init), `${method} ${urlPath}`);
  const text = await response.text();
  let parsed = text;
  if ((response.headers.get("content-type") ?? "").includes("json") && text !== "") parsed = JSON.parse(text);
  return { status: response.status, body: parsed };
}

function expectStatus(result, status, what) {
  if (result.status !== status) {
    throw new Error(`${what}: expected HTTP ${status}, got ${result.status}: ${JSON.stringify(result.body)}`);
  }
  return result.body;
}

let counter = 0;

/** Signs a new user up; resolves `{email, token}`. */
export async function signup(base) {
  const email = `e2e-${process.pid}-${Date.now()}-${++counter}@example.com`;
  const body = expectStatus(
    await api(base, "POST", "/api/v1/signup", { body: { email, password: "correct horse battery" } }),
    201,
    "signup",
  );
  return { email, token: body.token };
}

/** Creates a project; resolves `{id, apiKey, project}`. */
export async function createProject(base, token, name = `project ${++counter}`) {
  const body = expectStatus(
    await api(base, "POST", "/api/v1/projects", { token, body: { name } }),
    201,
    "create project",
  );
  return { id: body.project.id, apiKey: body.api_key, project: body.project };
}

/** A user and one project of theirs: `{base, token, id, apiKey}`. */
export async function newProject(base) {
  const { token } = await signup(base);
  const project = await createProject(base, token);
  return { base, token, ...project };
}

/** PATCHes a project's settings; resolves the updated project. */
export async function setSettings(project, settings) {
  const body = expectStatus(
    await api(project.base, "PATCH", `/api/v1/projects/${project.id}`, { token: project.token, body: { settings } }),
    200,
    "patch settings",
  );
  return body.project;
}

/** Regenerates the project's key; resolves the new key. */
export async function regenerateKey(project) {
  const body = expectStatus(
    await api(project.base, "POST", `/api/v1/projects/${project.id}/regenerate-key`, { token: project.token }),
    200,
    "regenerate key",
  );
  return body.api_key;
}

/** Deletes the project. */
export async function deleteProject(project) {
  expectStatus(
    await api(project.base, "DELETE", `/api/v1/projects/${project.id}`, { token: project.token }),
    204,
    "delete project",
  );
}

/** The project's stats. */
export async function stats(project) {
  return expectStatus(
    await api(project.base, "GET", `/api/v1/projects/${project.id}/stats`, { token: project.token }),
    200,
    "stats",
  );
}

/** POST /api/v1/messages with the project's key; resolves `{status, body}`. */
export function publish(project, message) {
  return api(project.base, "POST", "/api/v1/messages", { apiKey: project.apiKey, body: { message } });
}

/**
 * A socket.io-client socket (not yet connected when returned). `auth` is sent as is;
 * `options` go to `io()` on top of `forceNew` and the mode's transports.
 */
export function client(url, auth, mode, options = {}) {
  const opts = { forceNew: true, ...options };
  if (auth !== undefined) opts.auth = auth;
  if (mode?.transports) opts.transports = mode.transports;
  const socket = io(url, opts);
  openSockets.add(socket);
  return socket;
}

const openSockets = new Set();

/** Disconnects every socket made by `client()` (for `afterEach`). */
export function closeAllClients() {
  for (const socket of openSockets) socket.disconnect();
  openSockets.clear();
}

/** Resolves on the socket's next `connect`; rejects on `connect_error` or timeout. */
export function connected(socket, ms = 5_000) {
  if (socket.connected) return Promise.resolve(socket);
  return within(
    ms,
    new Promise((resolve, reject) => {
      const onConnect = () => {
        socket.off("connect_error", onError);
        resolve(socket);
      };
      const onError = (err) => {
        socket.off("connect", onConnect);
        reject(new Error(`connect_error instead of connect: ${err.message} ${JSON.stringify(err.data)}`));
      };
      socket.once("connect", onConnect);
      socket.once("connect_error", onError);
    }),
    "connect",
  );
}

/** Resolves with the `connect_error` error; rejects if the socket connects instead. */
export function connectError(socket, ms = 5_000) {
  return within(
    ms,
    new Promise((resolve, reject) => {
      const onConnect = () => {
        socket.off("connect_error", onError);
        reject(new Error("connected, but a connect_error was expected"));
      };
      const onError = (err) => {
        socket.off("connect", onConnect);
        resolve(err);
      };
      socket.once("connect", onConnect);
      socket.once("connect_error", onError);
    }),
    "connect_error",
  );
}

/**
 * Connects with `auth` (undefined: none, sent as is otherwise) and expects the refusal
 * `message` with `data: {code}`.
 */
export async function expectRefused(url, mode, auth, message, code, options = {}) {
  const socket = client(url, auth, mode, { reconnection: false, ...options });
  const err = await connectError(socket);
  assert.equal(err.message, message, `message for auth ${JSON.stringify(auth)}`);
  assert.deepEqual(err.data, { code }, `data for auth ${JSON.stringify(auth)}`);
  assert.equal(socket.connected, false);
  socket.disconnect();
}

/** Connects a client with `{apiKey}` (plus `extraAuth`) and waits for `connect`. */
export async function connect(url, apiKey, mode, { extraAuth = {}, ...options } = {}) {
  return connected(client(url, { apiKey, ...extraAuth }, mode, options));
}

/**
 * Resolves once a socket made with the default transports has finished its upgrade from
 * polling to websocket (at once for a socket already on websocket).
 */
export async function upgraded(socket, ms = 5_000) {
  const engine = socket.io.engine;
  if (engine.transport.name !== "websocket") {
    const [transport] = await next(engine, "upgrade", ms);
    assert.equal(transport.name, "websocket");
  }
  return socket;
}

/** Resolves with the arguments of the next `event` (an array), or rejects after `ms`. */
export function next(emitter, event, ms = 5_000) {
  return within(ms, once(emitter, event), `"${event}" event`);
}

/**
 * Records every `event` on the socket. `until(n)` resolves once `n` have arrived.
 */
export function record(socket, event = "message") {
  const items = [];
  const waiters = [];
  socket.on(event, (...args) => {
    items.push(args.length === 1 ? args[0] : args);
    for (const waiter of [...waiters]) {
      if (items.length >= waiter.n) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(items);
      }
    }
  });
  return {
    items,
    until(n, ms = 10_000) {
      if (items.length >= n) return Promise.resolve(items);
      return within(
        ms,
        new Promise((resolve) => waiters.push({ n, resolve })),
        `${n} "${event}" events`,
      ).catch((error) => {
        throw new Error(`${error.message} (got ${items.length})`);
      });
    },
  };
}

/** Emits with an ack; resolves with the ack's arguments (array) or rejects after `ms`. */
export function emitWithAck(socket, ms, event, ...args) {
  return within(
    ms,
    new Promise((resolve) => socket.emit(event, ...args, (...response) => resolve(response))),
    `ack of "${event}"`,
  );
}

/** A promise and its resolver, for events that tests wait on. */
export function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/**
 * Records the socket's `error` and `disconnect` events, in order; `done` resolves with
 * them once it is disconnected (how a revoked socket is seen to be kicked).
 */
export function kicked(socket) {
  const events = [];
  return {
    events,
    done: new Promise((resolve) => {
      socket.on("error", (error) => events.push(["error", error]));
      socket.on("disconnect", (reason) => {
        events.push(["disconnect", reason]);
        resolve(events);
      });
    }),
  };
}

/**
 * One fresh server for the whole test file (started before its first test, stopped
 * after its last), with every client closed after each test; `onStart` gets the server.
 */
export function serverPerFile(onStart, options) {
  let server;
  before(async () => {
    server = await startServer(options);
    onStart(server);
  });
  after(async () => {
    await server?.close();
  });
  afterEach(closeAllClients);
}
