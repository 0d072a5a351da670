// The dashboard in a real Chromium against the real release binary (issue 4): a new user
// signs up, creates a project, copies the key, connects socket.io-client with it, watches
// the count and the console, sends from the console, regenerates the key (the client is
// disconnected) and deletes the project. Every page gets an axe audit (no serious or
// critical violations) and screenshots at desktop and phone width in e2e/artifacts/.
//
// Chromium is Debian's (`apt-get install chromium`), driven by playwright-core; Playwright's
// own browser download is not used.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { chromium } from "playwright-core";
import { ROOT, startServer, connect, client, record, within, closeAllClients, api, createProject } from "../lib/roomcast.js";

const require = createRequire(import.meta.url);
const AXE_SOURCE = await readFile(require.resolve("axe-core/axe.min.js"), "utf8");
const ARTIFACTS = path.join(ROOT, "e2e/artifacts");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const PASSWORD = "correct horse battery";

let server;
let browser;

before(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  server = await startServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
});

after(async () => {
  closeAllClients();
  await browser?.close();
  await server?.close();
});

/**
 * A fresh browser context whose page fails the test on any request that leaves the
 * server, and on any console error (a CSP violation shows up there).
 */
async function newPage() {
  const context = await browser.newContext({ viewport: DESKTOP });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
  const page = await context.newPage();
  const problems = [];
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(server.url) && !url.startsWith("data:")) {
      problems.push(`external request: ${url}`);
    }
  });
  page.on("console", (message) => {
    // Form mistakes are answered 4xx on purpose; Chromium logs every such response.
    const expected = /^Failed to load resource: the server responded with a status of 4\d\d/;
    if (message.type() === "error" && !expected.test(message.text())) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  return { context, page, problems };
}

/** Runs axe on the page; fails on serious or critical violations. */
async function audit(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern; the
  // page itself still runs under its strict policy.
  await page.evaluate(AXE_SOURCE);
  const results = await page.evaluate(() =>
    window.axe.run(document, { resultTypes: ["violations"] }),
  );
  const serious = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    serious.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    [],
    `axe violations on ${name}`,
  );
}

/** Audits the page and screenshots it at desktop and phone width; checks the phone
 * layout does not scroll sideways. */
