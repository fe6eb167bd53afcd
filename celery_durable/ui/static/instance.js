/* The instance page: overview, payloads, timeline, history and the actions. */
"use strict";

const INSTANCE_ID = document.getElementById("instance").dataset.instanceId;
const errorBox = document.getElementById("error");
const resultBox = document.getElementById("action-result");
const dialog = document.getElementById("dialog");
let current = null;  // the instance as last loaded
let purged = false;  // purged from this page: nothing left to load
// the page of the history shown: events after `after` (or, with only `before`, the last ones
// before it); `limit` per page (?history_limit=N in the page's URL, else the server's default)
const historyWindow = { after: null, before: null,
                        limit: new URLSearchParams(location.search).get("history_limit") };
let historyPage = null;  // the page as last loaded

const ACTION_TEXT = {
  events: ["Raise an event", "Deliver an external event to this instance."],
  suspend: ["Suspend", "Suspend this instance? It buffers events until it is resumed."],
  resume: ["Resume", "Resume this suspended instance?"],
  terminate: ["Terminate", "Terminate this instance now? This cannot be undone."],
  purge: ["Purge", "Delete this ended instance and its history? This cannot be undone."],
  rewind: ["Rewind", "Run this failed instance again from its failures? What succeeded is not run again."],
  restart: ["Restart", "Run this orchestration again from the beginning with its input? An ended instance keeps its id and its history is replaced; a running one is restarted under a new id."],
};

function json(value) {
  return value === null || value === undefined ? "null" : JSON.stringify(value, null, 2);
}

function flowerLink(taskId) {
  if (!taskId) return "-";
  if (!CONFIG.flower_url) return el("code", { class: "celery-task" }, taskId);
  return el("a", { class: "celery-task", href: CONFIG.flower_url + "/task/" + encodeURIComponent(taskId),
                   target: "_blank", rel: "noopener" }, taskId);
}

