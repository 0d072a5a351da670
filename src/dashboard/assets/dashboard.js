// roomcast dashboard: progressive enhancement only. Every page works without this file;
// with it, Copy buttons copy, the project page's counts and console update live (over
// Server-Sent Events from the page's own server) and Send does not reload the page.
"use strict";

(function () {
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-HTTP pages (a self-hosted server on a LAN) have no async clipboard.
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area);
      if (ok) { resolve(); } else { reject(new Error("copy refused")); }
    });
  }

  function setupCopy() {
    var buttons = document.querySelectorAll("button[data-copy]");
    buttons.forEach(function (button) {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target) { return; }
      var status = document.querySelector(".copy-status");
      button.hidden = false;
      button.addEventListener("click", function () {
        copyText(target.textContent.trim()).then(function () {
          button.textContent = "Copied";
          if (status) { status.textContent = "Copied to the clipboard."; }
          setTimeout(function () { button.textContent = "Copy"; }, 2000);
        }, function () {
          // Select the text so the user can copy it by hand.
          var range = document.createRange();
          range.selectNodeContents(target);
          var selection = window.getSelection();
          selection.removeAllRanges();
          selection.addRange(range);
          if (status) { status.textContent = "Select and copy the key by hand (it is selected)."; }
        });
      });
    });
  }

  var MAX_LINES = 200;

  function appendLine(log, text, meta) {
    var item = document.createElement("li");
    if (meta) { item.className = "meta"; }
    var time = document.createElement("time");
    var now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString();
    item.appendChild(time);
    item.appendChild(document.createTextNode(" "));
    // textContent, never innerHTML: messages come from anyone holding the key.
    item.appendChild(document.createTextNode(text));
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.appendChild(item);
    while (log.children.length > MAX_LINES) { log.removeChild(log.firstElementChild); }
    if (atBottom) { log.scrollTop = log.scrollHeight; }
  }

  function setupLive() {
    var root = document.querySelector("[data-live]");
    if (!root || !window.EventSource) { return; }
    var log = document.getElementById("console-log");
    var status = document.getElementById("live-status");
    var ids = {
      connections: "stat-connections",
      messages_received: "stat-received",
      messages_delivered: "stat-delivered",
      messages_rejected: "stat-rejected"
    };
    var source = new EventSource(root.getAttribute("data-live"));
    source.addEventListener("open", function () {
      if (status) { status.textContent = "Live: counts update every second."; }
    });
    source.addEventListener("stats", function (event) {
      var stats = JSON.parse(event.data);
      Object.keys(ids).forEach(function (key) {
        var cell = document.getElementById(ids[key]);
        if (cell && typeof stats[key] === "number") { cell.textContent = String(stats[key]); }
      });
    });
    source.addEventListener("message", function (event) {
      if (log) { appendLine(log, JSON.parse(event.data), false); }
    });
    source.addEventListener("skipped", function (event) {
      if (log) { appendLine(log, "(" + JSON.parse(event.data) + " messages skipped: too many to show)", true); }
    });
    source.addEventListener("gone", function () {
      source.close();
      if (status) { status.textContent = "This project no longer exists."; }
    });
    source.addEventListener("signed-out", function () {
      source.close();
      if (status) { status.textContent = "You are logged out; log in again to see live data."; }
    });
    source.addEventListener("error", function () {
      // EventSource reconnects by itself; say so rather than show stale numbers silently.
      // It gives up only when the server answers with something other than a feed.
      if (!status) { return; }
      status.textContent = source.readyState === EventSource.CLOSED
        ? "The live feed stopped. Reload the page to see live data again."
        : "Reconnecting to the live feed…";
    });
  }

  function setupListLive() {
    var table = document.querySelector("[data-live-list]");
    if (!table || !window.EventSource) { return; }
    var source = new EventSource(table.getAttribute("data-live-list"));
    source.addEventListener("connections", function (event) {
      var counts = JSON.parse(event.data);
      table.querySelectorAll("[data-connections-for]").forEach(function (cell) {
        var count = counts[cell.getAttribute("data-connections-for")];
        if (typeof count === "number") { cell.textContent = String(count); }
      });
    });
    source.addEventListener("signed-out", function () { source.close(); });
  }

  function setupSend() {
    var form = document.getElementById("send-form");
    if (!form || !window.fetch) { return; }
    var input = form.querySelector("#message");
    var status = form.querySelector(".send-status");
    var field = input.closest(".field");

    function showError(text) {
      // An earlier "Sent to N" under a new error would read as if this one went out.
      status.textContent = "";
      var error = document.getElementById("message-error");
      if (!error) {
        error = document.createElement("p");
        error.className = "error";
        error.id = "message-error";
        field.appendChild(error);
      }
      error.textContent = text;
      field.classList.add("has-error");
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", "message-error");
      input.focus();
    }

    function clearError() {
      var error = document.getElementById("message-error");
      if (error) { error.remove(); }
      field.classList.remove("has-error");
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var body = new URLSearchParams(new FormData(form));
      fetch(form.action, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "Accept": "application/json" }
      }).then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (type.indexOf("application/json") === -1) {
          // Not the send endpoint's answer: the session ended (the log-in form came
          // back) or the project is gone.
          var loggedOut = response.redirected && new URL(response.url).pathname === "/login";
          return { ok: false, data: { error: { message: loggedOut
            ? "You are logged out. Log in again to send messages."
            : response.status === 404
              ? "This project no longer exists."
              : "The message was not sent (the server answered " + response.status + ")." } } };
        }
        return response.json().then(function (data) { return { ok: response.ok, data: data }; });
      }).then(function (result) {
        if (result.ok) {
          clearError();
          input.value = "";
          status.textContent = "Sent to " + result.data.delivered_to + " client(s).";
        } else {
          showError(result.data.error && result.data.error.message || "The message was not sent.");
        }
      }).catch(function () {
        showError("The message could not be sent. Check your connection and try again.");
      });
    });
  }

  // A second click while a form is on its way would submit it twice (two projects of
  // one name, two regenerations). Buttons are disabled just after the submit goes out,
  // so the clicked button's own value is still sent; a page brought back by the Back
  // button gets them enabled again.
  function setupSingleSubmit() {
    document.querySelectorAll("form:not(#send-form)").forEach(function (form) {
      form.addEventListener("submit", function () {
        var buttons = form.querySelectorAll("button[type=submit], button:not([type])");
        setTimeout(function () {
          buttons.forEach(function (button) { button.disabled = true; });
        }, 0);
      });
    });
    window.addEventListener("pageshow", function () {
      document.querySelectorAll("form button[disabled]").forEach(function (button) {
        button.disabled = false;
      });
    });
  }

  function start() {
    setupSingleSubmit();
    setupCopy();
    setupLive();
    setupListLive();
    setupSend();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