async function checkPage(page, name) {
  await audit(page, `${name} (desktop)`);
  await page.screenshot({ path: path.join(ARTIFACTS, `dashboard-${name}-desktop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await audit(page, `${name} (phone)`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${name} scrolls sideways at phone width by ${overflow}px`);
  await page.screenshot({ path: path.join(ARTIFACTS, `dashboard-${name}-phone.png`), fullPage: true });
  await page.setViewportSize(DESKTOP);
}

/** `promise`, marked handled now so that a failure in an earlier step is reported as
 * itself rather than as an unhandled rejection of this one; await it later as usual. */
function later(promise) {
  promise.catch(() => {});
  return promise;
}

/** The first argument of the socket's next `event`. Not the harness's `next()`: node's
 * events.once() turns an "error" event (which the server sends before revoking) into a
 * rejection of whatever it waits for. */
function nextEvent(socket, event, ms = 15_000) {
  return within(ms, new Promise((resolve) => socket.once(event, resolve)), `"${event}" event`);
}

/** Signs `email` up through the form; the page ends on "New project". */
async function signUp(page, email) {
  await page.goto(server.url + "/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.waitForURL(/\/projects\/new$/);
}

/** Waits until the element's text is `expected`. */
async function textBecomes(page, selector, expected, ms = 10_000) {
  await page.waitForFunction(
    ([sel, want]) => document.querySelector(sel)?.textContent.trim() === want,
    [selector, expected],
    { timeout: ms },
  );
}

test("a new user goes from sign-up to a live project and back out", async () => {
  const { context, page, problems } = await newPage();
  const email = `dash-${Date.now()}@example.com`;

  // Logged out, the dashboard is the log-in form.
  await page.goto(server.url + "/projects");
  assert.match(new URL(page.url()).pathname, /^\/login$/);
  assert.equal(await page.title(), "Log in · roomcast");
  await checkPage(page, "login");

  // Sign up, first with mistakes: each is shown next to its field, the email is kept.
  await page.getByRole("link", { name: "Sign up" }).click();
  await page.waitForURL(/\/signup$/);
  await page.getByLabel("Email").fill("not-an-email");
  await page.getByLabel("Password").fill("short");
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.waitForSelector("#email-error");
  assert.equal(await page.getByLabel("Email").getAttribute("aria-invalid"), "true");
  assert.equal(await page.getByLabel("Password").getAttribute("aria-invalid"), "true");
  assert.equal(await page.getByLabel("Email").inputValue(), "not-an-email");
  assert.equal(await page.getByLabel("Password").inputValue(), "");
  await checkPage(page, "signup-errors");

  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.waitForURL(/\/projects\/new$/);

  // The empty projects list, then "New project".
  await page.getByRole("navigation", { name: "Account" }).getByRole("link", { name: "Projects" }).click();
  await page.waitForURL(/\/projects$/);
  await checkPage(page, "projects-empty");
  await page.getByRole("link", { name: "New project" }).click();
  await page.waitForURL(/\/projects\/new$/);
  await page.getByRole("button", { name: "Create project" }).click();
  await page.waitForSelector("#name-error");
  await checkPage(page, "new-project-error");
  await page.getByLabel("Name").fill("Browser test");
  await page.getByRole("button", { name: "Create project" }).click();

  // The key, once: visible text, a Copy button that really copies, the snippet.
  await page.waitForSelector("#api-key");
  const apiKey = (await page.locator("code#api-key").textContent()).trim();
  assert.match(apiKey, /^rk_[A-Za-z0-9_-]{40,}$/);
  assert.ok(await page.getByText("you will not see this again").isVisible());
  const snippet = await page.locator("#snippet").textContent();
  assert.ok(snippet.includes(`io("${server.url}", { auth: { apiKey: "${apiKey}" } })`), snippet);
  await page.getByRole("button", { name: "Copy", exact: true }).click();
  await page.getByText("Copied to the clipboard.").waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), apiKey);
  await checkPage(page, "key");

  // Once means once: a reload repeats nothing (the key page was a redirect's target,
  // not the POST's answer) and lands on the project page, which says why.
  await page.reload();
  await page.getByText("The API key is shown only once").waitFor();
  assert.equal(await page.locator("#api-key").count(), 0);
  assert.ok(!(await page.content()).includes(apiKey));

  // The project page, live: a real client raises the count and shows in the console.
  await page.waitForSelector("#console-log");
  assert.equal(await page.title(), "Browser test · roomcast");
  await page.getByText("Live: counts update every second.").waitFor();
  await checkPage(page, "project");

  // The projects list, open in another tab, follows the count too.
  const projectId = new URL(page.url()).pathname.split("/").pop();
  const list = await context.newPage();
  await list.goto(server.url + "/projects");
  const listCount = `[data-connections-for="${projectId}"]`;
  assert.equal((await list.locator(listCount).textContent()).trim(), "0");

  const socket = await connect(server.url, apiKey);
  const received = record(socket, "message");
  await textBecomes(page, "#stat-connections", "1");
  await textBecomes(list, listCount, "1");
  socket.emit("message", "hello from the client");
  await page.locator("#console-log").getByText("hello from the client").waitFor({ timeout: 5_000 });

  // Send from the console; the client receives it.
  await page.getByLabel("Message", { exact: true }).fill("hello from the dashboard");
  await page.getByRole("button", { name: "Send" }).click();
  await page.getByText("Sent to 1 client(s).").waitFor();
  const messages = await received.until(2);
  assert.ok(messages.includes("hello from the dashboard"), JSON.stringify(messages));
  await page.locator("#console-log").getByText("hello from the dashboard").waitFor();
  // A refused send replaces the last "Sent to" rather than standing under it.
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("#message-error").waitFor();
  assert.equal((await page.locator(".send-status").textContent()).trim(), "");
  // Both messages count as received, and each reached the one client.
  await page.waitForFunction(
    () => Number(document.querySelector("#stat-received").textContent) >= 2 &&
      Number(document.querySelector("#stat-delivered").textContent) >= 2,
    null,
    { timeout: 5_000 },
  );
  await checkPage(page, "project-live");

  // The list shows name, key prefix and the live connection.
  const row = list.getByRole("row", { name: /Browser test/ });
  assert.ok((await row.textContent()).includes(apiKey.slice(0, 11)));
  assert.match(await row.locator("td").nth(1).textContent(), /^\s*1\s*$/);
  await checkPage(list, "projects");
  await list.close();

  // Regenerate: the confirmation warns, then the old key's client is disconnected.
  const revoked = later(nextEvent(socket, "error"));
  const disconnected = later(nextEvent(socket, "disconnect"));
  await page.getByRole("button", { name: "Regenerate key" }).click();
  await page.waitForURL(/\/regenerate\??$/);
  assert.ok(await page.getByText("will be disconnected").isVisible());
  await checkPage(page, "regenerate-confirm");
  await page.getByRole("button", { name: "Regenerate key" }).click();
  await page.waitForSelector("#api-key");
  const newKey = (await page.locator("#api-key").textContent()).trim();
  assert.notEqual(newKey, apiKey);
  const error = await revoked;
  assert.equal(error.code, "API_KEY_REVOKED");
  await disconnected;
  await page.getByRole("link", { name: "Go to the project" }).click();
  await textBecomes(page, "#stat-connections", "0");
  // Back to the key page: no resubmission prompt, no second regeneration, no key.
  await page.goBack();
  await page.getByText("The API key is shown only once").waitFor();
  assert.ok(!(await page.content()).includes(newKey));
  await textBecomes(page, "#stat-connections", "0");

  // The old key is refused; the new one connects.
  const stale = client(server.url, { apiKey }, undefined, { reconnection: false });
  const staleError = await nextEvent(stale, "connect_error");
  assert.equal(staleError.data?.code, "INVALID_API_KEY");
  const fresh = await connect(server.url, newKey);
  await textBecomes(page, "#stat-connections", "1");

  // Delete, with its confirmation step; the client is disconnected.
  const freshGone = later(nextEvent(fresh, "disconnect"));
  await page.getByRole("button", { name: "Delete" }).click();
  await page.waitForURL(/\/delete\??$/);
  await checkPage(page, "delete-confirm");
  await page.getByRole("button", { name: "Delete" }).click();
  await page.waitForURL(/\/projects\?done=deleted$/);
  await page.getByText("Project deleted.").waitFor();
  assert.equal(await page.getByRole("row", { name: /Browser test/ }).count(), 0);
  await freshGone;

  // Log out: back to the log-in form, and the pages need a session again.
  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL(/\/login$/);
  await page.goto(server.url + "/projects");
  assert.match(new URL(page.url()).pathname, /^\/login$/);

  assert.deepEqual(problems, []);
  await context.close();
});

test("the forms work from the keyboard, in a sensible order", async () => {
  const { context, page, problems } = await newPage();
  await page.goto(server.url + "/signup");
  // The form autofocuses Email; Tab goes to Password, then to the Sign up button.
  await page.getByLabel("Email").focus();
  await page.keyboard.type(`keys-${Date.now()}@example.com`);
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.id), "password");
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Sign up");
  await page.keyboard.press("Enter");
  await page.waitForURL(/\/projects\/new$/);
  // Tab from the top of a page: the skip link comes first and moves focus to the content.
  await page.goto(server.url + "/projects");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  await page.keyboard.press("Enter");
  assert.equal(await page.evaluate(() => document.activeElement.id), "main");
  await page.getByRole("link", { name: "New project" }).press("Enter");
  await page.waitForURL(/\/projects\/new$/);
  // New project: Name is focused; Enter submits.
  assert.equal(await page.evaluate(() => document.activeElement.id), "name");
  await page.keyboard.type("Keyboard");
  await page.keyboard.press("Enter");
  await page.waitForSelector("#api-key");
  // The Copy button works from the keyboard.
  await page.getByRole("button", { name: "Copy", exact: true }).focus();
  await page.keyboard.press("Enter");
  await page.getByText("Copied to the clipboard.").waitFor();
  assert.deepEqual(problems, []);
  await context.close();
});

