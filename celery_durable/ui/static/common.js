/* Shared helpers of the dashboard's pages: the API, DOM building, formatting. */
"use strict";

const CONFIG = JSON.parse(document.body.dataset.config || "{}");
/** The path the dashboard is served under ("" at the root; --url-prefix behind a proxy). */
const PREFIX = document.body.dataset.prefix || "";

/** Call the JSON API; resolves to the answer, rejects with an Error carrying its message. */
async function api(path, options = {}) {
  const init = { credentials: "same-origin", headers: {}, ...options };
  if (options.body !== undefined) {
    init.method = init.method || "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let value;
  try { value = text ? JSON.parse(text) : null; } catch (e) { value = { error: text }; }
  if (!response.ok) {
    const error = new Error((value && value.error) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return value;
}

/** el("a", {href: "/x", class: "y"}, "text", child): an element; strings become text nodes. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function instanceUrl(id) { return PREFIX + "/instances/" + encodeURIComponent(id); }
function apiInstance(id, rest = "") { return PREFIX + "/api/instances/" + encodeURIComponent(id) + rest; }

/** "2026-05-01 12:00:03" from an ISO time (UTC). */
function fmtTime(iso) {
  if (!iso) return "-";
  return iso.replace("T", " ").replace(/\.\d+/, "").replace(/\+00:00$|Z$/, "");
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 10) return seconds.toFixed(2) + " s";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  const m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
  if (m < 60) return `${m} min ${String(s).padStart(2, "0")} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

function badge(status) {
  return el("span", { class: "badge " + status.toLowerCase() }, status);
}

function showError(node, message) {
  node.textContent = message || "";
  node.hidden = !message;
}

/** fn (async) wrapped so that a call while the previous call still runs is skipped: a slow
 *  server is not sent more work than it finishes. document.body.dataset.skipped counts them. */
function oneAtATime(fn) {
  let running = false;
  return async () => {
    if (running) {
      document.body.dataset.skipped = String(Number(document.body.dataset.skipped || 0) + 1);
      return;
    }
    running = true;
    try { await fn(); } finally { running = false; }
  };
}

/** Call fn every CONFIG.refresh_seconds while the checkbox is ticked and the tab is visible
 *  (pass a oneAtATime function: a refresh is then skipped while the last one runs). */
function autoRefresh(checkbox, fn) {
  const every = (CONFIG.refresh_seconds || 5) * 1000;
  setInterval(() => {
    if (checkbox.checked && document.visibilityState === "visible") fn();
  }, every);
}

/** Count the page's renders; the first one also notes how long the page took to show its
 *  data (ms since navigation started: document.body.dataset.readyMs). */
function markLoaded() {
  const body = document.body;
  if (!body.dataset.readyMs) body.dataset.readyMs = String(Math.round(performance.now()));
  body.dataset.loaded = String(Number(body.dataset.loaded || 0) + 1);
}