function renderInstance(inst) {
  current = inst;
  const status = document.getElementById("status");
  status.className = "badge " + inst.status.toLowerCase();
  status.textContent = inst.status;
  document.getElementById("instance").dataset.status = inst.status;
  const rows = [
    ["Name", inst.name], ["Version", inst.version || "-"],
    ["Created (UTC)", fmtTime(inst.created_at)], ["Updated (UTC)", fmtTime(inst.updated_at)],
    ["Completed (UTC)", fmtTime(inst.completed_at)], ["Duration", fmtDuration(inst.duration_seconds)],
    ["Execution", `${inst.execution_id} (generation ${inst.generation})`],
    ["Inbox", `${inst.inbox} event(s) waiting`], ["Tags", inst.tags ? JSON.stringify(inst.tags) : "-"],
  ];
  document.getElementById("overview").replaceChildren(
    ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  const links = [];
  if (inst.parent_instance_id) {
    links.push(el("p", {}, "Parent: ", el("a", { id: "parent-link", href: instanceUrl(inst.parent_instance_id) },
                                          inst.parent_instance_id)));
  }
  if (inst.children.length) {
    links.push(el("p", {}, `Sub-orchestrations (${inst.children.length}):`));
    links.push(el("ul", { id: "children" }, ...inst.children.map(child => el("li", {},
      el("a", { href: instanceUrl(child.instance_id), class: "child-link" }, child.instance_id),
      " ", child.name, " ", badge(child.status)))));
  }
  document.getElementById("links").replaceChildren(...links);
  document.getElementById("input").textContent = json(inst.input);
  document.getElementById("output").textContent = json(inst.output);
  document.getElementById("custom-status").textContent = json(inst.custom_status);
  document.getElementById("failure").textContent = inst.failure ? json(inst.failure) : "null";
  document.getElementById("failure-box").classList.toggle("failed", !!inst.failure);
  const ended = ["COMPLETED", "FAILED", "TERMINATED"].includes(inst.status);
  for (const button of document.querySelectorAll("#actions button")) {
    const action = button.dataset.action;
    if (action === "restart") button.disabled = false;
    else if (action === "rewind") button.disabled = inst.status !== "FAILED";
    else button.disabled = action === "purge" ? !ended : ended;
  }
}

function historyQuery() {
  const params = new URLSearchParams();
  for (const key of ["after", "before", "limit"]) {
    if (historyWindow[key] !== null && historyWindow[key] !== undefined) params.set(key, historyWindow[key]);
  }
  const query = params.toString();
  return "/history" + (query ? "?" + query : "");
}

function renderHistory(page) {
  historyPage = page;
  const events = page.items;
  const info = events.length
    ? `events ${events[0].seq}–${events[events.length - 1].seq} of ${page.total}` : `${page.total} events`;
  document.getElementById("history-info").textContent = info;
  document.getElementById("history-first").disabled = !page.earlier;
  document.getElementById("history-earlier").disabled = !page.earlier;
  document.getElementById("history-later").disabled = !page.later;
  document.getElementById("history-latest").disabled = !page.later;
  document.querySelector("#history tbody").replaceChildren(...events.map(e =>
    el("tr", { dataset: { kind: e.kind, seq: e.seq } },
      el("td", { class: "num" }, e.seq), el("td", {}, e.kind),
      el("td", { class: "num" }, e.task_id === null ? "-" : e.task_id), el("td", {}, e.name || "-"),
      el("td", { class: "nowrap" }, fmtTime(e.timestamp)), el("td", { class: "nowrap" }, flowerLink(e.celery_task_id)),
      el("td", {}, el("pre", { class: "json small" }, json(e.data))))));
}

async function load() {
  if (purged) return;
  try {
    const [inst, events, svg] = await Promise.all([
      api(apiInstance(INSTANCE_ID)), api(apiInstance(INSTANCE_ID, historyQuery())),
      fetch(apiInstance(INSTANCE_ID, "/timeline.svg"), { credentials: "same-origin" })
        .then(r => r.ok ? r.text() : "")]);
    showError(errorBox, "");
    renderInstance(inst);
    renderHistory(events);
    // server-built SVG: every text in it is escaped, and it holds no script
    document.getElementById("timeline").innerHTML = svg;
  } catch (error) {
    if (purged) return;
    showError(errorBox, error.message);
    if (error.status === 404) {
      document.getElementById("instance").dataset.status = "MISSING";
      for (const button of document.querySelectorAll("#actions button")) button.disabled = true;
    }
  }
  markLoaded();
}

// -- actions ---------------------------------------------------------------------------------

let pending = null;  // the action the dialog asks about

function openDialog(action) {
  pending = action;
  const [title, text] = ACTION_TEXT[action];
  document.getElementById("dialog-title").textContent = title;
  document.getElementById("dialog-text").textContent = text + " (" + INSTANCE_ID + ")";
  for (const label of dialog.querySelectorAll("label[data-for]")) {
    label.hidden = !label.dataset.for.split(" ").includes(action);
  }
  showError(document.getElementById("dialog-error"), "");
  dialog.dataset.action = action;
  dialog.showModal();
}

function parseJson(id, what) {
  const text = document.getElementById(id).value.trim();
  if (!text) return null;
  try { return JSON.parse(text); } catch (e) {
    throw new Error(`${what} is not valid JSON (${e.message}); e.g. {"ok": true}, 3 or "text"`);
  }
}

function actionBody(action) {
  const recursive = document.getElementById("d-recursive").checked;
  const reason = document.getElementById("d-reason").value.trim() || null;
  if (action === "events") {
    return { name: document.getElementById("d-name").value.trim(), data: parseJson("d-data", "Data") };
  }
  if (action === "terminate") {
    return { output: parseJson("d-output", "Output"), recursive,
             cancel_running: document.getElementById("d-cancel-running").checked };
  }
  if (action === "restart") return { new_id: document.getElementById("d-new-id").checked };
  if (action === "suspend") {
    return { reason, cancel_running: document.getElementById("d-cancel-running").checked };
  }
  if (action === "purge") return { recursive };
  return { reason };
}

async function confirmAction(event) {
  event.preventDefault();
  const action = pending;
  const errorLine = document.getElementById("dialog-error");
  let body;
  try { body = actionBody(action); } catch (error) { showError(errorLine, error.message); return; }
  const confirm = document.getElementById("d-confirm");
  confirm.disabled = true;
  try {
    const answer = await api(apiInstance(INSTANCE_ID, "/" + action), { body });
    dialog.close();
    resultBox.className = "result ok";
    resultBox.textContent = answer.message;
    resultBox.hidden = false;
    if (action === "purge") {
      purged = true;
      document.getElementById("instance").dataset.status = "PURGED";
      for (const button of document.querySelectorAll("#actions button")) button.disabled = true;
      return;
    }
    await load();
    // the instance applies the action in its next episode: look again shortly
    for (const delay of [400, 1200, 3000]) setTimeout(load, delay);
  } catch (error) {
    showError(errorLine, error.message);
  } finally {
    confirm.disabled = false;
  }
}

function showHistory(after, before) {
  historyWindow.after = after;
  historyWindow.before = before;
  load();
}
document.getElementById("history-first").addEventListener("click", () => showHistory(null, null));
document.getElementById("history-earlier").addEventListener("click", () => {
  if (historyPage && historyPage.items.length) showHistory(null, historyPage.items[0].seq);
});
document.getElementById("history-later").addEventListener("click", () => {
  if (historyPage && historyPage.items.length) showHistory(historyPage.items[historyPage.items.length - 1].seq, null);
});
document.getElementById("history-latest").addEventListener("click", () => {
  if (historyPage && historyPage.last_seq !== null) showHistory(null, historyPage.last_seq + 1);
});

for (const button of document.querySelectorAll("#actions button[data-action]")) {
  button.addEventListener("click", () => openDialog(button.dataset.action));
}
document.getElementById("dialog-form").addEventListener("submit", confirmAction);
document.getElementById("d-cancel").addEventListener("click", () => dialog.close());

const refresh = oneAtATime(load);
refresh();
autoRefresh(document.getElementById("auto-refresh"), () => {
  const ended = current && ["COMPLETED", "FAILED", "TERMINATED"].includes(current.status);
  if (!dialog.open && !ended) refresh();
});