test("a page that needs a session leads to the log-in form and back", async () => {
  const { context, page, problems } = await newPage();
  const email = `back-${Date.now()}@example.com`;
  await signUp(page, email);
  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL(/\/login$/);

  await page.goto(server.url + "/projects/new");
  await page.waitForURL(/\/login\?next=/);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("wrong password");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForSelector("#password-error");
  assert.equal(await page.getByLabel("Email").inputValue(), email);
  assert.equal(await page.getByLabel("Password").inputValue(), "");
  await checkPage(page, "login-error");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(/\/projects\/new$/);
  assert.deepEqual(problems, []);
  await context.close();
});

test("the project page notices a deletion or a log-out made elsewhere", async () => {
  const { context, page, problems } = await newPage();
  const email = `elsewhere-${Date.now()}@example.com`;
  await signUp(page, email);
  const login = await api(server.url, "POST", "/api/v1/login", { body: { email, password: PASSWORD } });
  assert.equal(login.status, 200);
  const token = login.body.token;

  // Deleted through the API while its page is open: the page says so, live and on Send.
  const doomed = await createProject(server.url, token, "Deleted elsewhere");
  await page.goto(`${server.url}/projects/${doomed.id}`);
  await page.getByText("Live: counts update every second.").waitFor();
  const deleted = await api(server.url, "DELETE", `/api/v1/projects/${doomed.id}`, { token });
  assert.equal(deleted.status, 204);
  await page.getByText("This project no longer exists.").waitFor({ timeout: 5_000 });
  await page.getByPlaceholder(/message/i).fill("anyone there?");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("#message-error").getByText("This project no longer exists.").waitFor();

  // Logged out in another tab: this one says so, live and on Send.
  const kept = await createProject(server.url, token, "Still here");
  await page.goto(`${server.url}/projects/${kept.id}`);
  await page.getByText("Live: counts update every second.").waitFor();
  const other = await context.newPage();
  await other.goto(server.url + "/projects");
  await other.getByRole("button", { name: "Log out" }).click();
  await other.waitForURL(/\/login$/);
  await page.getByText("You are logged out; log in again to see live data.").waitFor({ timeout: 5_000 });
  await page.getByLabel("Message", { exact: true }).fill("still there?");
  await page.getByRole("button", { name: "Send" }).click();
  await page.locator("#message-error").getByText("You are logged out.").waitFor();

  assert.deepEqual(problems, []);
  await context.close();
});

test("a double click on Create makes one project", async () => {
  const { context, page, problems } = await newPage();
  const email = `twice-${Date.now()}@example.com`;
  await signUp(page, email);
  // A slow network: the server's answer to the creation takes 400 ms to come back, so
  // a second click lands while the first request is already on the server.
  await page.route("**/projects", async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    const response = await route.fetch({ maxRedirects: 0 });
    await new Promise((resolve) => setTimeout(resolve, 400));
    await route.fulfill({ response }).catch(() => {});
  });
  await page.getByLabel("Name").fill("Twice");
  await page.evaluate(() => {
    const button = [...document.querySelectorAll("button")].find((b) => b.textContent.trim() === "Create project");
    button.click();
    setTimeout(() => button.click(), 80);
  });
  await page.waitForSelector("#api-key");
  const login = await api(server.url, "POST", "/api/v1/login", { body: { email, password: PASSWORD } });
  const list = await api(server.url, "GET", "/api/v1/projects", { token: login.body.token });
  assert.deepEqual(list.body.projects.map((p) => p.name), ["Twice"]);
  assert.deepEqual(problems, []);
  await context.close();
});
