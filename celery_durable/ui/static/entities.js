/* The entities page: each entity's state, lock holder (a link to its instance) and backlog. */
"use strict";

const form = document.getElementById("filters");
const tbody = document.querySelector("#entities tbody");
const errorBox = document.getElementById("error");
let token = null;
let nextToken = null;

function filterParams() {
  const params = new URLSearchParams();
  for (const [key, id] of [["name", "f-name"], ["key_prefix", "f-key"]]) {
    const value = document.getElementById(id).value.trim();
    if (value) params.set(key, value);
  }
  return params;
}

function stateText(state) {
  const text = state === null ? "-" : JSON.stringify(state);
  return text.length > 200 ? text.slice(0, 197) + "..." : text;
}

function row(item) {
  const holder = item.locked_by
    ? el("a", { href: instanceUrl(item.locked_by), class: "mono" }, item.locked_by) : "-";
  return el("tr", { dataset: { entityId: item.id } },
    el("td", { class: "mono" }, item.id), el("td", { class: "mono" }, stateText(item.state)),
    el("td", {}, holder), el("td", { class: "num" }, String(item.backlog_queue_size)),
    el("td", {}, fmtTime(item.last_modified)));
}

async function load() {
  const params = filterParams();
  if (token) params.set("continuation_token", token);
  try {
    const page = await api(PREFIX + "/api/entities?" + params.toString());
    showError(errorBox, "");
    tbody.replaceChildren(...page.items.map(row));
    if (!page.items.length) {
      tbody.append(el("tr", { class: "empty" }, el("td", { colspan: 5 }, "No entity matches.")));
    }
    nextToken = page.continuation_token;
    document.getElementById("next").disabled = !nextToken;
    document.getElementById("first").disabled = !token;
  } catch (error) {
    showError(errorBox, error.message);
  }
  markLoaded();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  token = null;
  load();
});
document.getElementById("next").addEventListener("click", () => {
  if (nextToken) { token = nextToken; load(); }
});
document.getElementById("first").addEventListener("click", () => { token = null; load(); });

const refresh = oneAtATime(load);
refresh();
autoRefresh(document.getElementById("auto-refresh"), refresh);
