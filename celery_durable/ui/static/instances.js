/* The instances page: filters, counts per status, pages, auto-refresh. */
"use strict";

const form = document.getElementById("filters");
const tbody = document.querySelector("#instances tbody");
const errorBox = document.getElementById("error");
const tokens = [null];  // continuation token of each page seen; the last is the current page
let nextToken = null;

function statusBoxes() { return [...document.querySelectorAll("#status-filter input")]; }

function buildStatusFilter() {
  const fieldset = document.getElementById("status-filter");
  for (const status of CONFIG.statuses) {
    fieldset.append(el("label", { class: "chip" },
      el("input", { type: "checkbox", name: "status", value: status }), " " + status,
      el("span", { class: "count", "data-count": status }, "")));
  }
  const list = document.getElementById("orchestrators");
  for (const name of CONFIG.orchestrators) list.append(el("option", { value: name }));
}

/** The filters as URL parameters (the page's own URL keeps them, so a view can be shared). */
function filterParams() {
  const params = new URLSearchParams();
  for (const box of statusBoxes()) if (box.checked) params.append("status", box.value);
  for (const [key, id] of [["name", "f-name"], ["created_from", "f-from"],
                           ["created_to", "f-to"], ["q", "f-q"]]) {
    const value = document.getElementById(id).value.trim();
    if (value) params.set(key, value);
  }
  return params;
}

function loadFiltersFromUrl() {
  const params = new URLSearchParams(location.search);
  const statuses = params.getAll("status").flatMap(s => s.split(",")).map(s => s.toUpperCase());
  for (const box of statusBoxes()) box.checked = statuses.includes(box.value);
  document.getElementById("f-name").value = params.get("name") || "";
  document.getElementById("f-from").value = params.get("created_from") || "";
  document.getElementById("f-to").value = params.get("created_to") || "";
  document.getElementById("f-q").value = params.get("q") || "";
}

function row(item) {
  return el("tr", { dataset: { instanceId: item.instance_id, status: item.status } },
    el("td", {}, el("a", { href: instanceUrl(item.instance_id), class: "mono" }, item.instance_id)),
    el("td", {}, item.name), el("td", {}, item.version || "-"),
    el("td", {}, badge(item.status)), el("td", {}, fmtTime(item.created_at)),
    el("td", {}, fmtTime(item.updated_at)),
    el("td", { class: "num" }, fmtDuration(item.duration_seconds)));
}

async function load() {
  const params = filterParams();
  const token = tokens[tokens.length - 1];
  if (token) params.set("continuation_token", token);
  try {
    const page = await api(PREFIX + "/api/instances?" + params.toString());
    showError(errorBox, "");
    tbody.replaceChildren(...page.items.map(row));
    if (!page.items.length) {
      tbody.append(el("tr", { class: "empty" }, el("td", { colspan: 7 }, "No instance matches.")));
    }
    for (const [status, count] of Object.entries(page.counts)) {
      document.querySelector(`[data-count="${status}"]`).textContent = String(count);
    }
    document.getElementById("counts").replaceChildren(
      el("span", { class: "total" }, `${page.total} instance(s)`),
      ...Object.entries(page.counts).filter(([, n]) => n > 0).map(([status, n]) =>
        el("span", { class: "count-badge", dataset: { status } }, badge(status), " " + n)));
    nextToken = page.continuation_token;
    document.getElementById("next").disabled = !nextToken;
    document.getElementById("prev").disabled = tokens.length < 2;
    document.getElementById("first").disabled = tokens.length < 2;
    document.getElementById("page-info").textContent = `page ${tokens.length}`;
  } catch (error) {
    showError(errorBox, error.message);
  }
  markLoaded();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  tokens.splice(0, tokens.length, null);
  const query = filterParams().toString();
  history.replaceState(null, "", query ? "?" + query : location.pathname);
  load();
});
document.getElementById("clear").addEventListener("click", () => {
  form.reset();
  for (const box of statusBoxes()) box.checked = false;
  form.requestSubmit();
});
document.getElementById("next").addEventListener("click", () => {
  if (nextToken) { tokens.push(nextToken); load(); }
});
document.getElementById("prev").addEventListener("click", () => {
  if (tokens.length > 1) { tokens.pop(); load(); }
});
document.getElementById("first").addEventListener("click", () => {
  tokens.splice(0, tokens.length, null); load();
});

buildStatusFilter();
loadFiltersFromUrl();
for (const box of statusBoxes()) box.addEventListener("change", () => form.requestSubmit());
const refresh = oneAtATime(load);
refresh();
autoRefresh(document.getElementById("auto-refresh"), refresh);
